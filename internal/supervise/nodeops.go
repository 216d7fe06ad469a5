package supervise

import (
	"fmt"

	"github.com/nsrun/nsrun/internal/control"
)

// nodeVerb serves `nsrun node stop|start|restart|pause|resume NODE`. A
// stopped node keeps its namespace and address; the run goes on.
func (s *supervisor) nodeVerb(p *control.Peer) {
	c := p.Req.Node // checked (control.Request.Check)
	action, name := c.Action, c.Node
	n, ok := s.lookup(name)
	if !ok {
		p.Fail(control.Errorf(control.ErrUnknownNode, "node %s: no node %q in this run; its nodes: %s", action, name, s.nodeNames()))
		return
	}
	if len(n.cfg.Argv) == 0 {
		p.Fail(control.Errorf(control.ErrBadValue, "node %s: %q has no command to %s", action, name, action))
		return
	}
	select {
	case <-s.abort:
		if action == "start" || action == "restart" {
			p.Fail(control.Errorf(control.ErrRunGone, "node %s: the run is stopping", action))
			return
		}
	default:
	}
	launch := func(n *node) error {
		if err := s.launch(n, s.nodeSpec(n)); err != nil {
			return err
		}
		s.out.Event(n.cfg.Name, "started again")
		return nil
	}
	err := n.do(action, s.plan.Run.StopTimeout, launch)
	s.updateInfo()
	if err != nil {
		p.Fail(err)
		return
	}
	if kind, ok := map[string]control.EventKind{"stop": control.EventNodeStopped, "pause": control.EventNodePaused, "resume": control.EventNodeResumed}[action]; ok {
		s.publish(control.Event{Kind: kind, Node: name})
	}
	p.Reply(control.Response{Done: true, Output: fmt.Sprintf("%s: %s done", name, action)})
}
