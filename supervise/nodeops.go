package supervise

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/control"
)

// nodeVerb serves `nsrun node stop|start|restart|pause|resume NODE`. A
// stopped node keeps its namespace and address; the run goes on.
func (s *supervisor) nodeVerb(p *control.Peer) {
	if len(p.Req.Args) != 2 {
		p.Reply(control.Response{Error: "node: write nsrun node stop|start|restart|pause|resume NODE", ExitCode: 125})
		return
	}
	action, name := p.Req.Args[0], p.Req.Args[1]
	n, ok := s.lookup(name)
	if !ok {
		p.Reply(control.Response{Error: fmt.Sprintf("node %s: no node %q in this run; its nodes: %s", action, name, s.nodeNames()), ExitCode: 125})
		return
	}
	if len(n.cfg.Argv) == 0 {
		p.Reply(control.Response{Error: fmt.Sprintf("node %s: %q has no command to %s", action, name, action), ExitCode: 125})
		return
	}
	s.nodeMu.Lock()
	defer s.nodeMu.Unlock()
	var err error
	switch action {
	case "stop":
		err = s.stopNode(n)
	case "start":
		err = s.restartNode(n)
	case "restart":
		if err = s.stopNode(n); err == nil {
			err = s.restartNode(n)
		}
	case "pause", "resume":
		sig := unix.SIGSTOP
		if action == "resume" {
			sig = unix.SIGCONT
		}
		if !running(n) {
			err = fmt.Errorf("node %s: %q is not running", action, name)
		} else if unix.Kill(-n.proc.Pid, sig) != nil {
			err = unix.Kill(n.proc.Pid, sig)
		}
	default:
		err = fmt.Errorf("node: unknown action %q; write stop, start, restart, pause or resume", action)
	}
	if err != nil {
		p.Reply(control.Response{Error: err.Error(), ExitCode: 125})
		return
	}
	p.Reply(control.Response{Done: true, Output: fmt.Sprintf("%s: %s done", name, action)})
}

func running(n *node) bool {
	if n.proc == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// stopNode ends the node's processes (SIGTERM, SIGKILL after the run's stop
// timeout) and holds the node, so that its exit does not end the run.
func (s *supervisor) stopNode(n *node) error {
	if !running(n) {
		n.held = true
		return nil
	}
	n.held = true
	_ = unix.Kill(-n.proc.Pid, unix.SIGCONT)
	_ = unix.Kill(-n.proc.Pid, unix.SIGTERM)
	timeout := s.plan.Run.StopTimeout
	select {
	case <-n.done:
	case <-time.After(timeout):
		_ = unix.Kill(-n.proc.Pid, unix.SIGKILL)
		<-n.done
	}
	return nil
}

// restartNode starts the node's command again, in the same namespaces.
func (s *supervisor) restartNode(n *node) error {
	if running(n) {
		return fmt.Errorf("node start: %q is already running", n.cfg.Name)
	}
	select {
	case <-s.abort:
		return fmt.Errorf("node start: the run is stopping")
	default:
	}
	done := make(chan struct{})
	if err := s.launch(n, s.spec(n, n.cfg.Argv, s.nodeEnv(n), n.cfg.Dir), done); err != nil {
		return fmt.Errorf("node start: %w", err)
	}
	n.done, n.held = done, false
	p := n.proc
	s.out.event(n.cfg.Name, fmt.Sprintf("started again (pid %d)", p.Pid))
	return nil
}
