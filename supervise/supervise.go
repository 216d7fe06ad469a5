// Package supervise is the run supervisor: PID 1 of the run's pid
// namespace and root of its user namespace, and the orchestrator of the
// run's life. It has the run's network built (package runnet) while it
// makes the run's mounts and files, starts every node's command in
// dependency order (package guest) and watches it (node), forwards
// signals, serves the control socket (net verbs through package netctl;
// node verbs, exec, socket and attach here), starts the capture (package
// capture) and the published ports (package portproxy), prints the nodes'
// output (package output), and tears everything down when the run ends.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/capture"
	"github.com/nsrun/nsrun/control"
	"github.com/nsrun/nsrun/faults"
	"github.com/nsrun/nsrun/guest"
	"github.com/nsrun/nsrun/internal/eventlog"
	"github.com/nsrun/nsrun/internal/exitcode"
	"github.com/nsrun/nsrun/linkengine"
	"github.com/nsrun/nsrun/netctl"
	"github.com/nsrun/nsrun/nsfd"
	"github.com/nsrun/nsrun/output"
	"github.com/nsrun/nsrun/plan"
	"github.com/nsrun/nsrun/runlog"
	"github.com/nsrun/nsrun/runnet"
	"github.com/nsrun/nsrun/runstate"
	"github.com/nsrun/nsrun/userns"
)

// ExitSetupFailed is nsrun's exit code when the run could not be set up
// (exitcode.SetupFailed).
const ExitSetupFailed = exitcode.SetupFailed

// Handles are what a run holds besides its plan: channels and open files
// from the launcher.
type Handles struct {
	// LauncherGone is closed when the launcher (the nsrun process the
	// caller started) has died, even by SIGKILL: the run must end now.
	LauncherGone <-chan struct{}
	// Listeners are the published ports' sockets, by Publish.Host,
	// bound on the host's loopback by the launcher, which stays in the
	// caller's network namespace (launch.BindPort). The supervisor closes
	// them.
	Listeners map[netip.AddrPort]*os.File
	// Detached, for `nsrun up -d`, is the pipe to the nsrun process that
	// waits for the run: once every node is up, the run's id and a
	// newline are written to it and it is closed, and the run's stderr
	// then goes to /dev/null (that nsrun is gone). Nil otherwise.
	Detached *os.File
	// CallerPIDNS is the launcher's pid namespace, where the user who
	// started the run calls from (launch.CallerPIDNS); nil refuses every
	// client outside the run's pid namespace.
	CallerPIDNS *os.File
	// Faults is the file's fault schedule (nil: none): the supervisor
	// runs it through its own control socket once the run is up (or every
	// node ready), and heals what is in force when the run stops.
	Faults *faults.Schedule
}

// Run carries out the plan p in this process, which the launcher made
// PID 1 of the run's pid namespace with all capabilities in its user
// namespace (package launch), and returns nsrun's exit code: the command's
// (or, with `up`, the run's). A failure to set up or start is returned as
// an error, with 125, or 126/127 for a command that cannot run.
func Run(p *plan.Plan, h Handles) (int, error) {
	// Catch signals from the start, so none is lost or kills us before the
	// nodes run.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, userns.ForwardedSignals(p.Run.Terminal)...)
	signal.Notify(sigs, userns.TerminalSignals...)

	if h.Detached != nil {
		// Whoever read the run's stderr has gone once it is up.
		signal.Ignore(syscall.SIGPIPE)
	}
	s := newSupervisor(p, h)
	if h.LauncherGone != nil {
		go func() { <-h.LauncherGone; s.launcherGone() }()
	}
	defer s.tearDown()
	if err := s.setUp(); err != nil {
		return exitCodeFor(err), err
	}
	if f := h.Faults; f != nil && p.Run.Up && f.AtStart {
		go s.runFaults(f)
	}
	if p.Run.Up {
		if code, stopped, err := s.startUp(sigs); err != nil || stopped {
			return code, err
		}
	} else if err := s.startNodes(); err != nil {
		s.stopAll(0)
		return exitCodeFor(err), err
	}
	// What dead runs left is removed once this one runs, off its start-up
	// path, also in the fallback folder. (Leases of dead runs are
	// reclaimed as they are needed anyway.)
	s.gcDone = make(chan struct{})
	go func() { _, _ = runstate.GCAll(p.Run.RuntimeDir, p.User.UID); close(s.gcDone) }()
	s.publish(control.Event{Kind: control.EventRunUp})
	if p.Run.Up {
		s.reportAllStarted()
		s.out.Note(UpNote + p.Run.ID)
		if h.Detached != nil {
			detached(h.Detached, p.Run.ID)
		}
		if f := h.Faults; f != nil && !f.AtStart {
			go s.runFaults(f)
		}
		code := s.superviseUp(sigs)
		s.endOfRun("every node has exited")
		return code, nil
	}
	code := s.superviseOne(sigs)
	s.endOfRun("the command exited")
	return code, nil
}

// UpNote starts the line `nsrun up` prints (after "nsrun |") once every
// node is up, followed by the run's id, for people (programs follow the
// run's events: control.EventRunUp).
const UpNote = "every node is up: run "

// detached tells the nsrun that waits for a detached run (`nsrun up -d`)
// that it is up, with its id, and points stderr at /dev/null, as that
// nsrun exits.
func detached(w *os.File, id string) {
	_, _ = w.WriteString(id + "\n")
	w.Close()
	if null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		_ = unix.Dup3(int(null.Fd()), 2, 0)
		null.Close()
	}
}

