package topology

import (
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Faults is the file's `faults:` section with its times read and its
// verbs as written: package faults parses each verb with the command
// line's own parser (package cli), which this package cannot import, and
// reports its errors at the positions kept here.
type Faults struct {
	Pos Pos // of the `faults:` value
	// Seed is `seed:`; SeedSet says it was written (0 is refused).
	Seed    uint64
	SeedSet bool
	// AtStart is `start: at-start`: the clock starts with the run, not
	// when every node is ready (`start: after-ready`, the default).
	AtStart  bool
	Schedule []FaultStep
	Random   *RandomFaults
}

// FaultStep is one fixed step: `- at: 2s` / `do: net isolate n3`.
type FaultStep struct {
	At    time.Duration
	AtPos Pos
	Do    string // the verb line, without "nsrun"
	DoPos Pos
}

// RandomFaults is `random:`: every Every (± Jitter) for For, a fault
// picked from Pick; each undone after HealAfter when it is not zero.
type RandomFaults struct {
	Pos                      Pos
	Every, Jitter, For       time.Duration
	HealAfter                time.Duration
	EveryPos, ForPos, HealAt Pos
	Pick                     []FaultWord
}

// FaultWord is a verb line of `pick:` and where it is written.
type FaultWord struct {
	Do  string
	Pos Pos
}

func pos(n *yaml.Node) Pos { return Pos{Line: n.Line, Column: n.Column} }

// faults reads the `faults:` section.
func (p *parser) faults(n *yaml.Node) (*Faults, error) {
	pairs, err := p.mapping(n, "faults", "seed", "start", "schedule", "random")
	if err != nil {
		return nil, err
	}
	f := &Faults{Pos: pos(n)}
	for _, kv := range pairs {
		k, v := kv[0].Value, kv[1]
		if v.Kind != yaml.ScalarNode && (k == "seed" || k == "start") {
			return nil, p.errAt(v, "faults.%s: write one value", k)
		}
		switch k {
		case "seed":
			s, err := strconv.ParseUint(v.Value, 10, 64)
			if err != nil || s == 0 {
				return nil, p.errAt(v, "faults.seed: %q: write a positive whole number, such as 42", v.Value)
			}
			f.Seed, f.SeedSet = s, true
		case "start":
			switch v.Value {
			case "after-ready":
			case "at-start":
				f.AtStart = true
			default:
				return nil, p.errAt(v, "faults.start: %q: write after-ready (the clock starts when every node is up) or at-start", v.Value)
			}
		case "schedule":
			if f.Schedule, err = p.faultSteps(v); err != nil {
				return nil, err
			}
		case "random":
			if f.Random, err = p.randomFaults(v); err != nil {
				return nil, err
			}
		}
	}
	if len(f.Schedule) == 0 && f.Random == nil {
		return nil, p.errAt(n, "faults: no `schedule:` and no `random:`; give either, or drop `faults:`")
	}
	return f, nil
}

// faultSteps reads `schedule:`, refusing two steps at the same time.
func (p *parser) faultSteps(n *yaml.Node) ([]FaultStep, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, p.errAt(n, "faults.schedule: write a list of steps, each `- at: 2s` and `do: net isolate n3`")
	}
	var out []FaultStep
	at := map[time.Duration]int{}
	for i, item := range n.Content {
		field := "faults.schedule[" + strconv.Itoa(i) + "]"
		pairs, err := p.mapping(item, field, "at", "do")
		if err != nil {
			return nil, err
		}
		var st FaultStep
		var atNode, doNode *yaml.Node
		for _, kv := range pairs {
			if kv[1].Kind != yaml.ScalarNode {
				return nil, p.errAt(kv[1], "%s.%s: write one value", field, kv[0].Value)
			}
			if kv[0].Value == "at" {
				atNode = kv[1]
			} else {
				doNode = kv[1]
			}
		}
		if atNode == nil || doNode == nil {
			return nil, p.errAt(item, "%s: a step needs `at:` (a time from the start, such as 2s) and `do:` (a net or node verb, such as net isolate n3)", field)
		}
		if st.At, err = p.faultTime(field+".at", atNode); err != nil {
			return nil, err
		}
		if other, dup := at[st.At]; dup {
			return nil, p.errAt(atNode, "%s.at: %s is also the time of step %d: steps at the same time overlap, and their order would be arbitrary; move one of them", field, st.At, other)
		}
		at[st.At] = i
		st.AtPos, st.Do, st.DoPos = pos(atNode), doNode.Value, pos(doNode)
		out = append(out, st)
	}
	return out, nil
}

