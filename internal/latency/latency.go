// Package latency is a run's latency matrix: regions (named groups of
// nodes) and rules that add a one-way delay, with an optional jitter,
// between two regions or nodes. It parses the file's and the command
// line's spellings, checks values, and resolves the rules into one delay
// per ordered pair of nodes. It knows no kernel: package linkengine
// applies the result.
package latency

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Max is the longest delay a rule may add.
const Max = 60 * time.Second

// Value is a one-way delay and its jitter (the standard deviation of a
// normal spread, at most the delay).
type Value struct {
	Delay  time.Duration `json:"delay"`
	Jitter time.Duration `json:"jitter,omitempty"`
}

// String writes v as the file does: "40ms" or "75ms ±5ms".
func (v Value) String() string {
	if v.Jitter > 0 {
		return v.Delay.String() + " ±" + v.Jitter.String()
	}
	return v.Delay.String()
}

// Check refuses a negative or absurd delay and a jitter larger than the
// delay.
func (v Value) Check() error {
	switch {
	case v.Delay < 0:
		return fmt.Errorf("delay %s is negative; write a delay of 0 or more, such as 40ms", v.Delay)
	case v.Delay > Max:
		return fmt.Errorf("delay %s is over %s; write a shorter delay", v.Delay, Max)
	case v.Jitter < 0:
		return fmt.Errorf("jitter %s is negative; write a jitter of 0 or more, such as 5ms", v.Jitter)
	case v.Jitter > v.Delay:
		return fmt.Errorf("jitter %s is larger than the delay %s (jitter is the delay's standard deviation); make it at most the delay", v.Jitter, v.Delay)
	}
	return nil
}

// ParseValue reads "40ms" or "75ms ±5ms" ("+-" for "±" works too) and
// checks it.
func ParseValue(s string) (Value, error) {
	var v Value
	s = strings.TrimSpace(strings.ReplaceAll(s, "+-", "±"))
	d, j, hasJitter := strings.Cut(s, "±")
	var err error
	if v.Delay, err = time.ParseDuration(strings.TrimSpace(d)); err != nil {
		return v, fmt.Errorf("%q: write a duration such as 40ms, or 75ms ±5ms with a jitter", s)
	}
	if hasJitter {
		if v.Jitter, err = time.ParseDuration(strings.TrimSpace(j)); err != nil {
			return v, fmt.Errorf("%q: the jitter after ± must be a duration, such as 75ms ±5ms", s)
		}
	}
	return v, v.Check()
}

// Rule adds Value to what From sends To (and To sends From when Both);
// each is a region or a node.
type Rule struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Both  bool   `json:"both,omitempty"`
	Value Value  `json:"value"`
}

// String writes r as the file does: "us <-> eu: 40ms".
func (r Rule) String() string {
	arrow := "->"
	if r.Both {
		arrow = "<->"
	}
	return fmt.Sprintf("%s %s %s: %s", r.From, arrow, r.To, r.Value)
}

// ParseKey reads a rule's key: "A <-> B" (both ways) or "A -> B".
func ParseKey(s string) (from, to string, both bool, err error) {
	for _, arrow := range []string{"<->", "->"} {
		if a, b, ok := strings.Cut(s, arrow); ok {
			a, b = strings.TrimSpace(a), strings.TrimSpace(b)
			if a == "" || b == "" || strings.ContainsAny(b, "<>") {
				break
			}
			return a, b, arrow == "<->", nil
		}
	}
	return "", "", false, fmt.Errorf("%q: write A <-> B (both ways) or A -> B (one way), where A and B are regions or nodes", s)
}

// Pair is an ordered pair of nodes (or, in a rule's terms, of regions
// or nodes).
type Pair struct{ From, To string }

// Matrix is the latency a run has: its regions and its rules, in the
// order given.
type Matrix struct {
	// Regions are groups of nodes, by region name; a node is in at most
	// one.
	Regions map[string][]string `json:"regions,omitempty"`
	Rules   []Rule              `json:"rules,omitempty"`
}

// IsZero reports whether m has no rule.
func (m Matrix) IsZero() bool { return len(m.Rules) == 0 }

// directed is one direction of a rule.
type directed struct {
	Pair
	v    Value
	rule int
}

