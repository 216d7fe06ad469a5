package supervise

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/guest"
	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/internal/output"
	"github.com/nsrun/nsrun/internal/plan"
	"github.com/nsrun/nsrun/internal/runlog"
)

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