// randomFaults reads `random:`.
func (p *parser) randomFaults(n *yaml.Node) (*RandomFaults, error) {
	pairs, err := p.mapping(n, "faults.random", "every", "for", "heal-after", "pick")
	if err != nil {
		return nil, err
	}
	r := &RandomFaults{Pos: pos(n)}
	var every, forNode, pick *yaml.Node
	for _, kv := range pairs {
		k, v := kv[0].Value, kv[1]
		if k == "pick" {
			pick = v
			continue
		}
		if v.Kind != yaml.ScalarNode {
			return nil, p.errAt(v, "faults.random.%s: write one duration, such as 3s", k)
		}
		switch k {
		case "every":
			every = v
			d, j, _ := strings.Cut(strings.ReplaceAll(v.Value, "+-", "±"), "±")
			if r.Every, err = p.faultTimeText("faults.random.every", v, strings.TrimSpace(d)); err != nil {
				return nil, err
			}
			if strings.TrimSpace(j) != "" {
				if r.Jitter, err = p.faultTimeText("faults.random.every's ±", v, strings.TrimSpace(j)); err != nil {
					return nil, err
				}
			}
			if r.Every == 0 || r.Jitter >= r.Every {
				return nil, p.errAt(v, "faults.random.every: %q: write a time above 0, with a ± below it, such as 3s ±1s", v.Value)
			}
			r.EveryPos = pos(v)
		case "for":
			forNode = v
			if r.For, err = p.faultTime("faults.random.for", v); err != nil {
				return nil, err
			}
			r.ForPos = pos(v)
		case "heal-after":
			if r.HealAfter, err = p.faultTime("faults.random.heal-after", v); err != nil {
				return nil, err
			}
			r.HealAt = pos(v)
		}
	}
	if every == nil || forNode == nil || pick == nil {
		return nil, p.errAt(n, "faults.random: needs every (such as 3s ±1s), for (how long, such as 30s) and pick (a list of verbs)")
	}
	if r.HealAfter > 0 && r.HealAfter >= r.Every-r.Jitter {
		return nil, p.errAt(pos2node(r.HealAt), "faults.random.heal-after: %s: each fault must be healed before the next can come (every %s ±%s): make it shorter than %s", r.HealAfter, r.Every, r.Jitter, r.Every-r.Jitter)
	}
	if pick.Kind != yaml.SequenceNode || len(pick.Content) == 0 {
		return nil, p.errAt(pick, "faults.random.pick: write a list of verbs, such as [net halves, node pause random]")
	}
	for _, item := range pick.Content {
		if item.Kind != yaml.ScalarNode {
			return nil, p.errAt(item, "faults.random.pick: each entry is one verb line, such as net isolate random")
		}
		r.Pick = append(r.Pick, FaultWord{Do: item.Value, Pos: pos(item)})
	}
	return r, nil
}

// pos2node is a node at pos, for errAt.
func pos2node(ps Pos) *yaml.Node { return &yaml.Node{Line: ps.Line, Column: ps.Column} }

// faultTime reads a time of the faults section: a duration, 0 or more.
func (p *parser) faultTime(field string, v *yaml.Node) (time.Duration, error) {
	return p.faultTimeText(field, v, v.Value)
}

func (p *parser) faultTimeText(field string, v *yaml.Node, text string) (time.Duration, error) {
	if text == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(text)
	if err != nil {
		return 0, p.errAt(v, "%s: %q: write a duration such as 2s, 500ms or 1m30s", field, text)
	}
	if d < 0 {
		return 0, p.errAt(v, "%s: %q is a negative time: times count from the start of the schedule; write 0 or more", field, text)
	}
	return d, nil
}

// ParseFaults reads a schedule on its own (`nsrun faults FILE`): a file
// with a `faults:` section (an nsrun.yaml: its other sections are not
// read), or the section's contents alone.
func ParseFaults(name string, data []byte) (*Faults, error) {
	p := &parser{file: name}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, p.yamlError(err)
	}
	if len(doc.Content) == 0 {
		return nil, &Error{File: name, Msg: "empty: write a faults: section (see docs/verbs.md: \"Fault schedules\")"}
	}
	root := doc.Content[0]
	if root.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == "faults" {
				return p.faults(root.Content[i+1])
			}
		}
	}
	return p.faults(root)
}
