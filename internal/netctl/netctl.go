// Package netctl carries out the `nsrun net` verbs of one run:
// partitions (isolate, disjoint, split, drop, the Jepsen shapes,
// fullmesh), link faults (flaky) and show. The partition and the loss
// faults are one state: every verb rebuilds the whole rule set from it
// (package nft) and replaces the partition tables in one netlink
// transaction, so every node switches at once and the same verb twice
// changes nothing. Rate is a qdisc (tbf) on the node's bridge port, set
// through the Shaper the run gives; delay, jitter, reorder, duplicate and
// corrupt are the run's link engine (package linkengine), which splices
// the links that need it into user space, on every kernel alike.
//
// A Controller knows the run's nodes only as the caller passes them to
// each call, so nodes attached while the run goes on are cut like the
// others.
package netctl

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/latency"
	"github.com/nsrun/nsrun/internal/linkengine"
	"github.com/nsrun/nsrun/internal/netsetup"
	"github.com/nsrun/nsrun/internal/partition"
	"github.com/nsrun/nsrun/nft"
)

// Node is a node of the run as the net verbs see it.
type Node struct {
	Name  string
	Addrs []netip.Addr // its addresses, IPv4 and IPv6
	Ports []string     // the bridge ports of all its links
	// VethPort is the bridge port of its eth0 ("" for a node with tap
	// links only), where flaky puts its faults.
	VethPort string
	// EngineEnds name the loose ends of its eth0 link while the link
	// engine holds it (NodeEnd, EngineEnd; Port is VethPort).
	EngineEnds netsetup.Splice
	// NS is its network namespace (nil if not known).
	NS *os.File
}

// Shaper sets the shaping of what leaves a bridge port (which is what
// its node receives), as runnet.Network.Shape does.
type Shaper func(port string, sh netsetup.Shaping) error

// faults are a node's link faults (`nsrun net flaky`), as asked and as
// show reports them; the rate qdisc and the link engine's share are
// derived from them (shaping, engine).
type faults struct {
	control.Faults
}

// shaping is what the node's port is shaped with (its rate).
func (f faults) shaping() netsetup.Shaping { return netsetup.Shaping{Rate: f.Rate} }

// engine is what the link engine does to what the node receives.
func (f faults) engine() linkengine.Faults {
	return linkengine.Faults{
		Delay: f.Delay, Jitter: f.Jitter,
		Reorder: f.ReorderPercent / 100, Duplicate: f.DuplicatePercent / 100, Corrupt: f.CorruptPercent / 100,
	}
}

// Controller is what `nsrun net` has set in one run. Its methods may be
// called from any goroutine; it serializes the verbs.
type Controller struct {
	bridgeNS *os.File
	uplink   string // the uplink's bridge port; "" without an uplink
	shape    Shaper
	tables   *nft.Writer
	engine   *linkengine.Engine

	mu     sync.Mutex
	part   partition.State
	faults map[string]faults
	lat    latency.Matrix
}

// New makes the controller of the run whose bridge namespace is
// bridgeNS (the caller keeps it open), whose uplink's bridge port is
// uplink ("" without one), and whose ports shape sets.
// engine is the run's link engine.
func New(bridgeNS *os.File, uplink string, shape Shaper, engine *linkengine.Engine) *Controller {
	return &Controller{bridgeNS: bridgeNS, uplink: uplink, shape: shape, tables: nft.NewWriter(bridgeNS), engine: engine}
}

// Do carries out the net verb c, which the caller has checked
// (control.NetCall.Check), on the run's nodes as they are now, and
// returns what it did, in words (show: the state in words), and the
// state it left, in typed values.
func (ctl *Controller) Do(c *control.NetCall, nodes []Node) (string, control.NetState, error) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	text, err := ctl.do(c, nodes)
	if err != nil {
		return "", control.NetState{}, err
	}
	return text, ctl.state(nodes, c.Show != nil), nil
}

