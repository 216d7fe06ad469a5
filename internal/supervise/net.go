package supervise

import (
	"net/netip"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/netctl"
	"github.com/nsrun/nsrun/internal/netsetup"
	"github.com/nsrun/nsrun/internal/plan"
)

// netVerb serves `nsrun net VERB` for partitions, flaky and show: the
// client parsed and checked the call (control.ParseNet); it is checked
// again here, and carried out (package netctl) on the run's nodes as they
// are now.
func (s *supervisor) netVerb(p *control.Peer) {
	c := p.Req.Net // checked (control.Request.Check)
	if c.Show == nil {
		// Rules, shaping and the link engine work on bridge ports: a
		// one-link subnet gets its bridge now (plan.Bridge's Deferred).
		if err := s.net.EnsureBridges(); err != nil {
			p.Fail(err)
			return
		}
	}
	s.netMu.Lock()
	out, st, err := s.netc.Do(c, s.netNodes())
	if err == nil {
		s.netEvent(c, out, st)
	}
	s.netMu.Unlock()
	if err != nil {
		p.Fail(err)
		return
	}
	p.Reply(control.Response{Done: true, Output: out, Net: &st})
}

// netNodes are the run's nodes (attached ones included) as the net verbs
// see them.
func (s *supervisor) netNodes() []netctl.Node {
	var out []netctl.Node
	for _, n := range s.allNodes() {
		nodeEnd, engineEnd := plan.EngineEnds(n.cfg.Name)
		nn := netctl.Node{Name: n.cfg.Name, VethPort: n.cfg.VethPort(), EngineEnds: netsetup.Splice{NodeEnd: nodeEnd, EngineEnd: engineEnd}, NS: n.ns}
		for _, a := range []netip.Addr{n.cfg.Addr, n.cfg.Addr6} {
			if a.IsValid() {
				nn.Addrs = append(nn.Addrs, a)
			}
		}
		for _, l := range n.cfg.Links {
			nn.Ports = append(nn.Ports, l.Port)
		}
		out = append(out, nn)
	}
	return out
}

// netEvent publishes the net verb c that was applied, with what it did
// (out) and the state it left (st): flaky as the node's link faults, show
// not at all. The state leaves out the blocked pairs (as many as the
// nodes squared; Partition has the cut) and the link engine's counters.
func (s *supervisor) netEvent(c *control.NetCall, out string, st control.NetState) {
	switch {
	case c.Show != nil:
		return
	case c.Flaky != nil:
		f := st.Faults[c.Flaky.Node]
		s.publish(control.Event{Kind: control.EventLinkFaults, Node: c.Flaky.Node, Faults: &f, Text: out})
		return
	}
	st.Blocked, st.Stats = nil, nil
	s.publish(control.Event{Kind: control.EventNet, Verb: c.Verb(), Net: &st, Text: out})
}
