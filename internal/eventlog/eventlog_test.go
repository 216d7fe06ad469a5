package eventlog

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/control"
)

// TestPublishAfterClose: events are numbered from 1 without gaps, stamped
// in order, written one JSON line each, replayed to late readers, and a
// waiting reader is woken by the next event and by Close.
func TestPublishAfterClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	start := time.Now()
	l, err := Open(path, start)
	if err != nil {
		t.Fatal(err)
	}
	evs, changed, closed := l.After(0)
	if len(evs) != 0 || closed {
		t.Fatalf("empty log: %v %v", evs, closed)
	}
	code := 3
	l.Publish(control.Event{Kind: control.EventNodeStarted, Node: "a", Pid: 7})
	select {
	case <-changed:
	default:
		t.Fatal("a reader waiting on the log was not woken by an event")
	}
	l.Publish(control.Event{Kind: control.EventNodeExited, Node: "a", Code: &code})
	evs, changed, _ = l.After(1)
	if len(evs) != 1 || evs[0].Seq != 2 || evs[0].Kind != control.EventNodeExited || *evs[0].Code != 3 {
		t.Fatalf("after 1: %+v", evs)
	}
	all, _, _ := l.After(0)
	if len(all) != 2 || all[0].Seq != 1 || all[0].Mono > all[1].Mono || all[0].Mono < 0 || all[1].Time.Before(start.Round(0)) {
		t.Fatalf("stamps: %+v", all)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Close did not wake a waiting reader")
	}
	if _, _, closed := l.After(2); !closed {
		t.Error("After says the log is open after Close")
	}
	l.Publish(control.Event{Kind: control.EventRunStopping}) // ignored
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []control.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e control.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, e)
	}
	if len(lines) != 2 || lines[0].Seq != 1 || lines[1].Seq != 2 || lines[1].Node != "a" || *lines[1].Code != 3 || !lines[1].Time.Equal(all[1].Time) || lines[1].Mono != all[1].Mono {
		t.Errorf("events.jsonl: %+v, want %+v", lines, all)
	}
	var nilLog *Log
	nilLog.Publish(control.Event{Kind: control.EventRunUp})
	if _, _, closed := nilLog.After(0); !closed {
		t.Error("a nil log is open")
	}
}