func (ctl *Controller) do(c *control.NetCall, nodes []Node) (string, error) {
	switch {
	case c.Show != nil:
		return ctl.show(nodes), nil
	case c.Flaky != nil:
		return ctl.flaky(*c.Flaky, nodes)
	case c.Latency != nil:
		m := latency.Matrix{Regions: ctl.lat.Regions}
		if !c.Latency.Clear {
			m = ctl.lat.With(latency.Rule{From: c.Latency.A, To: c.Latency.B, Both: !c.Latency.OneWay, Value: c.Latency.Value})
		}
		return ctl.setLatency(m, nodes)
	}
	st, err := c.Spec().State(names(nodes))
	if err != nil {
		return "", err
	}
	stats, err := ctl.apply(st, ctl.faults, nodes)
	if err != nil {
		return "", err
	}
	ctl.part = st
	return fmt.Sprintf("%s applied (%s to switch, %d transactions): %s", c.Verb(), stats.Switch.Round(time.Microsecond), stats.Batches, describe(st, names(nodes))), nil
}

// state is what the verbs have set, in typed values.
//
// Only show lists every blocked pair (withPairs): after majorities-ring of
// 1,000 nodes they are 499,000, seconds to list and megabytes to send,
// which the other verbs' answers must not cost.
func (ctl *Controller) state(nodes []Node, withPairs bool) control.NetState {
	st := ctl.part
	if st.Verb == "" {
		st = partition.Fullmesh()
	}
	var blocked [][2]string
	if withPairs {
		blocked = st.Blocked(names(nodes))
	}
	out := control.NetState{
		Partition: st, Blocked: blocked,
		Faults: map[string]control.Faults{}, Nodes: map[string]control.NodeAddrs{},
		Latency: ctl.lat,
	}
	if ctl.engine != nil {
		out.Spliced, out.Stats = ctl.engine.Spliced(), ctl.engine.Stats()
	}
	for name, f := range ctl.faults {
		out.Faults[name] = f.Faults
	}
	for _, n := range nodes {
		var a control.NodeAddrs
		for _, ad := range n.Addrs {
			if ad.Is4() {
				a.Addr = ad
			} else {
				a.Addr6 = ad
			}
		}
		out.Nodes[n.Name] = a
	}
	resolved := ctl.lat.Resolve(names(nodes))
	for _, p := range sortedPairs(resolved) {
		v := resolved[p]
		out.Pairs = append(out.Pairs, control.PairDelay{From: p.From, To: p.To, Delay: v.Delay, Jitter: v.Jitter})
	}
	return out
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

// apply writes st and the loss faults fs: every rule switches at once,
// however large (nft.Writer).
func (ctl *Controller) apply(st partition.State, fs map[string]faults, nodes []Node) (nft.Stats, error) {
	cut := st.Compile(names(nodes))
	ns := nft.NetState{Uplink: ctl.uplink}
	if len(cut.Blocked) > 0 {
		for i, n := range nodes {
			ns.Members = append(ns.Members, nft.Member{Addrs: n.Addrs, Ports: n.Ports})
			ns.Class = append(ns.Class, uint32(cut.Class[i]))
		}
		for _, b := range cut.Blocked {
			ns.Blocked = append(ns.Blocked, nft.Block{From: uint32(b.From), Lo: uint32(b.Lo), Hi: uint32(b.Hi)})
		}
	}
	for _, name := range st.UplinkCut {
		if n, ok := find(nodes, name); ok {
			ns.UplinkCut = append(ns.UplinkCut, n.Addrs...)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(fs)) {
		if f := fs[name]; f.LossPPM > 0 {
			if n, ok := find(nodes, name); ok {
				ns.Loss = append(ns.Loss, nft.Lossy{Port: n.VethPort, PPM: f.LossPPM})
			}
		}
	}
	return ctl.tables.Apply(nft.PartitionTables(ns)...)
}

// describe says in words who reaches whom: which nodes a verb cut off,
// the clusters, the seed of a random shape; at any size, counts and the
// first few names (net show --json has every name).
func describe(st partition.State, nodes []string) string {
	if st.Clusters == nil && len(st.Drops) == 0 && len(st.UplinkCut) == 0 {
		return "every node reaches every node"
	}
	var parts []string
	inCluster := map[string]bool{}
	for _, c := range st.Clusters {
		for _, n := range c {
			inCluster[n] = true
		}
	}
	var alone []string
	if st.Clusters != nil {
		for _, n := range nodes {
			if !inCluster[n] {
				alone = append(alone, n)
			}
		}
	}
	switch {
	case st.Verb == "majorities-ring":
		r := 0
		if len(st.Clusters) > 0 {
			r = len(st.Clusters[0]) - 1
		}
		var ring []string
		for _, c := range st.Clusters {
			ring = append(ring, c[0])
		}
		parts = append(parts, fmt.Sprintf("a ring of %d nodes, each reaching the %d nearest on either side (%d of %d): %s",
			len(ring), r, min(2*r+1, len(ring)), len(ring), names5(ring)))
	case st.Clusters != nil:
		if len(alone) > 0 {
			parts = append(parts, fmt.Sprintf("cut off: %s", count(alone, "node")))
		}
		switch len(st.Clusters) {
		case 0:
		case 1:
			parts = append(parts, fmt.Sprintf("the other nodes reach each other: %s", count(st.Clusters[0], "node")))
		default:
			var sizes, cs []string
			for _, c := range st.Clusters {
				sizes = append(sizes, fmt.Sprint(len(c)))
				cs = append(cs, "["+names5(c)+"]")
			}
			if len(cs) > 5 {
				cs = append(cs[:5], fmt.Sprintf("… %d more", len(cs)-5))
			}
			parts = append(parts, fmt.Sprintf("%d clusters of %s nodes: %s", len(st.Clusters), joinSizes(sizes), strings.Join(cs, " ")))
		}
	}
	if len(st.Drops) > 0 {
		var ds []string
		for _, d := range st.Drops {
			ds = append(ds, d[0]+" -> "+d[1])
		}
		parts = append(parts, fmt.Sprintf("dropped %s", strings.Join(ds, ", ")))
	}
	if len(st.UplinkCut) > 0 {
		parts = append(parts, fmt.Sprintf("cut from the uplink: %s", count(st.UplinkCut, "node")))
	}
	for _, a := range st.Args {
		if seed, ok := strings.CutPrefix(a, "--seed="); ok {
			parts = append(parts, "seed "+seed)
		}
	}
	return strings.Join(parts, "; ")
}

// names5 lists up to the first five names, then how many more.
func names5(names []string) string {
	if len(names) <= 5 {
		return strings.Join(names, " ")
	}
	return fmt.Sprintf("%s … (%d in all)", strings.Join(names[:5], " "), len(names))
}

// count says how many names, and the first few: "db" or "3 nodes (a b c)".
func count(names []string, what string) string {
	if len(names) == 1 {
		return names[0]
	}
	return fmt.Sprintf("%d %ss (%s)", len(names), what, names5(names))
}

// joinSizes writes "500 and 500" or "3, 4 and 5".
func joinSizes(sizes []string) string {
	if len(sizes) > 6 {
		return fmt.Sprintf("%s … (%d clusters)", strings.Join(sizes[:5], ", "), len(sizes))
	}
	return strings.Join(sizes[:len(sizes)-1], ", ") + " and " + sizes[len(sizes)-1]
}

// show reports the current cut and faults in words.
func (ctl *Controller) show(nodes []Node) string {
	st := ctl.part
	if st.Verb == "" {
		st = partition.Fullmesh()
	}
	out := describe(st, names(nodes))
	for _, name := range slices.Sorted(maps.Keys(ctl.faults)) {
		f := ctl.faults[name]
		out += "\n" + f.String(name)
	}
	for _, r := range ctl.lat.Rules {
		out += "\nlatency " + r.String()
	}
	if sp := ctl.engine.Spliced(); len(sp) > 0 {
		out += "\nlink engine (user space; the kernel's path for every other link): " + strings.Join(sp, " ")
	}
	return out
}

func or(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// String says a node's faults in words.
func (f faults) String(node string) string {
	rate, delay, jitter := f.Words()
	out := fmt.Sprintf("%s: loss %s, rate %s, delay %s, jitter %s", node, control.PercentPPM(f.LossPPM), or(rate), or(delay), or(jitter))
	for _, p := range []struct {
		what string
		v    float64
	}{{"reorder", f.ReorderPercent}, {"duplicate", f.DuplicatePercent}, {"corrupt", f.CorruptPercent}} {
		if p.v > 0 {
			out += fmt.Sprintf(", %s %g%%", p.what, p.v)
		}
	}
	return out
}

// merged is f with the kinds of fault fl sets replaced by fl's (all of
// them cleared when fl sets none).
func (f faults) merged(fl control.Flaky) faults {
	if fl.Set == 0 {
		return faults{}
	}
	ff := fl.Faults
	if fl.Set&control.FaultLoss != 0 {
		f.LossPPM = ff.LossPPM
	}
	if fl.Set&control.FaultRate != 0 {
		f.Rate = ff.Rate
	}
	if fl.Set&control.FaultDelay != 0 {
		f.Delay, f.Jitter = ff.Delay, ff.Jitter
	}
	if fl.Set&control.FaultReorder != 0 {
		f.ReorderPercent = ff.ReorderPercent
	}
	if fl.Set&control.FaultDuplicate != 0 {
		f.DuplicatePercent = ff.DuplicatePercent
	}
	if fl.Set&control.FaultCorrupt != 0 {
		f.CorruptPercent = ff.CorruptPercent
	}
	return f
}

// engineConfig is the link engine's configuration for the faults fs
// and the latency matrix m over nodes.
func engineConfig(fs map[string]faults, m latency.Matrix, nodes []Node) linkengine.Config {
	cfg := linkengine.Config{Receive: map[string]linkengine.Faults{}, Pairs: map[linkengine.Pair]linkengine.Faults{}}
	for name, f := range fs {
		if e := f.engine(); !e.IsZero() {
			cfg.Receive[name] = e
		}
	}
	for p, v := range m.Resolve(names(nodes)) {
		if v != (latency.Value{}) {
			cfg.Pairs[linkengine.Pair{From: p.From, To: p.To}] = linkengine.Faults{Delay: v.Delay, Jitter: v.Jitter}
		}
	}
	return cfg
}

func sortedPairs(m map[latency.Pair]latency.Value) []latency.Pair {
	out := make([]latency.Pair, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].From != out[j].From {
			return out[i].From < out[j].From
		}
		return out[i].To < out[j].To
	})
	return out
}

// SetLatency makes m the run's latency matrix (the file's, at up),
// for every pair at once.
func (ctl *Controller) SetLatency(m latency.Matrix, nodes []Node) (string, error) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	return ctl.setLatency(m, nodes)
}

