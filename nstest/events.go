package nstest

import (
	"errors"
	"fmt"
	"time"

	"github.com/nsrun/nsrun/internal/control"
)

// EventKind is what happened in the network (see nsrun's
// docs/protocol.md, "Events").
type EventKind string

// The kinds of event.
const (
	NodeStarted EventKind = "node-started" // a node's command started (Pid)
	NodeReady   EventKind = "node-ready"   // its ready check passed (or it started, without one)
	NodeExited  EventKind = "node-exited"  // its command ended (Code)
	NodeStopped EventKind = "node-stopped" // Stop ended it (after its NodeExited)
	NodePaused  EventKind = "node-paused"
	NodeResumed EventKind = "node-resumed"
	RunUp       EventKind = "run-up"       // every node is up
	NetApplied  EventKind = "net"          // a partition or latency verb (Verb)
	LinkFaults  EventKind = "link-faults"  // Flaky on Node
	RunStopping EventKind = "run-stopping" // the network is ending (Text: why)
	FaultStep   EventKind = "fault-step"   // a step of a fault schedule
	Annotation  EventKind = "annotation"   // a note (Text)
)

// Event is one thing that happened in the network, as the run published
// it.
type Event struct {
	// Seq numbers the events from 1.
	Seq uint64
	// Time is the wall-clock time; Since the time since the run started,
	// on the monotonic clock.
	Time  time.Time
	Since time.Duration
	Kind  EventKind
	Node  string // the node it is about, if any
	Pid   int    // NodeStarted: the command's pid in the run
	Code  int    // NodeExited: the exit code (128+N: killed by signal N)
	Verb  string // NetApplied: the verb
	Text  string // what the run says of it
}

func eventOf(e control.Event) Event {
	out := Event{Seq: e.Seq, Time: e.Time, Since: e.Mono, Kind: EventKind(e.Kind), Node: e.Node, Pid: e.Pid, Verb: e.Verb, Text: e.Text}
	if e.Code != nil {
		out.Code = *e.Code
	}
	return out
}

// Events returns every event of the network so far, in order: nodes
// started, ready, exited, stopped, paused and resumed; every net verb
// applied; link faults set; the run stopping. Each verb's event is
// published before the verb returns. Once the network has stopped, it
// returns the events that Start followed.
func (n *Net) Events() ([]Event, error) {
	sub, err := n.client.Events(control.EventsCall{})
	if errors.Is(err, control.ErrRunGone) {
		n.mu.Lock()
		defer n.mu.Unlock()
		return append([]Event(nil), n.events...), nil
	}
	if err != nil {
		return nil, fmt.Errorf("nstest: events: %w", err)
	}
	defer sub.Close()
	var out []Event
	for {
		e, err := sub.Next()
		if errors.Is(err, control.ErrEventsEnded) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("nstest: events: %w", err)
		}
		out = append(out, eventOf(e))
	}
}
