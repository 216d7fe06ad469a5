package control

import (
	"errors"
	"time"
)

// EventsVerb subscribes to the run's events (EventsCall): the run sends
// every event it has published so far, then, with Follow, each new one
// as it happens, one Response with Event each, and a last Response with
// Done when it ends (without Follow, at once).
const EventsVerb = "events"

// EventsCall is a subscription to the run's events.
type EventsCall struct {
	// After skips the events up to and including sequence number After
	// (0: from the first).
	After uint64 `json:"after,omitempty"`
	// Follow keeps the subscription open for the events still to come,
	// until the run ends or the client hangs up.
	Follow bool `json:"follow,omitempty"`
}

// Check accepts every subscription.
func (EventsCall) Check() error { return nil }

// EventKind is what happened.
type EventKind string

// The kinds of event. The run publishes every one of them but
// EventFaultStep and EventAnnotation, which are for fault schedules and
// the user's notes (issue 26) and which readers must accept already.
const (
	// EventNodeStarted: the node's command started (Pid), at the run's
	// start or by `nsrun node start|restart`.
	EventNodeStarted EventKind = "node-started"
	// EventNodeReady: the node's ready check passed; a node without one
	// is ready when it has started.
	EventNodeReady EventKind = "node-ready"
	// EventNodeExited: the node's command ended with Code (128+N: killed
	// by signal N), whoever ended it.
	EventNodeExited EventKind = "node-exited"
	// EventNodeStopped: `nsrun node stop` ended the node (after its
	// EventNodeExited); the run goes on.
	EventNodeStopped EventKind = "node-stopped"
	// EventNodePaused and EventNodeResumed: `nsrun node pause|resume`.
	EventNodePaused  EventKind = "node-paused"
	EventNodeResumed EventKind = "node-resumed"
	// EventRunUp: every node has started and is ready.
	EventRunUp EventKind = "run-up"
	// EventNet: a net verb (Verb) was applied; Net is the state it left.
	EventNet EventKind = "net"
	// EventLinkFaults: `nsrun net flaky` set the link faults of Node
	// (Faults: all of its faults now, zero when cleared).
	EventLinkFaults EventKind = "link-faults"
	// EventRunStopping: the run is ending (Text says why); nothing
	// starts any more. It is the last event but for the exits it causes.
	EventRunStopping EventKind = "run-stopping"
	// EventFaultStep: one step of a fault schedule (Step; Verb and Net
	// as EventNet).
	EventFaultStep EventKind = "fault-step"
	// EventAnnotation: a note (Text) that a user or a test added.
	EventAnnotation EventKind = "annotation"
)

// Event is one thing that happened in a run, as the run publishes it on
// its control socket (EventsVerb) and appends it to events.jsonl in the
// run folder, one JSON object a line.
type Event struct {
	// Seq numbers the run's events from 1, without gaps.
	Seq uint64 `json:"seq"`
	// Time is the wall-clock time; Mono the time since the run started,
	// on the monotonic clock (which no clock change moves): order and
	// measure with Mono.
	Time time.Time     `json:"time"`
	Mono time.Duration `json:"mono_ns"`
	Kind EventKind     `json:"kind"`
	// Node is the node the event is about, if any.
	Node string `json:"node,omitempty"`
	// Pid is the started command's pid (in the run's pid namespace).
	Pid int `json:"pid,omitempty"`
	// Code is the exit code (EventNodeExited).
	Code *int `json:"code,omitempty"`
	// Verb is the net verb (EventNet, EventFaultStep).
	Verb string `json:"verb,omitempty"`
	// Net is the network's state after the verb.
	Net *NetState `json:"net,omitempty"`
	// Faults are Node's link faults (EventLinkFaults).
	Faults *Faults `json:"faults,omitempty"`
	// Step numbers a fault schedule's steps (EventFaultStep).
	Step int `json:"step,omitempty"`
	// Text says it in words: why the run stops, the note of an
	// annotation, what a verb did.
	Text string `json:"text,omitempty"`
}

// ErrEventsEnded is the end of a subscription: the run sent its last
// event (it ended, or the subscription did not follow).
var ErrEventsEnded = errors.New("no more events")

// Events subscribes to the run's events (see EventsVerb).
func (c *Client) Events(call EventsCall) (*Subscription, error) {
	conn, err := Dial(c.path, Request{Verb: EventsVerb, Events: &call})
	if err != nil {
		return nil, err
	}
	return &Subscription{conn: conn}, nil
}

// Subscription is a stream of a run's events.
type Subscription struct {
	conn *Conn
	done bool
}

// Next returns the next event; ErrEventsEnded once the run has sent its
// last, ErrRunGone if the run went away without a last answer.
func (s *Subscription) Next() (Event, error) {
	if s.done {
		return Event{}, ErrEventsEnded
	}
	r, err := s.conn.Recv()
	if err != nil {
		return Event{}, err
	}
	if err := r.Err(); err != nil {
		return Event{}, err
	}
	if r.Event == nil {
		s.done = true
		return Event{}, ErrEventsEnded
	}
	return *r.Event, nil
}

// Close ends the subscription.
func (s *Subscription) Close() error { return s.conn.Close() }
