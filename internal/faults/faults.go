// Package faults is the file's `faults:` section as a schedule: fixed
// steps at times from the start and a seeded generator of random faults,
// whose words are the command line's own `net` and `node` verbs (parsed
// by package cli's parser, handed in as a Parser). Compile checks every
// verb at the file; Sequence turns a schedule and a seed into the exact
// list of faults and heals, the same for the same seed; Run carries one
// out through a control client and, stopped, heals what is in force.
package faults

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/topology"
)

// Action is one fault or heal: a net or a node verb, typed; exactly one
// of Net and Node is set.
type Action struct {
	Words []string // the verb line as sent, "net isolate n3"
	Net   *control.NetCall
	Node  *control.NodeCall
}

// String is the verb line.
func (a Action) String() string { return strings.Join(a.Words, " ") }

// Parser reads a verb line, "net" or "node" first, into a typed Action,
// refusing what the command line refuses; nodes are the run's nodes.
type Parser func(words []string, nodes []string) (Action, error)

// Line is one verb line of the schedule as written; the word "random"
// stands for a node that the run's generator picks.
type Line struct {
	Words []string
	Pos   topology.Pos
}

// Step is a fixed step: Do at At from the start.
type Step struct {
	At time.Duration
	Do Line
}

// Random is the generator: every Every ± Jitter, for For, one line of
// Pick; each fault undone after HealAfter unless it is zero.
type Random struct {
	Every, Jitter, For, HealAfter time.Duration
	Pick                          []Line
}

// Schedule is a checked `faults:` section for a run's nodes.
type Schedule struct {
	// Seed seeds the generator; SeedGiven says the file gave it (else it
	// was drawn, and is printed so the run can be repeated).
	Seed      uint64
	SeedGiven bool
	// AtStart: the clock starts with the run, not when every node is
	// ready.
	AtStart bool
	Steps   []Step // in time order
	Random  *Random
	Nodes   []string
	parse   Parser
}

// RandomWord is the word that the generator replaces with a node.
const RandomWord = "random"

// shapes are the net verbs that take --seed: the schedule's generator
// gives them one, so that their choice repeats with the seed.
var shapes = []string{"halves", "majorities-ring", "bridge", "random-node"}

// Compile checks f, read from file, against the run's nodes: each verb
// line is parsed by parse with "random" standing for a node, its heal
// too; an error names the line's file:line:col and the fix. Without a
// seed in the file, one is drawn.
func Compile(file string, f *topology.Faults, nodes []string, parse Parser) (*Schedule, error) {
	s := &Schedule{Seed: f.Seed, SeedGiven: f.SeedSet, AtStart: f.AtStart, Nodes: nodes, parse: parse}
	if !s.SeedGiven {
		s.Seed = rand.Uint64N(1<<53) + 1
	}
	check := func(field, do string, at topology.Pos) (Line, error) {
		l := Line{Words: strings.Fields(do), Pos: at}
		if len(l.Words) > 0 && l.Words[0] == "nsrun" {
			l.Words = l.Words[1:]
		}
		if len(l.Words) == 0 || l.Words[0] != "net" && l.Words[0] != "node" {
			return l, topology.ErrorAt(file, at, "%s: %q: write a net or node verb, such as net isolate n3 or node pause random", field, do)
		}
		if l.Words[0] == "net" && len(l.Words) > 1 && l.Words[1] == "exec" {
			return l, topology.ErrorAt(file, at, "%s: %q: net exec is no fault; write a net or node verb that changes the run", field, do)
		}
		a, err := s.resolve(l, nil)
		if err != nil {
			return l, topology.ErrorAt(file, at, "%s: %q: %v", field, do, err)
		}
		if h := healWords(a); h != nil {
			if _, err := parse(h, nodes); err != nil {
				return l, topology.ErrorAt(file, at, "%s: %q: its heal %q: %v", field, do, strings.Join(h, " "), err)
			}
		}
		return l, nil
	}
	for i, st := range f.Schedule {
		l, err := check(fmt.Sprintf("faults.schedule[%d].do", i), st.Do, st.DoPos)
		if err != nil {
			return nil, err
		}
		s.Steps = append(s.Steps, Step{At: st.At, Do: l})
	}
	slices.SortStableFunc(s.Steps, func(a, b Step) int { return cmp.Compare(a.At, b.At) })
	if r := f.Random; r != nil {
		s.Random = &Random{Every: r.Every, Jitter: r.Jitter, For: r.For, HealAfter: r.HealAfter}
		for i, w := range r.Pick {
			l, err := check(fmt.Sprintf("faults.random.pick[%d]", i), w.Do, w.Pos)
			if err != nil {
				return nil, err
			}
			s.Random.Pick = append(s.Random.Pick, l)
		}
	}
	return s, nil
}

