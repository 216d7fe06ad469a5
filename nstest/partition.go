package nstest

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/latency"
	"github.com/nsrun/nsrun/internal/partition"
)

// Each of these replaces the network's whole partition, as `nsrun net`
// does: every node switches at once (one netlink transaction), applying
// the same one twice changes nothing, and nodes always reach their bridge.
// A cut drops every packet, so established connections stall (TCP keeps
// retrying) and resume once healed.

// Isolate cuts the nodes from every other node and from each other.
func (n *Net) Isolate(nodes ...string) error { return n.partition("isolate", nodes) }

// Disjoint splits the network into clusters that cannot reach each other;
// every node must be named exactly once.
func (n *Net) Disjoint(clusters ...[]string) error {
	return n.partition("disjoint", joinClusters(clusters))
}

// Split is Disjoint where clusters may share nodes (a shared node reaches
// both); nodes in no cluster are isolated.
func (n *Net) Split(clusters ...[]string) error {
	return n.partition("split", joinClusters(clusters))
}

// Drop cuts one way: packets from node from to node to are dropped, the
// other way still passes (TCP from to to from breaks too: its handshake
// needs both ways).
func (n *Net) Drop(from, to string) error { return n.partition("drop", []string{from, to}) }

// Heal removes every cut (`nsrun net fullmesh`); link faults (Flaky) stay.
func (n *Net) Heal() error { return n.partition("fullmesh", nil) }

// Halves, MajoritiesRing, Bridge and RandomNode are Jepsen's partition
// shapes over the network's nodes, shuffled by seed (0: a random seed,
// which the test's log shows, so that a cut can be repeated).

// Halves cuts the network into two halves (the first has the extra node).
func (n *Net) Halves(seed uint64) error { return n.shape("halves", seed) }

// MajoritiesRing lets each node see the majority centred on itself.
func (n *Net) MajoritiesRing(seed uint64) error { return n.shape("majorities-ring", seed) }

// Bridge cuts two halves that share one node.
func (n *Net) Bridge(seed uint64) error { return n.shape("bridge", seed) }

// RandomNode isolates one node.
func (n *Net) RandomNode(seed uint64) error { return n.shape("random-node", seed) }

func (n *Net) shape(verb string, seed uint64) error {
	return n.partitionSeed(verb, nil, seed)
}

// partition applies the partition verb with its nodes (clusters joined
// by "--"), as `nsrun net VERB` does, with the uplink cut if CutUplink
// asked for it.
func (n *Net) partition(verb string, args []string) error { return n.partitionSeed(verb, args, 0) }

func (n *Net) partitionSeed(verb string, args []string, seed uint64) error {
	n.mu.Lock()
	uplink := n.cutUplink && verb != "fullmesh"
	n.mu.Unlock()
	sp, err := partition.ParseSpec(verb, args, partition.Options{Uplink: uplink, Seed: seed})
	if err != nil {
		return fmt.Errorf("nstest: %w", err)
	}
	return n.net(control.SpecCall(sp))
}

func joinClusters(clusters [][]string) []string {
	var args []string
	for i, c := range clusters {
		if i > 0 {
			args = append(args, "--")
		}
		args = append(args, c...)
	}
	return args
}

// FlakyOption is one link fault of Flaky.
type FlakyOption func(*flakyCall)

// flakyCall is the call the options of Flaky make, or their error.
type flakyCall struct {
	control.Flaky
	err error
}

// Loss drops that fraction of the node's IPv4 and IPv6 packets, both
// ways (0.3: 30%; exact to 0.000001, finer fractions are rounded to it).
func Loss(fraction float64) FlakyOption {
	return func(f *flakyCall) {
		if !(fraction >= 0 && fraction <= 1) {
			f.err = fmt.Errorf("Loss(%g): give a fraction from 0 to 1", fraction)
			return
		}
		f.Set |= control.FaultLoss
		f.Faults.LossPPM = uint32(math.Round(fraction * control.LossScale))
	}
}

// Rate limits what the node receives to bitsPerSecond.
func Rate(bitsPerSecond uint64) FlakyOption {
	return func(f *flakyCall) { f.Set |= control.FaultRate; f.Faults.Rate = bitsPerSecond }
}

// Delay delays what the node receives (nsrun's link engine: any kernel).
func Delay(d time.Duration) FlakyOption {
	return func(f *flakyCall) { f.Set |= control.FaultDelay; f.Faults.Delay = d }
}

// Jitter spreads the Delay: d is the standard deviation (at most the delay).
func Jitter(d time.Duration) FlakyOption {
	return func(f *flakyCall) { f.Set |= control.FaultDelay; f.Faults.Jitter = d }
}

// Reorder sends that fraction of what the node receives at once, ahead of
// the delayed frames (needs a Delay).
func Reorder(fraction float64) FlakyOption {
	return func(f *flakyCall) { f.Set |= control.FaultReorder; f.Faults.ReorderPercent = fraction * 100 }
}