// startUp starts `nsrun up`'s nodes while it watches the caller's
// signals: SIGINT, SIGTERM, SIGHUP or SIGQUIT while nodes start (or wait
// to be ready) stops the start, then the nodes already started (SIGTERM,
// SIGKILL after the stop timeout; a second signal kills at once), and
// `nsrun up` exits with 128+N for signal N (130 for Ctrl-C). Other
// signals go to the process groups of the nodes that run. stopped says
// the run ended here, with code.
func (s *supervisor) startUp(sigs chan os.Signal) (code int, stopped bool, err error) {
	defer s.out.EndProgress()
	started := make(chan error, 1)
	go func() { started <- s.startNodes() }()
	var interrupt syscall.Signal
	for {
		select {
		case err := <-started:
			if err != nil {
				s.stopAll(0)
				return exitCodeFor(err), true, err
			}
			if interrupt == 0 {
				return 0, false, nil
			}
			return s.stopStarted(sigs, interrupt), true, nil
		case sig := <-sigs:
			ss := sig.(syscall.Signal)
			if !stopSignal(ss) {
				s.signalNodes(ss)
				continue
			}
			if interrupt == 0 {
				interrupt = ss
				s.out.Note(fmt.Sprintf("%s while nodes start: stopping every node", sig))
				s.stop(fmt.Sprintf("%s while nodes start", sig))
			}
		}
	}
}

// stopSignal says whether sig stops `nsrun up`.
func stopSignal(sig syscall.Signal) bool {
	switch sig {
	case syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT:
		return true
	}
	return false
}

// signalNodes sends sig to every running node's process group.
func (s *supervisor) signalNodes(sig syscall.Signal) {
	for _, n := range s.allNodes() {
		if pid := n.pid(); pid != 0 {
			_ = unix.Kill(-pid, sig)
		}
	}
}

// stopStarted stops the nodes that started before signal sig cut the
// start short: SIGTERM, SIGKILL after the stop timeout, or at once on a
// second stop signal. It returns `nsrun up`'s exit code, 128+sig.
func (s *supervisor) stopStarted(sigs chan os.Signal, sig syscall.Signal) int {
	timeout := s.plan.Run.StopTimeout
	done := make(chan struct{})
	go func() { s.stopAll(timeout); close(done) }()
	for {
		select {
		case <-done:
			s.out.Flush()
			return exitcode.SignalBase + int(sig)
		case again := <-sigs:
			if ss := again.(syscall.Signal); stopSignal(ss) {
				s.out.Note("killing every node")
				s.stopAll(0)
			}
		}
	}
}

// exitCodeFor is nsrun's exit code for a failure to set up or start: 127
// for a command that does not exist, 126 for one that cannot be run, 125
// for anything else (as with docker run).
func exitCodeFor(err error) int {
	switch {
	case errors.Is(err, guest.ErrNotFound):
		return exitcode.NotFound
	case errors.Is(err, guest.ErrNotExecutable):
		return exitcode.CannotExecute
	}
	return ExitSetupFailed
}

// newSupervisor makes the supervisor of plan p, with its nodes, before any
// of its goroutines starts.
func newSupervisor(p *plan.Plan, h Handles) *supervisor {
	s := &supervisor{plan: p, handles: h, byName: map[string]*node{}, exited: make(chan exit, len(p.Nodes)), abort: make(chan struct{}), started: time.Now()}
	for i, n := range p.Nodes {
		nd := newNode(n, i)
		s.nodes = append(s.nodes, nd)
		s.byName[n.Name] = nd
		if len(n.Argv) > 0 {
			s.toStart++
		}
	}
	s.summarize = p.Run.Up && len(p.Nodes) > summarizeAbove
	return s
}

// supervisor is one run.
type supervisor struct {
	plan    *plan.Plan
	limits  limits
	handles Handles
	state   *runstate.Run
	net     *runnet.Network
	nodes   []*node
	byName  map[string]*node
	hosts   string
	out     *output.Prefixer
	ctl     *control.Server
	log     *slog.Logger
	logEnd  io.Closer
	cap     atomic.Pointer[capture.Capture]
	exited  chan exit     // every end of a node's process
	abort   chan struct{} // closed when the run is being stopped
	gcDone  chan struct{} // closed when the removal of dead runs is done
	once    sync.Once
	// started is when the run started (with the monotonic clock); events
	// is its event log (nil until the run folder exists: atomic, as the
	// launcher's death, on a goroutine of its own from the start,
	// publishes that the run stops), and stopping publishes its end once.
	started  time.Time
	events   atomic.Pointer[eventlog.Log]
	stopping sync.Once
	// subscribers counts the events requests being served: tear-down
	// lets them send their last events and their end.
	subscribers atomic.Int32
	// netMu serializes the net verbs with their events, so that the
	// events are in the order the verbs were applied.
	netMu    sync.Mutex
	outLog   *output.LogFile // the nodes' output (nsrun logs); nil without up
	infoMu   sync.Mutex      // serializes info.json's writes
	listed   bool            // info.json is written (infoMu)
	logsKept bool            // keepLogs has moved them (infoMu)
	attachMu sync.Mutex      // serializes attach
	listMu   sync.RWMutex    // guards nodes and byName, which attach extends
	// nsUse is held (read) while a request starts something with a node's
	// namespace fd (exec, socket) or uses the run's namespaces (net, node
	// and attach verbs), and taken for good by tearDown before it closes
	// the namespaces.
	nsUse sync.RWMutex
	// netc carries out `nsrun net`; it is set with net, once the network
	// is built.
	netc *netctl.Controller
	// engine is the run's link engine (delays), set with netc; it holds
	// nothing until some link needs it.
	engine *linkengine.Engine
	// hidden are the folders of the user's runs, covered in every node's
	// mount namespace (spec).
	hidden []string
	// summarize: `up` of more than summarizeAbove nodes prints counts
	// (and progress on a terminal), not a line for each node's start and
	// stop; nStarted counts the nodes started so far, of toStart.
	summarize bool
	nStarted  atomic.Int64
	toStart   int
}

