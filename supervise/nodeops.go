package supervise

import (
	"fmt"

	"github.com/nsrun/nsrun/control"
)

// nodeVerb serves `nsrun node stop|start|restart|pause|resume NODE`. A
// stopped node keeps its namespace and address; the run goes on.
func (s *supervisor) nodeVerb(p *control.Peer) {
	c := p.Req.Node // checked (control.Request.Check)
	action, name := c.Action, c.Node
	n, ok := s.lookup(name)
	if !ok {
		p.Reply(control.Response{Error: fmt.Sprintf("node %s: no node %q in this run; its nodes: %s", action, name, s.nodeNames()), ExitCode: 125})
		return
	}
	if len(n.cfg.Argv) == 0 {
		p.Reply(control.Response{Error: fmt.Sprintf("node %s: %q has no command to %s", action, name, action), ExitCode: 125})
		return
	}
	select {
	case <-s.abort:
		if action == "start" || action == "restart" {
			p.Reply(control.Response{Error: fmt.Sprintf("node %s: the run is stopping", action), ExitCode: 125})
			return
		}
	default:
	}
	launch := func(n *node) error {
		if err := s.launch(n, s.nodeSpec(n)); err != nil {
			return err
		}
		s.out.Event(n.cfg.Name, fmt.Sprintf("started again (pid %d)", n.pid()))
		return nil
	}
	if err := n.do(action, s.plan.Run.StopTimeout, launch); err != nil {
		p.Reply(control.Response{Error: err.Error(), ExitCode: 125})
		return
	}
	p.Reply(control.Response{Done: true, Output: fmt.Sprintf("%s: %s done", name, action)})
}