// resolve parses l with each "random" replaced by a node the generator
// picks and a shape given a --seed from it; with no generator (checking),
// "random" is the first node.
func (s *Schedule) resolve(l Line, rng *rand.Rand) (Action, error) {
	words := slices.Clone(l.Words)
	for i, w := range words {
		if w != RandomWord || i < 2 || strings.HasPrefix(words[i-1], "--") {
			continue
		}
		switch {
		case len(s.Nodes) == 0:
			return Action{}, fmt.Errorf("%q picks a node, and the run has none", RandomWord)
		case rng == nil:
			words[i] = s.Nodes[0]
		default:
			words[i] = s.Nodes[rng.IntN(len(s.Nodes))]
		}
	}
	if words[0] == "net" && len(words) > 1 && slices.Contains(shapes, words[1]) && !slices.ContainsFunc(words, func(w string) bool { return w == "--seed" || strings.HasPrefix(w, "--seed=") }) {
		seed := uint64(1)
		if rng != nil {
			seed = rng.Uint64N(1<<53) + 1
		}
		words = append(words, "--seed", strconv.FormatUint(seed, 10))
	}
	a, err := s.parse(words, s.Nodes)
	if err != nil {
		return a, err
	}
	a.Words = words
	return a, nil
}

// healWords is the verb line that undoes a: fullmesh after a cut, flaky
// with no option after flaky, latency --clear after latency, resume after
// pause, start after stop; nil when a needs none.
func healWords(a Action) []string {
	switch {
	case a.Node != nil && a.Node.Action == "pause":
		return []string{"node", "resume", a.Node.Node}
	case a.Node != nil && a.Node.Action == "stop":
		return []string{"node", "start", a.Node.Node}
	case a.Net == nil:
		return nil
	case a.Net.Flaky != nil && a.Net.Flaky.Set != 0:
		return []string{"net", "flaky", a.Net.Flaky.Node}
	case a.Net.Latency != nil && !a.Net.Latency.Clear:
		return []string{"net", "latency", "--clear"}
	case a.Net.Spec() != nil && a.Net.Heal == nil:
		return []string{"net", "fullmesh"}
	}
	return nil
}

// Entry is one thing the schedule does, At from the start: a fault of
// step or pick Index, or (Heal) the undoing of the fault before it.
type Entry struct {
	At     time.Duration
	Action Action
	Heal   bool
	// Source is where the line is written: "schedule[2]" or "random".
	Source string
}

// Sequence is what the schedule does with seed, in time order: fixed
// steps and the generator's faults, each followed by its heal when
// heal-after is set. The same seed gives the same sequence.
func (s *Schedule) Sequence(seed uint64) ([]Entry, error) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var out []Entry
	for i, st := range s.Steps {
		a, err := s.resolve(st.Do, rng)
		if err != nil {
			return nil, fmt.Errorf("faults.schedule[%d]: %w", i, err)
		}
		out = append(out, Entry{At: st.At, Action: a, Source: fmt.Sprintf("schedule[%d]", i)})
	}
	if r := s.Random; r != nil {
		for t := time.Duration(0); ; {
			t += r.Every
			if r.Jitter > 0 {
				t += time.Duration(rng.Int64N(int64(2*r.Jitter)+1)) - r.Jitter
			}
			if t > r.For {
				break
			}
			i := rng.IntN(len(r.Pick))
			a, err := s.resolve(r.Pick[i], rng)
			if err != nil {
				return nil, fmt.Errorf("faults.random.pick[%d]: %w", i, err)
			}
			src := fmt.Sprintf("random.pick[%d]", i)
			out = append(out, Entry{At: t, Action: a, Source: src})
			if h := healWords(a); h != nil && r.HealAfter > 0 {
				ha, err := s.parse(h, s.Nodes)
				if err != nil {
					return nil, err
				}
				ha.Words = h
				out = append(out, Entry{At: t + r.HealAfter, Action: ha, Heal: true, Source: src})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Entry) int { return cmp.Compare(a.At, b.At) })
	return out, nil
}
