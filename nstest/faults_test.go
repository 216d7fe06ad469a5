package nstest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/nstest"
)

// TestRunFaults: a typed schedule runs against the network, the same
// seed gives the same faults, a bad step is refused naming it, and a
// schedule stopped midway heals: the show has no cut left and a is not
// paused.
func TestRunFaults(t *testing.T) {
	needUserNS(t)
	t.Parallel()
	n := nstest.Start(t, `
nodes:
  a: {ip: 172.18.0.11, command: "sleep 1000"}
  b: {ip: 172.18.0.12, command: "sleep 1000"}
  c: {ip: 172.18.0.13, command: "sleep 1000"}
`, nstest.StopTimeout(time.Second))
	sched := nstest.Schedule{
		Seed:  11,
		Steps: []nstest.Step{{At: 0, Do: "net isolate a"}, {At: 100 * time.Millisecond, Do: "net fullmesh"}},
		Random: &nstest.Generator{Every: 200 * time.Millisecond, Jitter: 50 * time.Millisecond, For: time.Second,
			HealAfter: 100 * time.Millisecond, Pick: []string{"net halves", "net isolate random", "node pause random"}},
	}
	lines := func(evs []nstest.ScheduleEvent) string {
		var out []string
		for _, e := range evs {
			if e.Err != "" {
				t.Errorf("%s %s failed: %s", e.Kind, e.Do, e.Err)
			}
			if e.Kind == "fault" || e.Kind == "heal" {
				out = append(out, e.Kind+" "+e.Do)
			}
		}
		return strings.Join(out, "\n")
	}
	first, err := n.RunFaults(context.Background(), sched)
	if err != nil {
		t.Fatal(err)
	}
	second, err := n.RunFaults(context.Background(), sched)
	if err != nil {
		t.Fatal(err)
	}
	if lines(first) != lines(second) || !strings.HasPrefix(lines(first), "fault net isolate a\nfault net fullmesh") {
		t.Fatalf("seed 11 twice:\n%s\n--\n%s", lines(first), lines(second))
	}
	if n.Seed() != 11 {
		t.Errorf("Seed() = %d, want 11", n.Seed())
	}
	// A drawn seed is kept.
	if _, err := n.RunFaults(context.Background(), nstest.Schedule{Steps: []nstest.Step{{Do: "net fullmesh"}}}); err != nil || n.Seed() == 0 || n.Seed() == 11 {
		t.Errorf("drawn seed %d, %v", n.Seed(), err)
	}
	if _, err := n.RunFaults(context.Background(), nstest.Schedule{Steps: []nstest.Step{{Do: "node pause zz"}}}); err == nil || !strings.Contains(err.Error(), `faults.schedule[0].do: "node pause zz": node pause: no node "zz"`) {
		t.Errorf("a bad step: %v", err)
	}
	// Stopped midway: healed.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	evs, err := n.RunFaults(ctx, nstest.Schedule{Steps: []nstest.Step{{Do: "net isolate a"}, {At: 10 * time.Millisecond, Do: "node pause b"}, {At: time.Hour, Do: "net fullmesh"}}})
	if err != context.DeadlineExceeded || !strings.Contains(lines(evs), "heal node resume b\nheal net fullmesh") {
		t.Fatalf("stopped: %v\n%s", err, lines(evs))
	}
	if st, err := n.Show(); err != nil || st.Verb != "fullmesh" || len(st.Blocked) != 0 {
		t.Errorf("after the stop: %+v %v", st, err)
	}
}

// TestFileFaults: a file's faults: section runs once every node is up,
// its node stop is an exit the test expected (no error), and Seed is
// the file's seed.
func TestFileFaults(t *testing.T) {
	needUserNS(t)
	t.Parallel()
	n := nstest.Start(t, `
nodes:
  a: {ip: 172.18.0.11, command: "sleep 1000"}
  b: {ip: 172.18.0.12, command: "sleep 1000"}
faults:
  seed: 9
  schedule:
    - {at: 0s, do: net isolate a}
    - {at: 100ms, do: node stop b}
`, nstest.StopTimeout(time.Second))
	if err := n.Annotate("checking the cut"); err != nil {
		t.Error(err)
	}
	if err := n.Annotate("two\nlines"); err == nil {
		t.Error("Annotate took a control character")
	}
	if n.Seed() != 9 {
		t.Errorf("Seed() = %d, want 9", n.Seed())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := n.Show()
		if err != nil {
			t.Fatal(err)
		}
		evs, _ := n.Events()
		stopped, noted, steps := false, false, 0
		for _, e := range evs {
			stopped = stopped || e.Kind == nstest.NodeStopped && e.Node == "b"
			noted = noted || e.Kind == nstest.Annotation && e.Text == "checking the cut"
			if e.Kind == nstest.FaultStep && e.Verb != "" {
				steps++
			}
		}
		if st.Verb == "isolate" && stopped && noted && steps == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the file's schedule did not run: %+v, events %v", st, evs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
