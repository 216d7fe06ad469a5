package control

import (
	"fmt"
	"strings"
	"unicode"
)

// NoteVerb adds an event to the run's log (NoteCall): a step of a fault
// schedule run from outside the run (`nsrun faults`, nstest's RunFaults),
// or an annotation. The run numbers and stamps it like its own events.
const NoteVerb = "note"

// MaxNote is the longest Text or Verb of a NoteCall, in bytes.
const MaxNote = 512

// NoteCall is an event a client adds: Kind EventFaultStep (Verb, Step,
// Text) or EventAnnotation (Text, of Node when set).
type NoteCall struct {
	Kind EventKind `json:"kind"`
	Node string    `json:"node,omitempty"`
	Verb string    `json:"verb,omitempty"`
	Step int       `json:"step,omitempty"`
	Text string    `json:"text,omitempty"`
}

// Check refuses another kind, a text or verb too long or with control
// characters, and a node name with a space.
func (c NoteCall) Check() error {
	if c.Kind != EventFaultStep && c.Kind != EventAnnotation {
		return fmt.Errorf("note: kind %q: write %s or %s", c.Kind, EventFaultStep, EventAnnotation)
	}
	for name, s := range map[string]string{"text": c.Text, "verb": c.Verb} {
		if len(s) > MaxNote {
			return fmt.Errorf("note: the %s is longer than %d bytes", name, MaxNote)
		}
		if strings.IndexFunc(s, unicode.IsControl) >= 0 {
			return fmt.Errorf("note: the %s holds a control character; write one line", name)
		}
	}
	if c.Text == "" && c.Verb == "" {
		return fmt.Errorf("note: no text")
	}
	if strings.ContainsAny(c.Node, " \t\n") || c.Step < 0 {
		return fmt.Errorf("note: node %q, step %d: name a node, number steps from 1", c.Node, c.Step)
	}
	return nil
}

// Note adds the event of call to the run's log.
func (c *Client) Note(call NoteCall) error {
	_, err := c.call(Request{Verb: NoteVerb, Note: &call})
	return err
}
