package control

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/nsrun/nsrun/internal/latency"
	"github.com/nsrun/nsrun/internal/linkengine"
	"github.com/nsrun/nsrun/internal/partition"
)

// NetState is a run's network as its net verbs left it: the answer of
// every net verb and of show, in typed values (Response.Net).
type NetState struct {
	// Partition is the cut in force: the verb that made it ("fullmesh"
	// when healed), its clusters, one-way drops and uplink cuts.
	Partition partition.State `json:"partition"`
	// Blocked are every one-way pair [from, to] that cannot reach, in
	// the answer of show only (the other verbs leave it nil: after
	// majorities-ring of 1,000 nodes it holds 499,000 pairs).
	Blocked [][2]string `json:"blocked"`
	// Faults are the link faults of the nodes that have any.
	Faults map[string]Faults `json:"faults"`
	// Nodes are the addresses the cut applies to, by node.
	Nodes map[string]NodeAddrs `json:"nodes"`
	// Latency is the latency matrix in force, and the delay of every
	// ordered pair of nodes a rule covers.
	Latency latency.Matrix `json:"latency"`
	Pairs   []PairDelay    `json:"pairs,omitempty"`
	// Spliced are the nodes whose link the link engine holds (the
	// others are on the kernel's path), and Stats what it counted.
	Spliced []string                        `json:"spliced,omitempty"`
	Stats   map[string]linkengine.LinkStats `json:"stats,omitempty"`
}

// NodeAddrs are a node's addresses; either may be invalid (none).
type NodeAddrs struct {
	Addr  netip.Addr `json:"addr,omitzero"`
	Addr6 netip.Addr `json:"addr6,omitzero"`
}

// PairDelay is the delay the latency matrix adds from one node to
// another.
type PairDelay struct {
	From   string        `json:"from"`
	To     string        `json:"to"`
	Delay  time.Duration `json:"delay"`
	Jitter time.Duration `json:"jitter,omitempty"`
}

// Words are f's rate, delay and jitter as people read them
// ("1000000bit", "100ms"), each "" where f has none.
func (f Faults) Words() (rate, delay, jitter string) {
	if f.Rate > 0 {
		rate = fmt.Sprintf("%dbit", f.Rate)
	}
	if f.Delay > 0 {
		delay = f.Delay.String()
	}
	if f.Jitter > 0 {
		jitter = f.Jitter.String()
	}
	return rate, delay, jitter
}

// Loss is the share of packets f loses, as a fraction (0.3 is 30%).
func (f Faults) Loss() float64 { return float64(f.LossPPM) / LossScale }
