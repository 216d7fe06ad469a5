package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/control"
)

// eventsYAML is three nodes started one after the other (depends_on), so
// that their events come in one order: c exits with code 3 once the file
// EXIT exists.
const eventsYAML = `
nodes:
  a: {ip: 172.18.0.2, command: [sleep, "600"]}
  b: {ip: 172.18.0.3, command: [sleep, "600"], depends_on: [a]}
  c: {ip: 172.18.0.4, command: [sh, -c, "while [ ! -e EXIT ]; do sleep 0.05; done; exit 3"], depends_on: [b]}
`

// TestEvents: a 3-node run with a stop, a pause, an isolate and an exit,
// then Ctrl-C, publishes exactly the sequence docs/protocol.md documents,
// to a subscriber that followed from the start (nsrun events --follow,
// which ends with the run), to a late reader, and in events.jsonl; every
// event has both timestamps, and the monotonic one never goes back.
func TestEvents(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	trigger, err := os.MkdirTemp(binDir, "events-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(trigger)
	if err := os.Chmod(trigger, 0o755); err != nil {
		t.Fatal(err)
	}
	exitFile := filepath.Join(trigger, "exit-c")
	r := startRun(t, u, strings.Replace(eventsYAML, "EXIT", exitFile, 1), "nsrun | every node is up")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	follow := u.nsrun(ctx, "events", "--run", r.id, "--json", "--follow")
	out, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var followErr strings.Builder
	follow.Stderr = &followErr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	followed := make(chan []control.Event, 1)
	go func() {
		var evs []control.Event
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e control.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("nsrun events --json: %q: %v", sc.Text(), err)
			}
			evs = append(evs, e)
		}
		followed <- evs
	}()

	node := func(verb, name string) {
		t.Helper()
		if res := run(t, u.nsrun(ctx, "node", verb, "--run", r.id, name)); res.Code != 0 {
			t.Fatalf("node %s %s: %d %s", verb, name, res.Code, res.Stderr)
		}
	}
	events := func() []control.Event {
		t.Helper()
		var evs []control.Event
		for _, line := range strings.Split(strings.TrimSpace(nsrunOK(t, u, "events", "--run", r.id, "--json")), "\n") {
			var e control.Event
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("nsrun events --json: %q: %v", line, err)
			}
			evs = append(evs, e)
		}
		return evs
	}
	node("stop", "a")
	node("pause", "b")
	r.netOK(t, "isolate", "c")
	if err := os.WriteFile(exitFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !eventually(10*time.Second, func() bool { evs := events(); return evs[len(evs)-1].Kind == control.EventNodeExited }) {
		t.Fatalf("c's exit is not among the events: %+v", events())
	}
	late := events()
	jsonl, err := os.ReadFile(filepath.Join(r.runDir(t), "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	_ = r.rc.cmd.Process.Signal(os.Interrupt)
	if code := r.rc.wait(); code != 0 {
		t.Errorf("exit %d after Ctrl-C", code)
	}
	var all []control.Event
	select {
	case all = <-followed:
	case <-time.After(30 * time.Second):
		t.Fatal("nsrun events --follow did not end with the run")
	}
	if err := follow.Wait(); err != nil {
		t.Errorf("nsrun events --follow: %v: %s", err, followErr.String())
	}

	// The sequence, as docs/protocol.md lists it for this run.
	want := []string{
		"node-started a", "node-ready a",
		"node-started b", "node-ready b",
		"node-started c", "node-ready c",
		"run-up",
		"node-exited a 143", "node-stopped a",
		"node-paused b",
		"net isolate",
		"node-exited c 3",
		"run-stopping interrupt",
		"node-exited b 143",
	}
	say := func(evs []control.Event) []string {
		var out []string
		for _, e := range evs {
			s := string(e.Kind)
			if e.Node != "" {
				s += " " + e.Node
			}
			if e.Code != nil {
				s += fmt.Sprintf(" %d", *e.Code)
			}
			if e.Verb != "" {
				s += " " + e.Verb
			}
			if e.Kind == control.EventRunStopping {
				s += " " + e.Text
			}
			out = append(out, s)
		}
		return out
	}
	if got := say(all); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events followed from the start:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var mono time.Duration
	for i, e := range all {
		if e.Seq != uint64(i+1) || e.Mono < mono || e.Time.IsZero() || time.Since(e.Time) > 5*time.Minute {
			t.Errorf("event %d: seq %d, mono %s after %s, time %s", i+1, e.Seq, e.Mono, mono, e.Time)
		}
		mono = e.Mono
		if e.Kind == control.EventNodeStarted && e.Pid == 0 {
			t.Errorf("%+v: no pid", e)
		}
	}
	if st := all[10].Net; st == nil || st.Partition.Verb != "isolate" || fmt.Sprint(st.Partition.Clusters) != "[[a b]]" {
		t.Errorf("isolate's state: %+v", all[10].Net)
	}
	// A late reader, and the file, have the same events as the follower.
	n := len(want) - 2 // up to c's exit
	if got := say(late); strings.Join(got, "\n") != strings.Join(want[:n], "\n") {
		t.Errorf("nsrun events after c's exit:\n%s", strings.Join(got, "\n"))
	}
	lines := strings.Split(strings.TrimSpace(string(jsonl)), "\n")
	if len(lines) != n {
		t.Fatalf("events.jsonl has %d lines, want %d:\n%s", len(lines), n, jsonl)
	}
	for i, line := range lines {
		var e control.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Seq != all[i].Seq || e.Kind != all[i].Kind || !e.Time.Equal(all[i].Time) || e.Mono != all[i].Mono {
			t.Errorf("events.jsonl line %d: %s (%v), followed %+v", i+1, line, err, all[i])
		}
	}
}
