package nstest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/faults"
	"github.com/nsrun/nsrun/internal/topology"
	"github.com/nsrun/nsrun/internal/verbs"
)

// Schedule is a fault schedule, the typed form of a file's `faults:`
// section (docs/verbs.md: "Fault schedules"): the same checks, the same verbs,
// the same sequence for the same seed.
type Schedule struct {
	// Seed seeds the generator; 0 draws one (Seed tells which).
	Seed   uint64
	Steps  []Step
	Random *Generator
}

// Step is a fixed step: Do, a net or node verb line such as "net
// isolate n3", At from the schedule's start.
type Step struct {
	At time.Duration
	Do string
}

// Generator is the generator: every Every ± Jitter, for For, one line
// of Pick ("random" in a node's place picks a node); each undone after
// HealAfter unless it is zero.
type Generator struct {
	Every, Jitter, For, HealAfter time.Duration
	Pick                          []string
}

// ScheduleEvent is one thing a schedule did: Kind "fault" or "heal" (and
// "faults", "faults-end" for its start and end), Do the verb line, At
// the time from the schedule's start, Err why the verb failed.
type ScheduleEvent struct {
	Kind string
	Do   string
	At   time.Duration
	Err  string
}

// yaml is s as a faults: section, so that the file's own parser checks it.
func (s Schedule) yaml() string {
	var b strings.Builder
	if s.Seed != 0 {
		fmt.Fprintf(&b, "seed: %d\n", s.Seed)
	}
	if len(s.Steps) > 0 {
		b.WriteString("schedule:\n")
		for _, st := range s.Steps {
			fmt.Fprintf(&b, "  - at: %q\n    do: %q\n", st.At.String(), st.Do)
		}
	}
	if r := s.Random; r != nil {
		every := r.Every.String()
		if r.Jitter != 0 {
			every += " ±" + r.Jitter.String()
		}
		fmt.Fprintf(&b, "random:\n  every: %q\n  for: %q\n", every, r.For.String())
		if r.HealAfter != 0 {
			fmt.Fprintf(&b, "  heal-after: %q\n", r.HealAfter.String())
		}
		b.WriteString("  pick:\n")
		for _, p := range r.Pick {
			fmt.Fprintf(&b, "    - %q\n", p)
		}
	}
	return b.String()
}

// RunFaults runs s against the network from now until it ends, or until
// ctx is done: then it stops and heals what is in force (paused and
// stopped nodes, the cut, link faults) and returns ctx's error. A bad
// schedule is refused before anything is done, naming the step. Node
// verbs go through the nodes' own Stop, Start, Pause... so that the exits
// they cause are expected. The seed is logged (and kept for Seed).
func (n *Net) RunFaults(ctx context.Context, s Schedule) ([]ScheduleEvent, error) {
	f, err := topology.ParseFaults("", []byte(s.yaml()))
	if err != nil {
		return nil, fmt.Errorf("nstest: faults: %w", err)
	}
	sched, err := faults.Compile("", f, n.nodeNames(), verbs.ParseLine)
	if err != nil {
		return nil, fmt.Errorf("nstest: faults: %w", err)
	}
	n.mu.Lock()
	n.seed = sched.Seed
	n.mu.Unlock()
	n.out.log("nstest: faults: seed %d (Schedule.Seed repeats it)", sched.Seed)
	seq, err := sched.Sequence(sched.Seed)
	if err != nil {
		return nil, err
	}
	var out []ScheduleEvent
	err = sched.Run(ctx, faultClient{n}, seq, true, func(e faults.Event) {
		n.out.log("nstest: %s", e)
		if err := n.client.Note(e.Note()); err != nil {
			n.out.log("nstest: faults: add the step to the run's events: %v", err)
		}
		out = append(out, ScheduleEvent{Kind: e.Kind, Do: e.Do, At: e.Mono, Err: e.Err})
	})
	return out, err
}

// Annotate adds text to the run's events as an annotation (the test's
// own, of no node): it lands in events.jsonl and in the report.
func (n *Net) Annotate(text string) error {
	if err := n.client.Note(control.NoteCall{Kind: control.EventAnnotation, Text: text}); err != nil {
		return fmt.Errorf("nstest: annotate: %w", err)
	}
	return nil
}

// Seed is the seed of the last schedule RunFaults ran (0 before any):
// give it as Schedule.Seed to repeat the same faults.
func (n *Net) Seed() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.seed
}

// faultClient carries out a schedule's verbs: net verbs on the run's
// control socket, node verbs through the nodes' methods.
type faultClient struct{ n *Net }

func (c faultClient) Net(call control.NetCall) (string, control.NetState, error) {
	return c.n.client.Net(call)
}

func (c faultClient) Node(call control.NodeCall) error {
	nd, ok := c.n.nodes[call.Node]
	if !ok {
		return fmt.Errorf("no node %q", call.Node)
	}
	switch call.Action {
	case "stop", "restart":
		return nd.ending(call.Action)
	}
	return nd.verb(call.Action)
}

// runFileFaults runs the file's faults: section, once every node is up
// (start: at-start too: nstest's runs start it here), until it ends or
// the run stops; its node verbs go through the nodes' methods, so that
// the exits they cause are expected. The seed is logged and kept for
// Seed.
func (n *Net) runFileFaults() {
	s := n.fileFaults
	n.mu.Lock()
	n.seed = s.Seed
	n.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	n.faultsStop, n.faultsDone = cancel, make(chan struct{})
	seq, err := s.Sequence(s.Seed)
	if err != nil {
		n.t.Errorf("nstest: faults: %v", err)
		close(n.faultsDone)
		return
	}
	go func() {
		defer close(n.faultsDone)
		_ = s.Run(ctx, faultClient{n}, seq, false, func(e faults.Event) {
			n.out.log("nstest: %s", e)
			_ = n.client.Note(e.Note()) // fails only as the run ends
		})
	}()
}