// summarizeAbove is the number of nodes above which `nsrun up` reports
// the nodes' starts and their exits when stopped as counts, not a line
// a node.
const summarizeAbove = 50

// lookup finds a node by name.
func (s *supervisor) lookup(name string) (*node, bool) {
	s.listMu.RLock()
	defer s.listMu.RUnlock()
	n, ok := s.byName[name]
	return n, ok
}

// allNodes returns the nodes as they are now.
func (s *supervisor) allNodes() []*node {
	s.listMu.RLock()
	defer s.listMu.RUnlock()
	return append([]*node(nil), s.nodes...)
}

// addNode adds an attached node.
func (s *supervisor) addNode(n *node) {
	s.listMu.Lock()
	defer s.listMu.Unlock()
	s.nodes = append(s.nodes, n)
	s.byName[n.cfg.Name] = n
}

func (s *supervisor) setUp() error {
	p := s.plan
	var err error
	if s.log, s.logEnd, err = runlog.New(p.Run.Log, p.Capture); err != nil {
		return err
	}
	// The network is built while the run's files and mounts are made: the
	// kernel takes milliseconds over the first bridge of a user namespace.
	netErr := make(chan error, 1)
	go func() { netErr <- s.buildNetwork() }()
	s.limits.keepHostname = probeHostname()
	err = s.setUpFiles()
	if nerr := <-netErr; err == nil {
		err = nerr
	}
	if err != nil {
		return err
	}
	if msg := s.limits.notice(); msg != "" {
		fmt.Fprint(os.Stderr, msg)
	}
	if s.ctl, err = control.Listen(control.Path(p.Run.Dir)); err != nil {
		return err
	}
	go s.ctl.Serve(s.handle)
	if err := s.startCapture(); err != nil {
		return err
	}
	if err := s.publishPorts(); err != nil {
		return err
	}
	if err := s.applyLatency(); err != nil {
		return err
	}
	if p.Run.Up {
		names := make([]string, len(p.Nodes))
		for i, n := range p.Nodes {
			names[i] = n.Name
		}
		s.out = output.NewPrefixer(os.Stdout, names, p.Run.Color)
		if s.outLog, err = output.OpenLog(filepath.Join(s.state.Dir, OutputLog), output.DefaultLogCap); err != nil {
			return err
		}
		s.out.LogTo(s.outLog)
	}
	return nil
}

// OutputLog is the name of a run's output log in its folder (and in its
// kept logs' folder): what `nsrun up` prints, for `nsrun logs`.
const OutputLog = "output.log"

// applyLatency gives the link engine the file's regions and latency
// matrix, once every node is wired and before any starts (a run without
// them waits for nothing and starts no engine).
func (s *supervisor) applyLatency() error {
	m := s.plan.Latency
	if len(m.Regions) == 0 && len(m.Rules) == 0 {
		return nil
	}
	if err := s.net.WaitAllWired(); err != nil {
		return err
	}
	done := runlog.Step(s.log, "apply the latency matrix (link engine, user space)", "regions", len(m.Regions), "rules", len(m.Rules))
	out, err := s.netc.SetLatency(m, s.netNodes())
	done(err)
	if err == nil {
		s.log.Info(out)
	}
	return err
}

// startCapture starts capturing every link that asks for it (plan.Link's
// Capture), once every node is wired and before any node starts.
func (s *supervisor) startCapture() error {
	var links []capture.Link
	for _, n := range s.allNodes() {
		for _, l := range n.cfg.Links {
			if l.Capture != "" {
				links = append(links, capture.Link{Node: n.cfg.Name, Port: l.Port, File: l.Capture})
			}
		}
	}
	if len(links) == 0 {
		return nil
	}
	if err := s.net.WaitAllWired(); err != nil {
		return err
	}
	c, err := capture.Start(s.net.BridgeNS(), links, s.log)
	if err != nil {
		return err
	}
	s.cap.Store(c)
	return nil
}

// buildNetwork applies the plan's network (package runnet) in the
// supervisor's own network namespace, which becomes the bridge namespace.
// Each node's namespace is set (node.ns) as it is wired, before its
// wired channel closes.
func (s *supervisor) buildNetwork() error {
	nodes := s.allNodes()
	var err error
	s.net, err = runnet.Build(s.plan, s.log, func(i int, ns *os.File) { nodes[i].ns = ns })
	if err != nil {
		return err
	}
	uplink := ""
	if _, ok := s.net.UplinkBlock(); ok {
		uplink = s.plan.Uplink.Port
	}
	s.engine = linkengine.New(s.net.BridgeNS(), s.log)
	s.netc = netctl.New(s.net.BridgeNS(), uplink, s.net.Shape, s.engine)
	return nil
}