func (m Matrix) directed() []directed {
	var out []directed
	for i, r := range m.Rules {
		out = append(out, directed{Pair{r.From, r.To}, r.Value, i})
		if r.Both && r.From != r.To {
			out = append(out, directed{Pair{r.To, r.From}, r.Value, i})
		}
	}
	return out
}

// Check refuses a node in two regions, a region that shares a node's
// name, a rule naming neither a region nor one of nodes, a bad value, and
// a pair given twice with different values. An error names the rule by
// its index (Rules[i]) through RuleError.
func (m Matrix) Check(nodes []string) error {
	isNode := map[string]bool{}
	for _, n := range nodes {
		isNode[n] = true
	}
	region := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(m.Regions)) {
		if isNode[name] {
			return fmt.Errorf("regions: %q is also a node's name; name the region differently", name)
		}
		for _, n := range m.Regions[name] {
			if !isNode[n] {
				return fmt.Errorf("regions.%s: no node named %q; known nodes: %s", name, n, strings.Join(nodes, ", "))
			}
			if other, ok := region[n]; ok {
				return fmt.Errorf("regions.%s: node %s is already in region %s; a node is in at most one region", name, n, other)
			}
			region[n] = name
		}
	}
	seen := map[Pair]directed{}
	for _, d := range m.directed() {
		r := m.Rules[d.rule]
		for _, name := range []string{d.From, d.To} {
			if _, ok := m.Regions[name]; !ok && !isNode[name] {
				return &RuleError{Rule: d.rule, Msg: fmt.Sprintf("latency: %q is neither a region nor a node; regions: %s; nodes: %s", name, orNone(slices.Sorted(maps.Keys(m.Regions))), strings.Join(nodes, ", "))}
			}
		}
		if err := r.Value.Check(); err != nil {
			return &RuleError{Rule: d.rule, Msg: "latency: " + r.From + ": " + err.Error()}
		}
		if prev, ok := seen[d.Pair]; ok && prev.v != d.v {
			return &RuleError{Rule: d.rule, Msg: fmt.Sprintf("latency: %s -> %s is given twice, as %s (%s) and %s; give each pair one value", d.From, d.To, prev.v, m.Rules[prev.rule], d.v)}
		}
		seen[d.Pair] = d
	}
	return nil
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}

// RuleError is a problem with rule Rule of a Matrix.
type RuleError struct {
	Rule int
	Msg  string
}

func (e *RuleError) Error() string { return e.Msg }

// Resolve is the delay of every ordered pair of distinct nodes that a
// rule covers. The most specific rule wins: node to node, then node to
// region, then region to node, then region to region. Call Check first.
func (m Matrix) Resolve(nodes []string) map[Pair]Value {
	region := map[string]string{}
	for name, ns := range m.Regions {
		for _, n := range ns {
			region[n] = name
		}
	}
	byPair := map[Pair]Value{}
	for _, d := range m.directed() {
		byPair[d.Pair] = d.v
	}
	out := map[Pair]Value{}
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			for _, p := range []Pair{{a, b}, {a, region[b]}, {region[a], b}, {region[a], region[b]}} {
				if p.From == "" || p.To == "" {
					continue
				}
				if v, ok := byPair[p]; ok {
					out[Pair{a, b}] = v
					break
				}
			}
		}
	}
	return out
}

// With is m with rule r in force: r replaces the rules, or the
// directions of rules, between the same two names.
func (m Matrix) With(r Rule) Matrix {
	out := Matrix{Regions: m.Regions}
	covered := map[Pair]bool{{r.From, r.To}: true}
	if r.Both {
		covered[Pair{r.To, r.From}] = true
	}
	for _, old := range m.Rules {
		fwd, back := covered[Pair{old.From, old.To}], covered[Pair{old.To, old.From}]
		switch {
		case !old.Both && fwd, old.Both && fwd && back:
			continue // replaced
		case old.Both && (fwd || back):
			// One direction replaced: the other stays, one way.
			if fwd {
				old = Rule{From: old.To, To: old.From, Value: old.Value}
			} else {
				old.Both = false
			}
		}
		out.Rules = append(out.Rules, old)
	}
	out.Rules = append(out.Rules, r)
	return out
}