func (ctl *Controller) setLatency(m latency.Matrix, nodes []Node) (string, error) {
	if err := m.Check(names(nodes)); err != nil {
		return "", fmt.Errorf("latency: %w", err)
	}
	start := time.Now()
	prev := ctl.lat
	ctl.lat = m
	if err := ctl.setEngine(ctl.faults, nodes); err != nil {
		ctl.lat = prev
		return "", errors.Join(fmt.Errorf("latency: %w", err), ctl.setEngine(ctl.faults, nodes))
	}
	pairs := 0
	for _, v := range m.Resolve(names(nodes)) {
		if v != (latency.Value{}) {
			pairs++
		}
	}
	if m.IsZero() {
		return fmt.Sprintf("latency cleared in %s: no delay between nodes", time.Since(start).Round(time.Microsecond)), nil
	}
	return fmt.Sprintf("latency applied in %s: %d rules, %d delayed pairs of nodes; links in the link engine: %s", time.Since(start).Round(time.Microsecond), len(m.Rules), pairs, orNone(ctl.engine.Spliced())), nil
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, " ")
}

// setEngine gives the link engine the configuration of the faults fs. A
// node whose link moves into or out of the engine has its rate qdisc
// taken off the port first and put back on the port of the same name
// afterwards (the port is a new veth).
func (ctl *Controller) setEngine(fs map[string]faults, nodes []Node) error {
	cfg := engineConfig(fs, ctl.lat, nodes)
	was := map[string]bool{}
	for _, name := range ctl.engine.Spliced() {
		was[name] = true
	}
	need := cfg.Needs()
	var moved []Node
	for _, n := range nodes {
		if was[n.Name] != need[n.Name] && ctl.faults[n.Name].shaping() != (netsetup.Shaping{}) {
			moved = append(moved, n)
			if err := ctl.shape(n.VethPort, netsetup.Shaping{}); err != nil {
				return fmt.Errorf("bridge port of %w", err)
			}
		}
	}
	var en []linkengine.Node
	for _, n := range nodes {
		s := n.EngineEnds
		s.Port = n.VethPort
		if n.VethPort == "" {
			s = netsetup.Splice{}
		}
		en = append(en, linkengine.Node{Name: n.Name, Addrs: n.Addrs, Splice: s, NS: n.NS})
	}
	err := ctl.engine.Set(cfg, en)
	for _, n := range moved {
		if sh := fs[n.Name].shaping(); sh != (netsetup.Shaping{}) {
			err = errors.Join(err, ctl.shape(n.VethPort, sh))
		}
	}
	return err
}

