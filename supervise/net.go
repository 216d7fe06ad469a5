package supervise

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nsrun/nsrun/control"
	"github.com/nsrun/nsrun/netsetup"
	"github.com/nsrun/nsrun/nft"
	"github.com/nsrun/nsrun/partition"
)

// faults are a node's link faults (`nsrun net flaky`).
type faults struct {
	Loss   int    `json:"loss_percent,omitempty"`
	Rate   string `json:"rate,omitempty"`
	Delay  string `json:"delay,omitempty"`
	Jitter string `json:"jitter,omitempty"`
}

// netState is what `nsrun net` has set, guarded by its mutex: every verb
// rebuilds the whole rule set and applies it in one transaction.
type netState struct {
	mu     sync.Mutex
	part   partition.State
	faults map[string]faults
}

func (s *supervisor) nodeList() []string {
	var names []string
	for _, n := range s.allNodes() {
		names = append(names, n.cfg.Name)
	}
	return names
}

// netVerb serves `nsrun net VERB` for partitions, flaky and show: the
// client parsed and checked the call (control.ParseNet); it is checked
// again here, against the run's nodes as they are now.
func (s *supervisor) netVerb(p *control.Peer) {
	c := p.Req.Net
	if c == nil {
		p.Reply(control.Response{Error: "net: the request carries no verb", ExitCode: 125})
		return
	}
	if err := c.Check(); err != nil {
		p.Reply(control.Response{Error: err.Error(), ExitCode: 125})
		return
	}
	s.netst.mu.Lock()
	defer s.netst.mu.Unlock()
	var out string
	var err error
	switch {
	case c.Show != nil:
		out = s.show(c.Show.JSON)
	case c.Flaky != nil:
		out, err = s.flaky(*c.Flaky)
	default:
		var st partition.State
		st, err = c.Spec().State(s.nodeList())
		if err == nil {
			start := time.Now()
			if err = s.applyNet(st, s.netst.faults); err == nil {
				s.netst.part = st
				out = fmt.Sprintf("%s applied in %s: %s", c.Verb(), time.Since(start).Round(time.Microsecond), describe(st, s.nodeList()))
			}
		}
	}
	if err != nil {
		p.Reply(control.Response{Error: err.Error(), ExitCode: 125})
		return
	}
	p.Reply(control.Response{Done: true, Output: out})
}

// applyNet writes st and the loss faults as one transaction.
func (s *supervisor) applyNet(st partition.State, fs map[string]faults) error {
	member := map[string]nft.Member{}
	for _, n := range s.allNodes() {
		m := nft.Member{}
		for _, a := range []netip.Addr{n.cfg.Addr, n.cfg.Addr6} {
			if a.IsValid() {
				m.Addrs = append(m.Addrs, a)
			}
		}
		for _, l := range n.cfg.Links {
			m.Ports = append(m.Ports, l.Port)
		}
		member[n.cfg.Name] = m
	}
	ns := nft.NetState{}
	if _, ok := s.net.UplinkBlock(); ok {
		ns.Uplink = s.plan.Uplink.Port
	}
	for _, g := range st.Groups(s.nodeList()) {
		var ng nft.Group
		for _, n := range g.From {
			ng.From = append(ng.From, member[n])
		}
		for _, n := range g.To {
			ng.To = append(ng.To, member[n])
		}
		ns.Groups = append(ns.Groups, ng)
	}
	for _, n := range st.UplinkCut {
		ns.UplinkCut = append(ns.UplinkCut, member[n].Addrs...)
	}
	names := make([]string, 0, len(fs))
	for name := range fs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if f := fs[name]; f.Loss > 0 {
			if n, ok := s.lookup(name); ok {
				ns.Loss = append(ns.Loss, nft.Lossy{Port: n.cfg.VethPort(), Percent: f.Loss})
			}
		}
	}
	return nft.ApplyAll(s.net.BridgeNS(), nft.PartitionTables(ns)...)
}

