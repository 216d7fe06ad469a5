package partition

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Spec is one partition verb with its arguments, typed: what `nsrun net`
// parses from its command line (ParseSpec), sends to the supervisor, and
// the supervisor turns into the run's State over its nodes. Each verb has
// a type of its own; the Jepsen shapes share Shape.
type Spec interface {
	// Verb is the verb's name on the command line.
	Verb() string
	// State is the partition the spec makes of the run's nodes; naming a
	// node the run does not have is refused.
	State(nodes []string) (State, error)
}

// Isolate cuts Nodes off from every other node and from each other.
type Isolate struct {
	Nodes  []string `json:"nodes"`
	Uplink bool     `json:"uplink,omitempty"` // also cut them from the uplink
}

// Disjoint splits the run into Clusters that cannot see each other; every
// node is in exactly one.
type Disjoint struct {
	Clusters [][]string `json:"clusters"`
	Uplink   bool       `json:"uplink,omitempty"`
}

// Split makes Clusters whose members reach each other; clusters may share
// nodes, and nodes in none are isolated.
type Split struct {
	Clusters [][]string `json:"clusters"`
	Uplink   bool       `json:"uplink,omitempty"`
}

// Drop drops packets from From to To (one way).
type Drop struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Uplink bool   `json:"uplink,omitempty"` // also cut From from the uplink
}

// Heal is fullmesh: every node reaches every node.
type Heal struct{}

// Shape is one of Jepsen's partition shapes over all of the run's nodes,
// shuffled by Seed (0: a random seed).
type Shape struct {
	Name   string `json:"name"` // one of Shapes
	Seed   uint64 `json:"seed,omitempty"`
	Uplink bool   `json:"uplink,omitempty"`
}

// Shapes are the names of Jepsen's shapes.
var Shapes = []string{"halves", "majorities-ring", "bridge", "random-node"}

// Verb implements Spec.
func (Isolate) Verb() string { return "isolate" }

// Verb implements Spec.
func (Disjoint) Verb() string { return "disjoint" }

// Verb implements Spec.
func (Split) Verb() string { return "split" }

// Verb implements Spec.
func (Drop) Verb() string { return "drop" }

// Verb implements Spec.
func (Heal) Verb() string { return "fullmesh" }

// Verb implements Spec.
func (s Shape) Verb() string { return s.Name }

// Options are the flags shared by the verbs.
type Options struct {
	Uplink bool   // also cut the uplink of the cut nodes
	Seed   uint64 // for the random shapes; 0: random
}

// ParseSpec reads verb and its arguments as `nsrun net` takes them
// (clusters separated by "--") and checks everything that needs no list of
// the run's nodes: counts, empty clusters, names given twice.
func ParseSpec(verb string, args []string, o Options) (Spec, error) {
	switch verb {
	case "fullmesh":
		if len(args) > 0 {
			return nil, fmt.Errorf("fullmesh takes no nodes (it heals everything)")
		}
		return Heal{}, nil
	case "isolate":
		if len(args) == 0 {
			return nil, fmt.Errorf("isolate: name the nodes to cut off, e.g. nsrun net isolate db")
		}
		if d := firstDuplicate(args); d != "" {
			return nil, fmt.Errorf("isolate: %q is named twice", d)
		}
		return Isolate{Nodes: slices.Clone(args), Uplink: o.Uplink}, nil
	case "disjoint", "split":
		clusters := splitClusters(args)
		if err := checkClusters(verb, clusters); err != nil {
			return nil, err
		}
		if verb == "disjoint" {
			return Disjoint{Clusters: clusters, Uplink: o.Uplink}, nil
		}
		return Split{Clusters: clusters, Uplink: o.Uplink}, nil
	case "drop":
		if len(args) != 2 {
			return nil, fmt.Errorf("drop: write nsrun net drop FROM TO (packets from FROM to TO are dropped; TO to FROM still pass)")
		}
		if args[0] == args[1] {
			return nil, fmt.Errorf("drop: FROM and TO are both %q", args[0])
		}
		return Drop{From: args[0], To: args[1], Uplink: o.Uplink}, nil
	}
	if slices.Contains(Shapes, verb) {
		if len(args) > 0 {
			return nil, fmt.Errorf("%s takes no nodes: it is computed over all of the run's nodes", verb)
		}
		return Shape{Name: verb, Seed: o.Seed, Uplink: o.Uplink}, nil
	}
	return nil, fmt.Errorf("unknown verb %q", verb)
}

// Parse builds the state of verb with args over the run's nodes
// (ParseSpec, then Spec.State).
func Parse(verb string, args []string, nodes []string, o Options) (State, error) {
	sp, err := ParseSpec(verb, args, o)
	if err != nil {
		return State{}, err
	}
	return sp.State(nodes)
}