// setUpFiles makes the run's mounts and state files: a private mount
// namespace with /proc of the run's pid namespace, the run folder, and the
// run's /etc/hosts and resolv.conf.
func (s *supervisor) setUpFiles() error {
	p := s.plan
	var err error
	// Mounts made for guests must never propagate back to the caller.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	// A /proc of the run's own pid namespace, for the supervisor and guests.
	if err := s.mountProc(); err != nil {
		return err
	}
	if s.state, err = runstate.Create(p.Run.Dir, p.Run.ID); err != nil {
		return err
	}
	events, err := eventlog.Open(filepath.Join(p.Run.Dir, EventsFile), s.started)
	if err != nil {
		return err
	}
	s.events.Store(events)
	s.hidden = hiddenDirs(p)
	// Files for every node and for the first subnet's are mounted in the
	// supervisor's mount namespace, which its nodes share; nodes of other
	// subnets get a mount namespace of their own (mounts).
	for _, m := range p.Mounts {
		var content []byte
		switch m.Kind {
		case plan.HostsFile:
			content = hostsFile(p.Hosts)
		case plan.ResolvFile:
			if _, err := os.Stat(m.Target); errors.Is(err, fs.ErrNotExist) {
				// Nothing to mount over (a container without a network
				// has none): the resolver's default, said once.
				s.limits.noResolv = true
				continue
			}
			content = []byte("# written by nsrun for run " + p.Run.ID + "\nnameserver " + m.Nameserver.String() + "\n")
		case plan.GaiFile:
			if _, err := os.Stat(m.Target); err != nil {
				continue // nothing to mount over: glibc's own order
			}
			content = []byte(gaiConf)
		}
		path, err := s.state.WriteFile(m.File, content)
		if err != nil {
			return err
		}
		if m.Kind == plan.HostsFile {
			s.hosts = path
		}
		if m.Subnet == plan.AllSubnets || m.Subnet == 0 {
			if err := guest.BindReadOnly(path, m.Target); err != nil {
				return err
			}
		}
	}
	return nil
}

// mounts are the files node n sees other than the supervisor does:
// target to source.
func (s *supervisor) mounts(n *node) map[string]string {
	m := s.plan.NodeMounts(&n.cfg)
	if s.limits.noResolv {
		for _, pm := range s.plan.Mounts {
			if pm.Kind == plan.ResolvFile {
				delete(m, pm.Target)
			}
		}
	}
	for target, file := range m {
		m[target] = filepath.Join(s.state.Dir, file)
	}
	return m
}

// spec is how node n's command (or an exec into n) is started.
// Every node has the folders of the user's runs covered (hidden): only a
// node with control: true sees its own run's folder, with the control
// socket, and gets NSRUN_CONTROL.
func (s *supervisor) spec(n *node, argv, env []string, dir string) guest.Spec {
	sp := guest.Spec{
		NetNS:    n.ns,
		Hostname: n.cfg.Hostname,
		Mounts:   s.mounts(n),
		// Where the container refuses them (limits.go).
		SharedProc:   s.limits.sharedProc,
		KeepHostname: s.limits.keepHostname,
		Hide:         s.hidden,
		Argv:         argv,
		Env:          append(append([]string{}, env...), "NSRUN_RUN="+s.plan.Run.ID, "NSRUN_NODE="+n.cfg.Name),
		Dir:          dir,
		MapUser:      s.plan.User.Mode == plan.UserMapped,
		UID:          s.plan.User.UID,
		GID:          s.plan.User.GID,
	}
	if a := s.plan.HostAddr(); a.IsValid() {
		sp.Env = append(sp.Env, plan.HostEnv+"="+a.String())
	}
	if n.cfg.Control {
		if sp.Mounts == nil {
			sp.Mounts = map[string]string{}
		}
		sp.Mounts[s.plan.Run.Dir] = s.plan.Run.Dir
		sp.Env = append(sp.Env, "NSRUN_CONTROL="+control.Path(s.plan.Run.Dir))
	}
	return sp
}