// flaky sets the kinds of link fault fl names on its node, keeping the
// node's other kinds (with none named, it clears them all).
func (ctl *Controller) flaky(fl control.Flaky, nodes []Node) (string, error) {
	n, ok := find(nodes, fl.Node)
	if !ok {
		return "", control.Errorf(control.ErrUnknownNode, "flaky: no node %q in this run; its nodes: %s", fl.Node, strings.Join(names(nodes), ", "))
	}
	if n.VethPort == "" {
		return "", control.Errorf(control.ErrBadValue, "flaky: node %q has tap links only; flaky sets the faults of a node's eth0", n.Name)
	}
	prev := ctl.faults[n.Name]
	f := prev.merged(fl)
	if f.ReorderPercent > 0 && f.Delay == 0 {
		return "", control.Errorf(control.ErrBadValue, "flaky: --reorder needs a delay (reordered frames are those sent without it); add --delay")
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
	if f.engine() != prev.engine() {
		if err := ctl.setEngine(next, nodes); err != nil {
			return "", fmt.Errorf("flaky: %w", err)
		}
	}
	if f.shaping() != prev.shaping() {
		if err := ctl.shape(n.VethPort, f.shaping()); err != nil {
			return "", fmt.Errorf("flaky: bridge port of %w", err)
		}
	}
	if f.LossPPM != prev.LossPPM {
		if _, err := ctl.apply(ctl.part, next, nodes); err != nil {
			if f.shaping() != prev.shaping() {
				_ = ctl.shape(n.VethPort, prev.shaping()) // as it was, as far as it goes
			}
			if f.engine() != prev.engine() {
				_ = ctl.setEngine(ctl.faults, nodes)
			}
			return "", err
		}
	}
	ctl.faults = next
	if f == (faults{}) {
		return fmt.Sprintf("%s: link faults cleared", n.Name), nil
	}
	return f.String(n.Name), nil
}