// checkClusters checks the form of disjoint's and split's clusters.
func checkClusters(verb string, clusters [][]string) error {
	if len(clusters) < 2 {
		return fmt.Errorf("%s: name at least two clusters separated by --, e.g. nsrun net %s a b -- c d", verb, verb)
	}
	seen := map[string]bool{}
	for _, c := range clusters {
		if len(c) == 0 {
			return fmt.Errorf("%s: an empty cluster (two -- in a row, or one at an end)", verb)
		}
		if d := firstDuplicate(c); d != "" {
			return fmt.Errorf("%s: %q is named twice in one cluster", verb, d)
		}
		for _, n := range c {
			if verb == "disjoint" && seen[n] {
				return fmt.Errorf("disjoint: %q is in two clusters; every node must be named exactly once (use split for clusters that share nodes)", n)
			}
			seen[n] = true
		}
	}
	return nil
}

// ErrUnknownNode is what errors.Is finds in the error of a spec that
// names a node the run does not have.
var ErrUnknownNode = errors.New("unknown node")

// checkKnown refuses names that are not among nodes (ErrUnknownNode).
func checkKnown(verb string, names, nodes []string) error {
	for _, n := range names {
		if !slices.Contains(nodes, n) {
			return fmt.Errorf("%s: no node %q in this run; its nodes: %s%w", verb, n, strings.Join(nodes, ", "), quiet{ErrUnknownNode})
		}
	}
	return nil
}

// State implements Spec.
func (h Heal) State(nodes []string) (State, error) { return Fullmesh(), nil }

// State implements Spec.
func (i Isolate) State(nodes []string) (State, error) {
	if _, err := ParseSpec("isolate", i.Nodes, Options{}); err != nil {
		return State{}, err
	}
	if err := checkKnown("isolate", i.Nodes, nodes); err != nil {
		return State{}, err
	}
	var rest []string
	for _, n := range nodes {
		if !slices.Contains(i.Nodes, n) {
			rest = append(rest, n)
		}
	}
	s := State{Verb: "isolate", Args: slices.Clone(i.Nodes), Clusters: [][]string{rest}}
	if i.Uplink {
		s.UplinkCut = slices.Clone(i.Nodes)
	}
	return s, nil
}

// State implements Spec.
func (d Disjoint) State(nodes []string) (State, error) {
	return clusterState("disjoint", d.Clusters, d.Uplink, nodes)
}

// State implements Spec.
func (sp Split) State(nodes []string) (State, error) {
	return clusterState("split", sp.Clusters, sp.Uplink, nodes)
}

func clusterState(verb string, clusters [][]string, uplink bool, nodes []string) (State, error) {
	if err := checkClusters(verb, clusters); err != nil {
		return State{}, err
	}
	var args []string
	for i, c := range clusters {
		if err := checkKnown(verb, c, nodes); err != nil {
			return State{}, err
		}
		if i > 0 {
			args = append(args, "--")
		}
		args = append(args, c...)
	}
	if verb == "disjoint" {
		for _, n := range nodes {
			if !slices.ContainsFunc(clusters, func(c []string) bool { return slices.Contains(c, n) }) {
				return State{}, fmt.Errorf("disjoint: node %q is in no cluster; name every node exactly once (or use split, which isolates unnamed nodes)", n)
			}
		}
	}
	s := State{Verb: verb, Args: args, Clusters: clusters}
	if uplink {
		s.UplinkCut = slices.Clone(nodes)
	}
	return s, nil
}

// State implements Spec.
func (d Drop) State(nodes []string) (State, error) {
	if _, err := ParseSpec("drop", []string{d.From, d.To}, Options{}); err != nil {
		return State{}, err
	}
	if err := checkKnown("drop", []string{d.From, d.To}, nodes); err != nil {
		return State{}, err
	}
	s := State{Verb: "drop", Args: []string{d.From, d.To}, Drops: [][2]string{{d.From, d.To}}}
	if d.Uplink {
		s.UplinkCut = []string{d.From}
	}
	return s, nil
}

// State implements Spec.
func (sh Shape) State(nodes []string) (State, error) {
	if !slices.Contains(Shapes, sh.Name) {
		return State{}, fmt.Errorf("unknown shape %q; the shapes: %s", sh.Name, strings.Join(Shapes, ", "))
	}
	return jepsen(sh.Name, nodes, Options{Seed: sh.Seed, Uplink: sh.Uplink})
}

// quiet wraps an error for errors.Is without adding to the message.
type quiet struct{ err error }

func (quiet) Error() string   { return "" }
func (q quiet) Unwrap() error { return q.err }
