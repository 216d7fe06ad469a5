// Package eventlog is a run's log of events: it numbers and stamps the
// events the supervisor publishes (control.Event), appends each to a file
// as one line of JSON (events.jsonl in the run folder), keeps them all
// for subscribers that come late, and wakes the subscribers that wait.
package eventlog

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nsrun/nsrun/internal/control"
)

// Log is the events of one run. Its methods may be called from any
// goroutine; a nil *Log publishes nothing.
type Log struct {
	start time.Time // the run's start, with its monotonic reading

	mu      sync.Mutex
	events  []control.Event
	file    *os.File
	werr    error         // the first failed write, after which the file is left alone
	changed chan struct{} // closed (and replaced) at every event and at Close
	closed  bool
}

// Open starts the log of a run that started at start (a time.Now() of
// this process, which carries the monotonic clock), writing to the file
// at path (created; mode 0600).
func Open(path string, start time.Time) (*Log, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create the run's event log: %w", err)
	}
	return &Log{start: start, file: f, changed: make(chan struct{})}, nil
}

// Publish numbers e, stamps it with the wall clock and the monotonic time
// since the run started, appends it to the file and wakes the
// subscribers; it returns e as published. After Close it does nothing.
func (l *Log) Publish(e control.Event) control.Event {
	if l == nil {
		return e
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return e
	}
	now := time.Now()
	e.Seq = uint64(len(l.events)) + 1
	e.Time, e.Mono = now.Round(0), now.Sub(l.start)
	l.events = append(l.events, e)
	if l.werr == nil {
		b, err := json.Marshal(e)
		if err == nil {
			_, err = l.file.Write(append(b, '\n'))
		}
		l.werr = err
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return e
}

// After returns the events after sequence number seq, a channel that
// closes at the next event (or at Close), and whether the log is closed
// (no event will follow those returned).
func (l *Log) After(seq uint64) (events []control.Event, changed <-chan struct{}, closed bool) {
	if l == nil {
		return nil, nil, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq < uint64(len(l.events)) {
		events = append(events, l.events[seq:]...)
	}
	return events, l.changed, l.closed
}

// Close ends the log: subscribers get what is left and their end; the
// file is closed.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	close(l.changed)
	err := l.file.Close()
	if l.werr != nil {
		err = fmt.Errorf("write the run's event log: %w", l.werr)
	}
	return err
}
