// Package netctl carries out the `nsrun net` verbs of one run:
// partitions (isolate, disjoint, split, drop, the Jepsen shapes,
// fullmesh), link faults (flaky) and show. The partition and the loss
// faults are one state: every verb rebuilds the whole rule set from it
// (package nft) and replaces the partition tables in one netlink
// transaction, so every node switches at once and the same verb twice
// changes nothing. Rate, delay and jitter are a qdisc on the node's
// bridge port, set through the Shaper the run gives.
//
// A Controller knows the run's nodes only as the caller passes them to
// each call, so nodes attached while the run goes on are cut like the
// others.
package netctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nsrun/nsrun/control"
	"github.com/nsrun/nsrun/netsetup"
	"github.com/nsrun/nsrun/nft"
	"github.com/nsrun/nsrun/partition"
)

// Node is a node of the run as the net verbs see it.
type Node struct {
	Name  string
	Addrs []netip.Addr // its addresses, IPv4 and IPv6
	Ports []string     // the bridge ports of all its links
	// VethPort is the bridge port of its eth0 ("" for a node with tap
	// links only), where flaky puts its faults.
	VethPort string
}

// Shaper sets the shaping of what leaves a bridge port (which is what
// its node receives), as runnet.Network.Shape does.
type Shaper func(port string, sh netsetup.Shaping) error

// faults are a node's link faults (`nsrun net flaky`).
type faults struct {
	Loss   int    `json:"loss_percent,omitempty"`
	Rate   string `json:"rate,omitempty"`
	Delay  string `json:"delay,omitempty"`
	Jitter string `json:"jitter,omitempty"`
}

// Controller is what `nsrun net` has set in one run. Its methods may be
// called from any goroutine; it serializes the verbs.
type Controller struct {
	bridgeNS *os.File
	uplink   string // the uplink's bridge port; "" without an uplink
	shape    Shaper

	mu     sync.Mutex
	part   partition.State
	faults map[string]faults
}

// New makes the controller of the run whose bridge namespace is
// bridgeNS (the caller keeps it open), whose uplink's bridge port is
// uplink ("" without one), and whose ports shape sets.
func New(bridgeNS *os.File, uplink string, shape Shaper) *Controller {
	return &Controller{bridgeNS: bridgeNS, uplink: uplink, shape: shape}
}

// Do carries out the net verb c, which the caller has checked
// (control.NetCall.Check), on the run's nodes as they are now, and
// returns what it did, in words (show: the state, or its JSON).
func (ctl *Controller) Do(c *control.NetCall, nodes []Node) (string, error) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	switch {
	case c.Show != nil:
		return ctl.show(c.Show.JSON, nodes), nil
	case c.Flaky != nil:
		return ctl.flaky(*c.Flaky, nodes)
	}
	st, err := c.Spec().State(names(nodes))
	if err != nil {
		return "", err
	}
	start := time.Now()
	if err := ctl.apply(st, ctl.faults, nodes); err != nil {
		return "", err
	}
	ctl.part = st
	return fmt.Sprintf("%s applied in %s: %s", c.Verb(), time.Since(start).Round(time.Microsecond), describe(st, names(nodes))), nil
}

func names(nodes []Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Name
	}
	return out
}

func find(nodes []Node, name string) (Node, bool) {
	for _, n := range nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// apply writes st and the loss faults fs as one transaction.
func (ctl *Controller) apply(st partition.State, fs map[string]faults, nodes []Node) error {
	member := map[string]nft.Member{}
	for _, n := range nodes {
		member[n.Name] = nft.Member{Addrs: n.Addrs, Ports: n.Ports}
	}
	ns := nft.NetState{Uplink: ctl.uplink}
	for _, g := range st.Groups(names(nodes)) {
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
	for _, name := range sortedKeys(fs) {
		if f := fs[name]; f.Loss > 0 {
			if n, ok := find(nodes, name); ok {
				ns.Loss = append(ns.Loss, nft.Lossy{Port: n.VethPort, Percent: f.Loss})
			}
		}
	}
	return nft.ApplyAll(ctl.bridgeNS, nft.PartitionTables(ns)...)
}

func sortedKeys(fs map[string]faults) []string {
	out := make([]string, 0, len(fs))
	for name := range fs {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
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
func (ctl *Controller) show(asJSON bool, nodes []Node) string {
	st := ctl.part
	if st.Verb == "" {
		st = partition.Fullmesh()
	}
	if asJSON {
		type addrs struct {
			Addr  netip.Addr `json:"addr,omitzero"`
			Addr6 netip.Addr `json:"addr6,omitzero"`
		}
		byName := map[string]addrs{}
		for _, n := range nodes {
			var a addrs
			for _, ad := range n.Addrs {
				if ad.Is4() {
					a.Addr = ad
				} else {
					a.Addr6 = ad
				}
			}
			byName[n.Name] = a
		}
		b, _ := json.MarshalIndent(struct {
			Partition partition.State   `json:"partition"`
			Blocked   [][2]string       `json:"blocked"`
			Faults    map[string]faults `json:"faults"`
			// Nodes are the addresses the cut applies to, in both families.
			Nodes map[string]addrs `json:"nodes"`
		}{st, st.Blocked(names(nodes)), ctl.faults, byName}, "", "  ")
		return string(b)
	}
	out := describe(st, names(nodes))
	for _, name := range sortedKeys(ctl.faults) {
		f := ctl.faults[name]
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
func (ctl *Controller) flaky(fl control.Flaky, nodes []Node) (string, error) {
	n, ok := find(nodes, fl.Node)
	if !ok {
		return "", fmt.Errorf("flaky: no node %q in this run; its nodes: %s", fl.Node, strings.Join(names(nodes), ", "))
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
	if n.VethPort == "" {
		return "", fmt.Errorf("flaky: node %q has tap links only; flaky sets the faults of a node's eth0", n.Name)
	}
	err := ctl.shape(n.VethPort, netsetup.Shaping{Rate: rate, Delay: delay, Jitter: jitter})
	if errors.Is(err, netsetup.ErrNoNetem) {
		return "", fmt.Errorf("flaky: --delay/--jitter: %w; --loss and --rate still work", err)
	}
	if err != nil {
		return "", fmt.Errorf("flaky: bridge port of %w", err)
	}
	next := map[string]faults{}
	for k, v := range ctl.faults {
		next[k] = v
	}
	if f == (faults{}) {
		delete(next, n.Name)
	} else {
		next[n.Name] = f
	}
	if err := ctl.apply(ctl.part, next, nodes); err != nil {
		return "", err
	}
	ctl.faults = next
	if f == (faults{}) {
		return fmt.Sprintf("%s: link faults cleared", n.Name), nil
	}
	return fmt.Sprintf("%s: loss %d%%, rate %s, delay %s, jitter %s", n.Name, f.Loss, or(f.Rate), or(f.Delay), or(f.Jitter)), nil
}
