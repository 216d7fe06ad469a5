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
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/capture"
	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/eventlog"
	"github.com/nsrun/nsrun/internal/exitcode"
	"github.com/nsrun/nsrun/internal/faults"
	"github.com/nsrun/nsrun/internal/guest"
	"github.com/nsrun/nsrun/internal/linkengine"
	"github.com/nsrun/nsrun/internal/netctl"
	"github.com/nsrun/nsrun/internal/output"
	"github.com/nsrun/nsrun/internal/plan"
	"github.com/nsrun/nsrun/internal/runlog"
	"github.com/nsrun/nsrun/internal/runnet"
	"github.com/nsrun/nsrun/internal/runstate"
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
	// Listeners are the published ports' sockets, by Publish, bound on
	// the host's loopback by the launcher, which stays in the caller's
	// network namespace (launch.BindPort, launch.BindUDPPort). The
	// supervisor closes them.
	Listeners map[plan.Publish]*os.File
	// Detached, for `nsrun up -d`, is the pipe to the nsrun process that
	// waits for the run: once every node is up, the run's id and a
	// newline are written to it and it is closed, and the run's stderr
	// then goes to /dev/null (that nsrun is gone). Nil otherwise.
	Detached *os.File
	// CallerPIDNS is the launcher's pid namespace, where the user who
	// started the run calls from (launch.CallerPIDNS); nil refuses every
	// client outside the run's pid namespace.
	CallerPIDNS *os.File
	// Signals is the channel that has heard the stop signals since the
	// supervisor started (launch.Signals); nil: Run makes one.
	Signals chan os.Signal
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
	// nodes run: the stop signals have been caught since before the Go
	// runtime started (launch.Signals).
	sigs := h.Signals
	if sigs == nil {
		sigs = make(chan os.Signal, 16)
	}
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
	} else if code, stopped, err := s.startOne(sigs); err != nil || stopped {
		return code, err
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
	return s.startWatching(sigs, "nodes start", true, func(sig os.Signal) { s.signalNodes(sig.(syscall.Signal)) })
}

// startOne starts the node of `nsrun -- CMD` while it watches the
// caller's signals. A stop signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT)
// before the command has started ends the start and the run, with
// 128+N: it would reach nobody otherwise (with a terminal, the supervisor
// drops the terminal's signals, which the command gets itself once it
// runs, and the command ran on). The other signals are passed on once
// the command runs. stopped says the run ended here, with code.
func (s *supervisor) startOne(sigs chan os.Signal) (code int, stopped bool, err error) {
	var later []os.Signal
	code, stopped, err = s.startWatching(sigs, "the command starts", false, func(sig os.Signal) { later = append(later, sig) })
	if !stopped {
		for _, sig := range later {
			select {
			case sigs <- sig: // superviseOne passes it on
			default: // the channel is full: dropped, as signal.Notify drops
			}
		}
	}
	return code, stopped, err
}

// startWatching starts the nodes while it watches sigs: the first stop
// signal stops the start (with a note that says so, if note) and then
// the nodes already started, and gives 128+N; other gets every other
// signal. stopped says the run ended here, with code.
func (s *supervisor) startWatching(sigs chan os.Signal, while string, note bool, other func(os.Signal)) (code int, stopped bool, err error) {
	started := make(chan error, 1)
	go func() { started <- s.startNodes() }()
	var interrupt syscall.Signal
	for {
		select {
		case err := <-started:
			if err != nil && interrupt == 0 {
				// A stop signal that came with the failure caused it:
				// at a terminal, a node's init that gets Ctrl-C before
				// its Go code listens ends with 2, and its start fails.
				interrupt = pendingStop(sigs, other)
			}
			if err != nil && interrupt == 0 {
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
				other(sig)
				continue
			}
			if interrupt == 0 {
				interrupt = ss
				if note {
					s.out.Note(fmt.Sprintf("%s while %s: stopping every node", sig, while))
				}
				s.stop(fmt.Sprintf("%s while %s", sig, while))
			}
		}
	}
}

// pendingStop returns the first stop signal waiting on sigs, 0 if none;
// other gets the other signals it takes off sigs on the way.
func pendingStop(sigs chan os.Signal, other func(os.Signal)) syscall.Signal {
	for {
		select {
		case sig := <-sigs:
			if ss := sig.(syscall.Signal); stopSignal(ss) {
				return ss
			}
			other(sig)
		default:
			return 0
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
	if err := s.net.EnsureBridges(); err != nil {
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

// publish adds e to the run's events.
func (s *supervisor) publish(e control.Event) { s.events.Load().Publish(e) }

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
