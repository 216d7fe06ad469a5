package nstest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nsrun/nsrun/partition"
)

// Each of these replaces the network's whole partition, as `nsrun net`
// does: every node switches at once (one netlink transaction), applying
// the same one twice changes nothing, and nodes always reach their bridge.
// A cut drops every packet, so established connections stall (TCP keeps
// retrying) and resume once healed.

// Isolate cuts the nodes from every other node and from each other.
func (n *Net) Isolate(nodes ...string) error { return n.netVerb("isolate", nodes...) }

// Disjoint splits the network into clusters that cannot reach each other;
// every node must be named exactly once.
func (n *Net) Disjoint(clusters ...[]string) error {
	return n.netVerb("disjoint", joinClusters(clusters)...)
}

// Split is Disjoint where clusters may share nodes (a shared node reaches
// both); nodes in no cluster are isolated.
func (n *Net) Split(clusters ...[]string) error {
	return n.netVerb("split", joinClusters(clusters)...)
}

// Drop cuts one way: packets from node from to node to are dropped, the
// other way still passes (TCP from to to from breaks too: its handshake
// needs both ways).
func (n *Net) Drop(from, to string) error { return n.netVerb("drop", from, to) }

// Heal removes every cut (`nsrun net fullmesh`); link faults (Flaky) stay.
func (n *Net) Heal() error { return n.netVerb("fullmesh") }

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
	if seed == 0 {
		return n.netVerb(verb)
	}
	return n.netVerb(verb, "--seed", strconv.FormatUint(seed, 10))
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
type FlakyOption func(*flakyArgs)

// flakyArgs are the flags of `nsrun net flaky` that the options make.
type flakyArgs struct{ args []string }

// Loss drops that fraction of the node's IPv4 and IPv6 packets, both
// ways (0.3: 30%; exact to 0.000001, finer fractions are rounded to it).
func Loss(fraction float64) FlakyOption {
	return func(a *flakyArgs) {
		pct := strconv.FormatFloat(fraction*100, 'f', 4, 64)
		pct = strings.TrimSuffix(strings.TrimRight(pct, "0"), ".")
		a.args = append(a.args, "--loss", pct+"%")
	}
}

// Rate limits what the node receives to bitsPerSecond.
func Rate(bitsPerSecond uint64) FlakyOption {
	return func(a *flakyArgs) { a.args = append(a.args, "--rate", strconv.FormatUint(bitsPerSecond, 10)+"bit") }
}

// Delay delays what the node receives (nsrun's link engine: any kernel).
func Delay(d time.Duration) FlakyOption {
	return func(a *flakyArgs) { a.args = append(a.args, "--delay", d.String()) }
}

// Jitter spreads the Delay: d is the standard deviation (at most the delay).
func Jitter(d time.Duration) FlakyOption {
	return func(a *flakyArgs) { a.args = append(a.args, "--jitter", d.String()) }
}

// Reorder sends that fraction of what the node receives at once, ahead of
// the delayed frames (needs a Delay).
func Reorder(fraction float64) FlakyOption {
	return func(a *flakyArgs) { a.args = append(a.args, "--reorder", percent(fraction)) }
}

// Duplicate sends that fraction of what the node receives twice.
func Duplicate(fraction float64) FlakyOption {
	return func(a *flakyArgs) { a.args = append(a.args, "--duplicate", percent(fraction)) }
}

// Corrupt flips one bit in that fraction of what the node receives.
func Corrupt(fraction float64) FlakyOption {
	return func(a *flakyArgs) { a.args = append(a.args, "--corrupt", percent(fraction)) }
}

func percent(fraction float64) string {
	return strconv.FormatFloat(fraction*100, 'f', -1, 64) + "%"
}

// LatencyOption changes what Latency sets.
type LatencyOption func(*[]string)

// LatencyJitter spreads the delay: d is its standard deviation (at most
// the delay).
func LatencyJitter(d time.Duration) LatencyOption {
	return func(args *[]string) { *args = append(*args, "--jitter", d.String()) }
}

// OneWay sets the delay from a to b only.
func OneWay() LatencyOption {
	return func(args *[]string) { *args = append(*args, "--one-way") }
}

// Latency sets the one-way delay d between a and b, each a node or a
// region of the file, each way (OneWay: from a to b only), replacing
// what was set between them; every pair switches at once (`nsrun net
// latency`).
func (n *Net) Latency(a, b string, d time.Duration, opts ...LatencyOption) error {
	args := []string{a, b, d.String()}
	for _, o := range opts {
		o(&args)
	}
	return n.netVerb("latency", args...)
}

// ClearLatency removes every delay of the latency matrix.
func (n *Net) ClearLatency() error { return n.netVerb("latency", "--clear") }

// Flaky sets the kinds of link fault the options give on node, keeping
// the node's other kinds (Loss(0) clears the loss); with no option it
// clears them all.
func (n *Net) Flaky(node string, opts ...FlakyOption) error {
	a := flakyArgs{args: []string{node}}
	for _, o := range opts {
		o(&a)
	}
	return n.netVerb("flaky", a.args...)
}

// State is the network's partition and link faults, as Show reports them.
type State struct {
	// State is the partition: the verb that made it ("fullmesh" when
	// healed), its clusters, one-way drops and uplink cuts.
	partition.State
	// Blocked are every one-way pair [from, to] that cannot reach.
	Blocked [][2]string `json:"blocked"`
	// Faults are the link faults, by node.
	Faults map[string]Faults `json:"faults"`
}

// Faults are one node's link faults.
type Faults struct {
	Loss   float64       // fraction of packets dropped
	Rate   string        // rate limit as the run shows it ("1000000bit"), "" for none
	Delay  time.Duration // added delay
	Jitter time.Duration
}

// Show returns the network's current partition and link faults.
func (n *Net) Show() (State, error) {
	out, err := n.nsrun("net", "show", "--json", "--run", n.id)
	if err != nil {
		return State{}, err
	}
	var raw struct {
		Partition State       `json:"partition"`
		Blocked   [][2]string `json:"blocked"`
		Faults    map[string]struct {
			Loss   float64 `json:"loss_percent"`
			Rate   string  `json:"rate"`
			Delay  string  `json:"delay"`
			Jitter string  `json:"jitter"`
		} `json:"faults"`
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		return State{}, fmt.Errorf("nstest: read nsrun net show --json: %w", err)
	}
	st := raw.Partition
	st.Blocked = raw.Blocked
	st.Faults = map[string]Faults{}
	for name, f := range raw.Faults {
		d, _ := time.ParseDuration(orZero(f.Delay))
		j, _ := time.ParseDuration(orZero(f.Jitter))
		st.Faults[name] = Faults{Loss: float64(f.Loss) / 100, Rate: f.Rate, Delay: d, Jitter: j}
	}
	return st, nil
}

func orZero(s string) string {
	if s == "" {
		return "0s"
	}
	return s
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

// netVerb runs `nsrun net VERB --run ID ARGS...` and logs what it says.
func (n *Net) netVerb(verb string, args ...string) error {
	n.mu.Lock()
	if n.cutUplink && verb != "flaky" && verb != "show" && verb != "fullmesh" && verb != "latency" {
		args = append([]string{"--uplink"}, args...)
	}
	n.mu.Unlock()
	out, err := n.nsrun(append([]string{"net", verb, "--run", n.id}, args...)...)
	if err != nil {
		return err
	}
	if out = strings.TrimSpace(out); out != "" {
		n.out.log("nstest: net %s: %s", verb, out)
	}
	return nil
}
