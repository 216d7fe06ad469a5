package faults

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nsrun/nsrun/internal/control"
)

// Client carries out verbs on a run: control.Client is one.
type Client interface {
	Net(control.NetCall) (string, control.NetState, error)
	Node(control.NodeCall) error
}

// The kinds of Event.
const (
	KindFault = "fault"      // a fault applied
	KindHeal  = "heal"       // a fault undone (heal-after, or the schedule stopped)
	KindStart = "faults"     // the schedule's clock started (Do: the seed)
	KindEnd   = "faults-end" // the schedule ended or was stopped
)

// Event is one thing the schedule did.
type Event struct {
	Kind string
	// Planned is the time from the start the sequence gave it; Mono the
	// time from the start it was done (monotonic); Wall when.
	Planned, Mono time.Duration
	Wall          time.Time
	Do            string // the verb line, or what happened
	Source        string // the line of the file, "schedule[1]" or "random.pick[0]"
	Err           string // the verb failed: why
	// Step numbers the faults and heals from 1 (0: the start, the end).
	Step int
}

// Note is e as the run logs it: a control.EventFaultStep whose Verb is
// the verb line and Text "fault" or "heal" (with ": failed: why"), or,
// for the start and the end, no Verb and Text "faults seed N",
// "faults-end done".
func (e Event) Note() control.NoteCall {
	n := control.NoteCall{Kind: control.EventFaultStep, Verb: e.Do, Step: e.Step, Text: e.Kind}
	switch e.Kind {
	case KindFault, KindHeal:
		if e.Err != "" {
			n.Text += ": failed: " + e.Err
		}
	default:
		n.Verb, n.Text = "", e.Kind+" "+e.Do
	}
	if len(n.Text) > control.MaxNote {
		n.Text = n.Text[:control.MaxNote]
	}
	return n
}

// String is the event as a line for people.
func (e Event) String() string {
	line := fmt.Sprintf("faults %7.3fs %-5s %s", e.Mono.Seconds(), e.Kind, e.Do)
	switch e.Kind {
	case KindStart:
		line = fmt.Sprintf("faults %7.3fs start, %s (give it as seed: to repeat the run)", e.Mono.Seconds(), e.Do)
	case KindEnd:
		line = fmt.Sprintf("faults %7.3fs end (%s)", e.Mono.Seconds(), e.Do)
	}
	if e.Err != "" {
		line += ": failed: " + e.Err
	}
	return line
}

// Run carries out seq (Sequence's) through c, calling emit with each
// event, from now. When ctx is done it stops and heals every fault still
// in force (cut, link faults, latency, paused and stopped nodes) if heal
// says so, then returns ctx's error. A verb that fails is reported as an event and the
// schedule goes on.
func (s *Schedule) Run(ctx context.Context, c Client, seq []Entry, heal bool, emit func(Event)) error {
	start := time.Now()
	var st state
	step := 0
	ev := func(kind string, planned time.Duration, do, src string, err error) {
		e := Event{Kind: kind, Planned: planned, Mono: time.Since(start), Wall: time.Now(), Do: do, Source: src}
		if kind == KindFault || kind == KindHeal {
			step++
			e.Step = step
		}
		if err != nil {
			e.Err = err.Error()
		}
		emit(e)
	}
	ev(KindStart, 0, fmt.Sprintf("seed %d", s.Seed), "", nil)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for _, e := range seq {
		if d := time.Until(start.Add(e.At)); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				if heal {
					s.healAll(c, &st, func(do string, err error) { ev(KindHeal, 0, do, "stop", err) })
				}
				ev(KindEnd, 0, "stopped", "", nil)
				return ctx.Err()
			case <-timer.C:
			}
		}
		err := do(c, e.Action)
		if err == nil {
			st.apply(e.Action)
		}
		kind := KindFault
		if e.Heal {
			kind = KindHeal
		}
		ev(kind, e.At, e.Action.String(), e.Source, err)
	}
	ev(KindEnd, 0, "done", "", nil)
	return nil
}

// do sends a's verb.
func do(c Client, a Action) error {
	switch {
	case a.Net != nil:
		_, _, err := c.Net(*a.Net)
		return err
	case a.Node != nil:
		return c.Node(*a.Node)
	}
	return errors.New("faults: an action with no verb")
}

// healAll undoes what st holds in force, reporting each heal.
func (s *Schedule) healAll(c Client, st *state, report func(do string, err error)) {
	for _, words := range st.heals() {
		a, err := s.parse(words, s.Nodes)
		if err == nil {
			a.Words = words
			err = do(c, a)
		}
		report(strings.Join(words, " "), err)
	}
}

// state is what the schedule has left in force.
type state struct {
	cut, latency    bool
	paused, stopped []string
	flaky           []string
}

// apply records that a was done.
func (st *state) apply(a Action) {
	if n := a.Node; n != nil {
		switch n.Action {
		case "pause":
			st.paused = add(st.paused, n.Node)
		case "resume":
			st.paused = del(st.paused, n.Node)
		case "stop":
			st.stopped = add(st.stopped, n.Node)
		case "start", "restart":
			st.stopped = del(st.stopped, n.Node)
			st.paused = del(st.paused, n.Node)
		}
		return
	}
	switch c := a.Net; {
	case c == nil:
	case c.Flaky != nil && c.Flaky.Set == 0:
		st.flaky = del(st.flaky, c.Flaky.Node)
	case c.Flaky != nil:
		st.flaky = add(st.flaky, c.Flaky.Node)
	case c.Latency != nil:
		st.latency = !c.Latency.Clear
	case c.Heal != nil:
		st.cut = false
	case c.Spec() != nil:
		st.cut = true
	}
}

// heals are the verb lines that undo st: nodes first (a stopped node
// starts again, a paused one resumes), then the network.
func (st *state) heals() [][]string {
	var out [][]string
	for _, n := range st.paused {
		out = append(out, []string{"node", "resume", n})
	}
	for _, n := range st.stopped {
		out = append(out, []string{"node", "start", n})
	}
	if st.cut {
		out = append(out, []string{"net", "fullmesh"})
	}
	for _, n := range st.flaky {
		out = append(out, []string{"net", "flaky", n})
	}
	if st.latency {
		out = append(out, []string{"net", "latency", "--clear"})
	}
	return out
}

func add(xs []string, x string) []string {
	if slices.Contains(xs, x) {
		return xs
	}
	return append(xs, x)
}

func del(xs []string, x string) []string {
	return slices.DeleteFunc(xs, func(y string) bool { return y == x })
}