// Duplicate sends that fraction of what the node receives twice.
func Duplicate(fraction float64) FlakyOption {
	return func(f *flakyCall) { f.Set |= control.FaultDuplicate; f.Faults.DuplicatePercent = fraction * 100 }
}

// Corrupt flips one bit in that fraction of what the node receives.
func Corrupt(fraction float64) FlakyOption {
	return func(f *flakyCall) { f.Set |= control.FaultCorrupt; f.Faults.CorruptPercent = fraction * 100 }
}

// LatencyOption changes what Latency sets.
type LatencyOption func(*control.Latency)

// LatencyJitter spreads the delay: d is its standard deviation (at most
// the delay).
func LatencyJitter(d time.Duration) LatencyOption {
	return func(l *control.Latency) { l.Value.Jitter = d }
}

// OneWay sets the delay from a to b only.
func OneWay() LatencyOption {
	return func(l *control.Latency) { l.OneWay = true }
}

// Latency sets the one-way delay d between a and b, each a node or a
// region of the file, each way (OneWay: from a to b only), replacing
// what was set between them; every pair switches at once (`nsrun net
// latency`).
func (n *Net) Latency(a, b string, d time.Duration, opts ...LatencyOption) error {
	l := control.Latency{A: a, B: b, Value: latency.Value{Delay: d}}
	for _, o := range opts {
		o(&l)
	}
	return n.net(control.NetCall{Latency: &l})
}

// ClearLatency removes every delay of the latency matrix.
func (n *Net) ClearLatency() error {
	return n.net(control.NetCall{Latency: &control.Latency{Clear: true}})
}

// Flaky sets the kinds of link fault the options give on node, keeping
// the node's other kinds (Loss(0) clears the loss); with no option it
// clears them all.
func (n *Net) Flaky(node string, opts ...FlakyOption) error {
	f := flakyCall{Flaky: control.Flaky{Node: node}}
	for _, o := range opts {
		o(&f)
		if f.err != nil {
			return fmt.Errorf("nstest: flaky %s: %w", node, f.err)
		}
	}
	return n.net(control.NetCall{Flaky: &f.Flaky})
}

// State is the network's partition and link faults, as Show reports them.
type State struct {
	// Verb is the verb that made the partition ("fullmesh" when healed).
	Verb string
	// Clusters are the partition's clusters (nil when every node reaches
	// every node), Drops its one-way cuts [from, to], UplinkCut the nodes
	// cut from the uplink.
	Clusters  [][]string
	Drops     [][2]string
	UplinkCut []string
	// Blocked are every one-way pair [from, to] that cannot reach.
	Blocked [][2]string
	// Faults are the link faults, by node.
	Faults map[string]Faults
}

// Faults are one node's link faults.
type Faults struct {
	Loss   float64       // fraction of packets dropped
	Rate   uint64        // rate limit in bits per second, 0 for none
	Delay  time.Duration // added delay
	Jitter time.Duration
	// Fractions of frames reordered, duplicated and corrupted.
	Reorder, Duplicate, Corrupt float64
}

// Show returns the network's current partition and link faults.
func (n *Net) Show() (State, error) {
	cs, err := n.client.Show()
	if err != nil {
		return State{}, fmt.Errorf("nstest: show: %w", err)
	}
	p := cs.Partition
	st := State{Verb: p.Verb, Clusters: p.Clusters, Drops: p.Drops, UplinkCut: p.UplinkCut, Blocked: cs.Blocked, Faults: map[string]Faults{}}
	for name, f := range cs.Faults {
		st.Faults[name] = Faults{
			Loss: f.Loss(), Rate: f.Rate, Delay: f.Delay, Jitter: f.Jitter,
			Reorder: f.ReorderPercent / 100, Duplicate: f.DuplicatePercent / 100, Corrupt: f.CorruptPercent / 100,
		}
	}
	return st, nil
}

// CutUplink makes the partition verbs that follow also cut the nodes they
// cut off from the host and the outside (`nsrun net ... --uplink`:
// Isolate the named nodes, Drop its from, the others every node), or,
// with false, leave the uplink open again (the default); Heal always
// reopens it. It matters only
// with nsrun-helper installed: without it no network has an uplink.
func (n *Net) CutUplink(on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cutUplink = on
}

// net carries out a net verb through the run's control socket and logs
// what the run says it did.
func (n *Net) net(c control.NetCall) error {
	out, _, err := n.client.Net(c)
	if err != nil {
		return fmt.Errorf("nstest: net %s: %w", c.Verb(), err)
	}
	if out = strings.TrimSpace(out); out != "" {
		n.out.log("nstest: net %s: %s", c.Verb(), out)
	}
	return nil
}