// describe says in words who reaches whom.
func describe(st partition.State, nodes []string) string {
	groups := st.Groups(nodes)
	cut := 0
	for _, g := range groups {
		cut += len(g.From) * len(g.To)
	}
	if cut == 0 && len(st.UplinkCut) == 0 {
		return "every node reaches every node"
	}
	var b strings.Builder
	if st.Clusters != nil {
		var cs []string
		for _, c := range st.Clusters {
			cs = append(cs, "["+strings.Join(c, " ")+"]")
		}
		fmt.Fprintf(&b, "clusters %s", strings.Join(cs, " "))
	}
	for _, d := range st.Drops {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s -> %s dropped", d[0], d[1])
	}
	if len(st.UplinkCut) > 0 {
		fmt.Fprintf(&b, "; cut from the uplink: %s", strings.Join(st.UplinkCut, " "))
	}
	fmt.Fprintf(&b, " (%d rules per table: bridge ports, IPv4, IPv6)", len(groups))
	return b.String()
}

// show reports the current cut and faults.
func (s *supervisor) show(asJSON bool) string {
	st := s.netst.part
	if st.Verb == "" {
		st = partition.Fullmesh()
	}
	if asJSON {
		type addrs struct {
			Addr  netip.Addr `json:"addr,omitzero"`
			Addr6 netip.Addr `json:"addr6,omitzero"`
		}
		nodes := map[string]addrs{}
		for _, n := range s.allNodes() {
			nodes[n.cfg.Name] = addrs{n.cfg.Addr, n.cfg.Addr6}
		}
		b, _ := json.MarshalIndent(struct {
			Partition partition.State   `json:"partition"`
			Blocked   [][2]string       `json:"blocked"`
			Faults    map[string]faults `json:"faults"`
			// Nodes are the addresses the cut applies to, in both families.
			Nodes map[string]addrs `json:"nodes"`
		}{st, st.Blocked(s.nodeList()), s.netst.faults, nodes}, "", "  ")
		return string(b)
	}
	out := describe(st, s.nodeList())
	names := make([]string, 0, len(s.netst.faults))
	for name := range s.netst.faults {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f := s.netst.faults[name]
		out += fmt.Sprintf("\n%s: loss %d%%, rate %s, delay %s, jitter %s", name, f.Loss, or(f.Rate), or(f.Delay), or(f.Jitter))
	}
	return out
}

func or(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// flaky sets (or, with no fault, clears) a node's link faults.
func (s *supervisor) flaky(fl control.Flaky) (string, error) {
	n, ok := s.lookup(fl.Node)
	if !ok {
		return "", fmt.Errorf("flaky: no node %q in this run; its nodes: %s", fl.Node, s.nodeNames())
	}
	ff := fl.Faults
	rate, delay, jitter := ff.Rate, ff.Delay, ff.Jitter
	f := faults{Loss: ff.LossPercent}
	if rate > 0 {
		f.Rate = fmt.Sprintf("%dbit", rate)
	}
	if delay > 0 {
		f.Delay = delay.String()
	}
	if jitter > 0 {
		f.Jitter = jitter.String()
	}
	port := n.cfg.VethPort()
	if port == "" {
		return "", fmt.Errorf("flaky: node %q has tap links only; flaky sets the faults of a node's eth0", n.cfg.Name)
	}
	if err := s.setQdisc(port, rate, delay, jitter); err != nil {
		return "", err
	}
	next := map[string]faults{}
	for k, v := range s.netst.faults {
		next[k] = v
	}
	if f == (faults{}) {
		delete(next, n.cfg.Name)
	} else {
		next[n.cfg.Name] = f
	}
	if err := s.applyNet(s.netst.part, next); err != nil {
		return "", err
	}
	s.netst.faults = next
	if f == (faults{}) {
		return fmt.Sprintf("%s: link faults cleared", n.cfg.Name), nil
	}
	return fmt.Sprintf("%s: loss %d%%, rate %s, delay %s, jitter %s", n.cfg.Name, f.Loss, or(f.Rate), or(f.Delay), or(f.Jitter)), nil
}

// setQdisc puts a token bucket (rate) and/or netem (delay, jitter) on the
// node's bridge port, which carries what the node receives; no option
// removes them.
func (s *supervisor) setQdisc(port string, rate uint64, delay, jitter time.Duration) error {
	err := s.net.Shape(port, netsetup.Shaping{Rate: rate, Delay: delay, Jitter: jitter})
	if errors.Is(err, netsetup.ErrNoNetem) {
		return fmt.Errorf("flaky: --delay/--jitter: %w; --loss and --rate still work", err)
	}
	if err != nil {
		return fmt.Errorf("flaky: bridge port of %w", err)
	}
	return nil
}