// hiddenDirs are the folders of the user's runs that exist: every
// node's mount namespace has them covered.
func hiddenDirs(p *plan.Plan) []string {
	var out []string
	for _, d := range append([]string{p.Run.RuntimeDir}, runstate.Candidates(p.User.UID)...) {
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// nodeSpec is how node n's own command is started: under an init of
// nsrun's, as PID 1 of a pid namespace of the node's own (guest.Spec's
// PIDNS), so that every process it starts is the node's; in `nsrun --
// CMD`, with the caller's stdio.
func (s *supervisor) nodeSpec(n *node) guest.Spec {
	sp := s.spec(n, n.cfg.Argv, s.nodeEnv(n), n.cfg.Dir)
	sp.PIDNS = true
	sp.Tmpfs = n.cfg.Tmpfs
	if !s.plan.Run.Up {
		sp.Stdin, sp.Stdout, sp.Stderr, sp.Setpgid = os.Stdin, os.Stdout, os.Stderr, !s.plan.Run.Terminal
		sp.Terminal = s.plan.Run.Terminal
	}
	return sp
}

// startNodes starts every node once the nodes it depends on are up, and
// returns when all are up (or one failed).
func (s *supervisor) startNodes() error {
	nodes := s.allNodes()
	errs := make(chan error, len(nodes))
	for _, n := range nodes {
		go func() { errs <- s.startNode(n) }()
	}
	var first error
	for range nodes {
		if err := <-errs; err != nil && first == nil {
			first = err
			s.stop("a node failed to start")
		}
	}
	if first == nil {
		s.writeInfo()
	}
	return first
}

func (s *supervisor) startNode(n *node) error {
	select {
	case <-s.net.Wired(n.idx):
	case <-s.abort:
		return nil
	}
	if err := s.net.WaitWired(n.idx); err != nil {
		return err
	}
	for _, d := range n.cfg.DependsOn {
		dep, _ := s.lookup(d)
		select {
		case <-dep.up:
		case <-s.abort:
			return nil
		}
		if err := s.waitCondition(n, dep); err != nil {
			return err
		}
	}
	if len(n.cfg.Argv) == 0 {
		close(n.up)
		return nil
	}
	if err := s.listenNotes(n); err != nil {
		n.failedFirstStart()
		return err
	}
	sp := s.nodeSpec(n)
	if err := s.launch(n, sp); err != nil {
		n.failedFirstStart()
		return err
	}
	if s.plan.Run.Up {
		s.reportStarted(n)
	}
	if n.cfg.Ready.Kind == plan.ReadyTCP {
		if err := s.waitReady(n); err != nil {
			return err
		}
		s.out.Event(n.cfg.Name, fmt.Sprintf("ready (tcp:%d accepts)", n.cfg.Ready.Addr.Port()))
	}
	s.publish(control.Event{Kind: control.EventNodeReady, Node: n.cfg.Name})
	close(n.up)
	return nil
}

// reportStarted prints that node n started; in a summarized run, the
// progress on a terminal (every 1% of the nodes and the last).
func (s *supervisor) reportStarted(n *node) {
	if !s.summarize {
		s.out.Event(n.cfg.Name, "started") // no pid: the run's own pid namespace numbers it, not the host's
		return
	}
	k := int(s.nStarted.Add(1))
	if k%max(1, s.toStart/100) == 0 || k == s.toStart {
		s.out.Progress(fmt.Sprintf("starting %d/%d nodes", k, s.toStart))
	}
}

// reportAllStarted prints, in a summarized run, how many nodes started
// and the first few of them, once every node is up.
func (s *supervisor) reportAllStarted() {
	s.out.EndProgress()
	if !s.summarize {
		return
	}
	var names []string
	for _, n := range s.allNodes() {
		if n.pid() != 0 {
			names = append(names, n.cfg.Name)
		}
	}
	if len(names) > 0 {
		s.out.Note(output.Count(names, "started"))
	}
}

// launch starts n's command as sp says (in `up`, with stdin /dev/null and
// its output prefixed) and watches it (node.begin): its end is reported
// on s.exited.
func (s *supervisor) launch(n *node, sp guest.Spec) error {
	if s.plan.Run.Up {
		devnull, w, err := s.nodeIO(n)
		if err != nil {
			return err
		}
		defer devnull.Close()
		defer w.Close()
		sp.Stdin, sp.Stdout, sp.Stderr, sp.Setpgid = devnull, w, w, true
	}
	end := runlog.Step(s.log, "start node", "node", n.cfg.Name, "argv", strings.Join(sp.Argv, " "))
	p, err := guest.Start(sp)
	end(err)
	if err != nil {
		return fmt.Errorf("node %q: %w", n.cfg.Name, err)
	}
	// Published before the watch starts, so that the exit comes after.
	s.publish(control.Event{Kind: control.EventNodeStarted, Node: n.cfg.Name, Pid: p.Pid})
	n.begin(p, s.exited, func(code int) {
		s.publish(control.Event{Kind: control.EventNodeExited, Node: n.cfg.Name, Code: &code})
	})
	if n.health != nil {
		_, done := n.process()
		go s.watchHealth(n, done)
	}
	return nil
}

// nodeIO opens an up-mode node's stdin (/dev/null) and output (a pipe
// to the prefixer; in `nsrun -- CMD` mode, the caller's stdout).
func (s *supervisor) nodeIO(n *node) (stdin, out *os.File, err error) {
	if stdin, err = os.Open(os.DevNull); err != nil {
		return nil, nil, err
	}
	if s.out == nil {
		out, err = os.OpenFile("/proc/self/fd/1", os.O_WRONLY, 0)
	} else {
		out, err = s.out.Writer(n.cfg.Name)
	}
	if err != nil {
		stdin.Close()
		return nil, nil, err
	}
	return stdin, out, nil
}

// readyProgress is how often a ready wait says what it waits for.
const readyProgress = 5 * time.Second

// readyDialTimeout bounds one connection attempt of a ready check: a node
// that drops the handshake (a partition, a firewall of its own) must not
// hold the wait past its timeout or past a stop.
const readyDialTimeout = time.Second

// waitReady polls the node's ready port from the bridge namespace (either
// family: a node of an IPv6-only subnet is checked at its IPv6 address)
// until it accepts, the node's process ends, the run is stopped, or the
// check's timeout passes; every readyProgress it says what it waits for.
func (s *supervisor) waitReady(n *node) error {
	r := n.cfg.Ready
	start := time.Now()
	deadline := start.Add(r.Timeout)
	progress := time.NewTicker(readyProgress)
	defer progress.Stop()
	for time.Now().Before(deadline) {
		if s.accepts(r.Addr, min(readyDialTimeout, time.Until(deadline))) {
			return nil
		}
		_, done := n.process()
		select {
		case <-done:
			return fmt.Errorf("node %q exited with code %d before tcp:%d accepted", n.cfg.Name, n.exitCode(), r.Addr.Port())
		case <-s.abort:
			return nil
		case <-progress.C:
			s.out.Event(n.cfg.Name, fmt.Sprintf("waiting for tcp:%d (%s) to accept: %s of %s",
				r.Addr.Port(), r.Addr.Addr(), time.Since(start).Round(time.Second), r.Timeout))
		case <-time.After(r.Interval):
		}
	}
	return fmt.Errorf("node %q: tcp:%d did not accept within %s (to wait longer, write ready: {check: tcp:%d, timeout: 5m})",
		n.cfg.Name, r.Addr.Port(), r.Timeout, r.Addr.Port())
}

// accepts says whether addr accepts a TCP connection made from the
// bridge namespace within timeout.
func (s *supervisor) accepts(addr netip.AddrPort, timeout time.Duration) bool {
	ok := false
	_ = nsfd.Do(s.net.BridgeNS(), func() error {
		// The socket is made on this locked thread, in the bridge
		// namespace; the dial waits in the poller.
		c, err := net.DialTimeout("tcp", addr.String(), timeout)
		if err == nil {
			ok = true
			c.Close()
		}
		return nil
	})
	return ok
}

// superviseOne runs `nsrun -- CMD`: signals go to the command, whose exit
// ends the run.
func (s *supervisor) superviseOne(sigs chan os.Signal) int {
	forward := userns.ForwardedSet(s.plan.Run.Terminal)
	n := s.allNodes()[0]
	for {
		_, done := n.process()
		select {
		case sig := <-sigs:
			if pid := n.pid(); forward[sig] && pid != 0 {
				_ = unix.Kill(pid, sig.(syscall.Signal))
			}
		case <-done:
			if !n.running() { // not started again meanwhile
				return n.exitCode()
			}
		}
	}
}

// superviseUp runs `nsrun up`: a first SIGINT/SIGTERM/SIGHUP stops every
// node (SIGTERM, then SIGKILL after the timeout), a second kills them.
// With --abort-on-exit the run ends with the code of the node whose exit
// stopped it (as docker compose's --abort-on-container-exit); with
// --exit-code-from NODE, with NODE's; otherwise 0, or 1 when a node had
// to be killed.
func (s *supervisor) superviseUp(sigs chan os.Signal) int {
	// Nodes without a command hold their namespace until the run is
	// stopped; the others keep it going until they have all exited.
	running, idle := 0, false
	for _, n := range s.allNodes() {
		if n.pid() != 0 {
			running++
		} else {
			idle = true
		}
	}
	timeout := s.plan.Run.StopTimeout
	// With --abort-on-exit, the exit code of the node whose exit stopped
	// the run.
	abortCode, aborted := 0, false
	// In a summarized run, the nodes that ran when the stop began: their
	// exits are printed as counts by exit code once all have ended.
	var stopping []*node
	stopped := make(chan struct{})
	startStop := func(reason string) {
		s.once.Do(func() {
			if s.summarize {
				for _, n := range s.allNodes() {
					if n.running() {
						stopping = append(stopping, n)
					}
				}
			}
			s.endOfRun(reason)
			close(s.abort)
			go func() { s.stopAll(timeout); close(stopped) }()
		})
	}
	for running > 0 || idle {
		select {
		case <-stopped:
			running, idle = 0, false // every process has ended, held nodes included
		case sig := <-sigs:
			switch sig {
			case syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT:
				select {
				case <-s.abort:
					s.out.Note("killing every node")
					s.stopAll(0)
				default:
					s.out.Note(fmt.Sprintf("stopping every node (%s; SIGKILL after %s)", sig, timeout))
					startStop(sig.String())
				}
			default:
				for _, n := range s.allNodes() {
					if pid := n.pid(); pid != 0 {
						_ = unix.Kill(-pid, sig.(syscall.Signal))
					}
				}
			}
		case e := <-s.exited:
			if e.restartGone {
				running--
				continue
			}
			// In a summarized run, the nodes the stop ends are counted
			// below, and info.json (every node) is not written again for
			// each: at 1,000 nodes that is a megabyte a node.
			if !s.summarize || !s.stopRequested() {
				s.out.Event(e.n.cfg.Name, fmt.Sprintf("exited with code %d", e.code))
				s.updateInfo()
			}
			if e.held {
				continue // stopped on request; `nsrun node start` brings it back
			}
			if s.restartLater(e) {
				continue // it comes back, and is still counted
			}
			running--
			if e.code == 0 && s.plan.Completes(e.n.cfg.Name) {
				continue // done, as the nodes that wait for it expect
			}
			if s.plan.Run.AbortOnExit || s.plan.Run.ExitCodeFrom != "" {
				select {
				case <-s.abort: // already stopping: this node was stopped
				default:
					abortCode, aborted = e.code, true
				}
				startStop(fmt.Sprintf("node %s exited with code %d", e.n.cfg.Name, e.code))
			}
		}
	}
	select {
	case <-s.abort:
		<-stopped
	default:
	}
	s.out.Flush()
	// Every process has ended: each node's exit code is its last one.
	byCode := map[int][]string{}
	for _, n := range stopping {
		byCode[n.exitCode()] = append(byCode[n.exitCode()], n.cfg.Name)
	}
	for _, code := range slices.Sorted(maps.Keys(byCode)) {
		s.out.Note(output.Count(byCode[code], fmt.Sprintf("exited with code %d", code)))
	}
	if s.plan.Run.ExitCodeFrom != "" {
		n, _ := s.lookup(s.plan.Run.ExitCodeFrom)
		return n.exitCode()
	}
	if aborted {
		return abortCode
	}
	for _, n := range s.allNodes() {
		if n.wasKilled() {
			return 1
		}
	}
	return 0
}

// launcherGoneExit is the supervisor's exit code when the launcher died;
// nobody reads it.
const launcherGoneExit = exitcode.SignalBase + 9

// launcherGone ends the run at once because the launcher died (the
// caller killed nsrun, maybe with SIGKILL): every node is killed, as the
// launcher's death always did, but the capture first writes out what the
// kernel holds, so that every pcap file ends on a whole record. Exiting,
// the supervisor (PID 1 of the run's pid namespace) takes every other
// process of the run with it; it removes the run's state folder first
// (which, if the supervisor itself is killed, the next run or gc does).
func (s *supervisor) launcherGone() {
	// Whoever read nsrun's output may have died with it (a killed test
	// binary of package nstest): a write must not end the supervisor
	// before the run's folder is removed.
	signal.Ignore(syscall.SIGPIPE)
	s.stop("the launcher (nsrun) died")
	// Twice, for a node that was being started the first time round.
	for range 2 {
		for _, n := range s.allNodes() {
			n.kill()
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.cap.Load().Stop()
	// The run's folder goes too, so that nothing is left for gc.
	s.out.Flush()
	s.keepLogs()
	_ = os.RemoveAll(s.plan.Run.Dir)
	os.Exit(launcherGoneExit)
}

// stopRequested says whether the run is being stopped.
func (s *supervisor) stopRequested() bool {
	select {
	case <-s.abort:
		return true
	default:
		return false
	}
}

// stop marks the run as stopping (nodes not yet started never start),
// for reason.
func (s *supervisor) stop(reason string) {
	s.once.Do(func() {
		s.endOfRun(reason)
		close(s.abort)
	})
}

// endOfRun publishes that the run is stopping, for reason, the first
// time it is called.
func (s *supervisor) endOfRun(reason string) {
	s.stopping.Do(func() { s.publish(control.Event{Kind: control.EventRunStopping, Text: reason}) })
}

// publish adds e to the run's events.
func (s *supervisor) publish(e control.Event) { s.events.Load().Publish(e) }

// EventsFile is the file in the run folder to which the run appends
// every event, one JSON object (control.Event) a line.
const EventsFile = "events.jsonl"

// stopAll sends SIGTERM to every process of every node (node.terminate),
// waits up to timeout, then kills what is left.
func (s *supervisor) stopAll(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	nodes := s.allNodes()
	if timeout <= 0 {
		endAll(nodes, deadline)
		return
	}
	// In reverse dependency order, as compose stops its services: a node
	// hears SIGTERM once every node that depends on it has ended (or the
	// deadline passed), so that a client never finds its server gone.
	// Nodes nothing depends on, most of them, share one scan of /proc.
	dependents := map[string][]*node{}
	for _, n := range nodes {
		for _, d := range n.cfg.DependsOn {
			dependents[d] = append(dependents[d], n)
		}
	}
	procs := byNamespace()
	ended := map[*node]chan struct{}{}
	for _, n := range nodes {
		ended[n] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(ended[n])
			own := procs
			if deps := dependents[n.cfg.Name]; len(deps) > 0 {
				timer := time.NewTimer(time.Until(deadline))
				defer timer.Stop()
			wait:
				for _, d := range deps {
					select {
					case <-ended[d]:
					case <-timer.C:
						break wait
					}
				}
				own = nil // its processes now, not at the start
			}
			n.terminate(own)
			n.end(time.After(time.Until(deadline)))
		}()
	}
	wg.Wait()
}

// endAll waits for the processes of nodes to end until deadline, then
// kills those left. Each node waits on a timer of its own: one shared
// timer's single tick would go to the first node that reads it, and the
// nodes after it would wait for ever.
func endAll(nodes []*node, deadline time.Time) {
	for _, n := range nodes {
		n.end(time.After(time.Until(deadline)))
	}
}

// tearDown removes the run's state. The namespaces and veths go with the
// fds and processes, when the supervisor exits.
func (s *supervisor) tearDown() {
	if s.log != nil {
		defer s.logEnd.Close()
		defer runlog.Step(s.log, "tear down", "run", s.plan.Run.ID)(nil)
	}
	if s.ctl != nil {
		s.ctl.Close()
	}
	for _, n := range s.allNodes() {
		if n.running() {
			_ = unix.Kill(n.pid(), unix.SIGKILL)
		}
	}
	s.cap.Load().Stop()
	s.closeNotes()
	s.nsUse.Lock() // never released: the namespaces are gone
	if s.engine != nil {
		s.engine.Close()
	}
	for _, n := range s.allNodes() {
		if n.attached && n.ns != nil {
			n.ns.Close()
		}
	}
	s.net.Close()
	// The subscribers get their last events and their end, before the
	// supervisor exits.
	_ = s.events.Load().Close()
	s.saveEvents()
	for deadline := time.Now().Add(2 * time.Second); s.subscribers.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	s.out.Flush()
	s.keepLogs()
	if s.state != nil {
		_ = s.state.Remove()
	}
	if s.gcDone != nil {
		<-s.gcDone
	}
}

// keepLogs moves the run's output log, with its info.json, to the kept
// logs' folder (runstate.KeptLogsDir) when the run asked for it
// (--keep-logs): `nsrun logs --run ID` reads it after the run.
func (s *supervisor) keepLogs() {
	if s.outLog == nil {
		return
	}
	s.infoMu.Lock()
	defer s.infoMu.Unlock()
	s.outLog.Close()
	if !s.plan.Run.KeepLogs || s.state == nil || s.logsKept {
		return
	}
	s.logsKept = true
	kept := runstate.KeptLogsDir(s.plan.Run.RuntimeDir)
	dst := filepath.Join(kept, s.plan.Run.ID)
	if err := os.MkdirAll(kept, 0o700); err != nil {
		s.log.Error("keep logs", "err", err)
		return
	}
	if err := os.Mkdir(dst, 0o700); err != nil {
		s.log.Error("keep logs", "err", err)
		return
	}
	for _, name := range []string{"info.json", OutputLog + ".1", OutputLog} {
		if err := os.Rename(filepath.Join(s.state.Dir, name), filepath.Join(dst, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Error("keep logs", "file", name, "err", err)
		}
	}
}

// updateInfo writes the run's record again once it has been written:
// a node's state changed.
func (s *supervisor) updateInfo() {
	s.infoMu.Lock()
	listed := s.listed
	s.infoMu.Unlock()
	if listed {
		s.writeInfo()
	}
}

// writeInfo records the run for `nsrun ls` and `nsrun ps`.
func (s *supervisor) writeInfo() {
	s.infoMu.Lock()
	defer s.infoMu.Unlock()
	s.listed = true
	info := runstate.Info{ID: s.plan.Run.ID, File: s.plan.Run.FilePath, Project: s.plan.Run.Project, Pid: s.plan.Run.NsrunPid}
	if block, ok := s.net.UplinkBlock(); ok {
		info.Uplink = block.String()
	}
	for _, n := range s.allNodes() {
		ni := n.info()
		if n.cfg.Addr.IsValid() {
			ni.Addr = n.cfg.Addr.String()
		}
		if n.cfg.Addr6.IsValid() {
			ni.Addr6 = n.cfg.Addr6.String()
		}
		info.Nodes = append(info.Nodes, ni)
	}
	_ = s.state.WriteInfo(info)
}

// gaiConf is the run's /etc/gai.conf (plan.GaiFile): RFC 6724's policy
// table, which orders IPv4 before unique local IPv6 addresses.
const gaiConf = `# written by nsrun: RFC 6724's address order (IPv4 before fd00::/8),
# as Go and the RFC have it; glibc's default (RFC 3484) tries IPv6 first.
label ::1/128 0
label ::/0 1
label ::ffff:0:0/96 4
label 2002::/16 2
label 2001::/32 5
label fc00::/7 13
label ::/96 3
label fec0::/10 11
label 3ffe::/16 12
precedence ::1/128 50
precedence ::/0 40
precedence ::ffff:0:0/96 35
precedence 2002::/16 30
precedence 2001::/32 5
precedence fc00::/7 3
precedence ::/96 1
precedence fec0::/10 1
precedence 3ffe::/16 1
`

// hostsFile is the run's /etc/hosts: localhost, then entries.
func hostsFile(entries []plan.HostEntry) []byte {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, e := range entries {
		fmt.Fprintf(&b, "%s\t%s\n", e.Addr, strings.Join(e.Names, " "))
	}
	return []byte(b.String())
}

// hostEntries are the lines of the run's /etc/hosts: the plan's, then
// attached nodes'.
func (s *supervisor) hostEntries() []plan.HostEntry {
	out := append([]plan.HostEntry(nil), s.plan.Hosts...)
	for _, n := range s.allNodes() {
		if n.attached {
			for _, a := range []netip.Addr{n.cfg.Addr, n.cfg.Addr6} {
				if a.IsValid() {
					out = append(out, plan.HostEntry{Addr: a, Names: []string{n.cfg.Name}})
				}
			}
		}
	}
	return out
}

// nodeEnv is node n's environment: nsrun's, then the node's own.
func (s *supervisor) nodeEnv(n *node) []string {
	env := append(append([]string(nil), s.plan.Env...), envNotes+"="+NotesAddr)
	return append(env, n.cfg.Env...)
}

// runFaults runs the file's fault schedule through the run's own control
// socket (the supervisor may do anything on it) until it ends or the run
// stops; a stopping run is not healed, it is torn down.
func (s *supervisor) runFaults(sched *faults.Schedule) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-s.abort; cancel() }()
	seq, err := sched.Sequence(sched.Seed)
	if err != nil {
		s.out.Note("faults: " + err.Error())
		return
	}
	c := control.ForRun(s.plan.Run.Dir)
	_ = sched.Run(ctx, c, seq, false, func(e faults.Event) {
		s.out.Note(e.String())
		n := e.Note()
		s.publish(control.Event{Kind: n.Kind, Verb: n.Verb, Step: n.Step, Text: n.Text})
	})
}
