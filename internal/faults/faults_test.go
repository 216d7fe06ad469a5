package faults_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/faults"
	"github.com/nsrun/nsrun/internal/topology"
	"github.com/nsrun/nsrun/internal/verbs"
)

var nodes5 = []string{"n1", "n2", "n3", "n4", "n5"}

// compile reads a faults: section (YAML) as a file would have it.
func compile(t testing.TB, yaml string, nodes []string) (*faults.Schedule, error) {
	t.Helper()
	f, err := topology.ParseFaults("nsrun.yaml", []byte(yaml))
	if err != nil {
		return nil, err
	}
	return faults.Compile("nsrun.yaml", f, nodes, verbs.ParseLine)
}

const issueExample = `faults:
  seed: 42
  start: after-ready
  schedule:
    - at: 2s
      do: net isolate n3
    - at: 5s
      do: net fullmesh
  random:
    every: 3s ±1s
    for: 30s
    heal-after: 1s
    pick: [net halves, net majorities-ring, net isolate random, node pause random, node restart random, net flaky random --loss 30%]
`

func lines(seq []faults.Entry) []string {
	var out []string
	for _, e := range seq {
		h := ""
		if e.Heal {
			h = " (heal)"
		}
		out = append(out, fmt.Sprintf("%v %s%s", e.At, e.Action, h))
	}
	return out
}

func TestSameSeedSameSequence(t *testing.T) {
	s, err := compile(t, issueExample, nodes5)
	if err != nil {
		t.Fatal(err)
	}
	if s.Seed != 42 || !s.SeedGiven || s.AtStart {
		t.Fatalf("seed %d given %v at-start %v", s.Seed, s.SeedGiven, s.AtStart)
	}
	a, err := s.Sequence(42)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.Sequence(42)
	c, _ := s.Sequence(43)
	la, lb, lc := lines(a), lines(b), lines(c)
	if strings.Join(la, "\n") != strings.Join(lb, "\n") {
		t.Fatalf("same seed, two sequences:\n%s\n--\n%s", strings.Join(la, "\n"), strings.Join(lb, "\n"))
	}
	if strings.Join(la, "\n") == strings.Join(lc, "\n") {
		t.Fatal("seeds 42 and 43 gave the same sequence")
	}
	t.Logf("seed 42:\n%s", strings.Join(la, "\n"))
	// The fixed steps are there at their times; every random fault
	// but a restart is healed heal-after later; times stay in [0, for+heal].
	if la[0] != "2s net isolate n3" {
		t.Errorf("first entry %q, want 2s net isolate n3", la[0])
	}
	var faultsN, heals int
	for i, e := range a {
		if e.Heal {
			heals++
			continue
		}
		if strings.Contains(e.Source, "random") {
			faultsN++
			if e.At < 2*time.Second || e.At > 30*time.Second {
				t.Errorf("random fault at %v, outside every 3s±1s for 30s", e.At)
			}
			if strings.Contains(e.Action.String(), "random") {
				t.Errorf("entry %d: %q still says random", i, e.Action)
			}
			if w := e.Action.Words; w[0] == "net" && (w[1] == "halves" || w[1] == "majorities-ring") && !strings.Contains(e.Action.String(), "--seed") {
				t.Errorf("entry %d: shape without a seed: %q", i, e.Action)
			}
		}
	}
	if faultsN < 7 || faultsN > 15 {
		t.Errorf("%d random faults in 30s every 3s±1s", faultsN)
	}
	if heals == 0 {
		t.Error("no heal with heal-after: 1s")
	}
}

func TestHealAfterFollowsEachFault(t *testing.T) {
	s, err := compile(t, "random: {every: 2s, for: 10s, heal-after: 500ms, pick: [node pause random, net flaky random --loss 10% --delay 5ms, net isolate random]}", nodes5)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := s.Sequence(7)
	if err != nil {
		t.Fatal(err)
	}
	if len(seq) != 10 {
		t.Fatalf("%d entries, want 5 faults and 5 heals:\n%s", len(seq), strings.Join(lines(seq), "\n"))
	}
	for i := 0; i < len(seq); i += 2 {
		f, h := seq[i], seq[i+1]
		if f.Heal || !h.Heal || h.At-f.At != 500*time.Millisecond {
			t.Fatalf("entries %d, %d: %v, %v", i, i+1, lines(seq[i:i+1]), lines(seq[i+1:i+2]))
		}
		w := f.Action.Words
		want := map[string]string{"pause": "node resume " + w[len(w)-1], "flaky": "net flaky " + w[2], "isolate": "net fullmesh"}[w[1]]
		if h.Action.String() != want {
			t.Errorf("%q healed by %q, want %q", f.Action, h.Action, want)
		}
	}
}

func TestRefusedAtTheFile(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"schedule: [{at: 1s, do: net explode n1}]", `nsrun.yaml:1:25: faults.schedule[0].do: "net explode n1": net: unknown verb "explode"`},
		{"schedule: [{at: 1s, do: dance n1}]", `nsrun.yaml:1:25: faults.schedule[0].do: "dance n1": write a net or node verb`},
		{"schedule:\n  - at: 1s\n    do: net flaky n1 --loss 30", `nsrun.yaml:3:9: faults.schedule[0].do: "net flaky n1 --loss 30": flaky: --loss "30": no % sign`},
		{"schedule: [{at: 1s, do: net flaky n1 --speed 3}]", `unknown flag --speed`},
		{"schedule: [{at: 1s, do: node pause n9}]", `nsrun.yaml:1:25: faults.schedule[0].do: "node pause n9": node pause: no node "n9" in this run; its nodes: n1, n2, n3, n4, n5`},
		{"schedule: [{at: 1s, do: net isolate n9}]", `"n9"`},
		{"schedule: [{at: 1s, do: net isolate n1}, {at: 1000ms, do: net fullmesh}]", `nsrun.yaml:1:47: faults.schedule[1].at: 1s is also the time of step 0`},
		{"schedule: [{at: -2s, do: net fullmesh}]", `nsrun.yaml:1:17: faults.schedule[0].at: "-2s" is a negative time`},
		{"random: {every: -3s, for: 30s, pick: [net halves]}", `nsrun.yaml:1:17: faults.random.every: "-3s" is a negative time`},
		{"random: {every: 3s, for: 30s, heal-after: -1s, pick: [net halves]}", `faults.random.heal-after: "-1s" is a negative time`},
		{"random: {every: 3s ±1s, for: 30s, heal-after: 2s, pick: [net halves]}", `faults.random.heal-after: 2s: each fault must be healed before the next can come`},
		{"random: {every: 3s, for: 30s, pick: [node pause random --loss 3%]}", `faults.random.pick[0]: "node pause random --loss 3%": node pause: unknown flag --loss`},
		{"random: {every: 3s, for: 30s, pick: [net exec n1 -- true]}", `net exec is no fault`},
		{"seed: 0\nschedule: [{at: 1s, do: net fullmesh}]", `nsrun.yaml:1:7: faults.seed: "0": write a positive whole number`},
		{"start: later\nschedule: [{at: 1s, do: net fullmesh}]", `faults.start: "later"`},
		{"schedule: [{at: 1s, do: net fullmesh --run abc}]", `--run: the schedule acts on its own run`},
		{"seed: 4", `faults: no ` + "`schedule:`"},
	} {
		_, err := compile(t, tc.yaml, nodes5)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.yaml, err, tc.want)
		}
	}
}

func TestNoSeedDrawsOne(t *testing.T) {
	s, err := compile(t, "schedule: [{at: 1s, do: net halves}]", nodes5)
	if err != nil {
		t.Fatal(err)
	}
	if s.SeedGiven || s.Seed == 0 {
		t.Fatalf("seed %d given %v", s.Seed, s.SeedGiven)
	}
}

// fakeClient records the verbs it gets.
type fakeClient struct {
	mu   sync.Mutex
	got  []string
	fail string
}

func (f *fakeClient) Net(c control.NetCall) (string, control.NetState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := c.Verb()
	if c.Flaky != nil {
		v += " " + c.Flaky.Node
	}
	f.got = append(f.got, "net "+v)
	return "", control.NetState{}, nil
}

func (f *fakeClient) Node(c control.NodeCall) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, "node "+c.Action+" "+c.Node)
	if c.Action == f.fail {
		return fmt.Errorf("no")
	}
	return nil
}

func TestStopHealsWhatIsInForce(t *testing.T) {
	s, err := compile(t, `schedule:
  - {at: 0s, do: node pause n2}
  - {at: 10ms, do: net flaky n4 --loss 20%}
  - {at: 20ms, do: node stop n5}
  - {at: 30ms, do: net isolate n1}
  - {at: 1h, do: net fullmesh}
`, nodes5)
	if err != nil {
		t.Fatal(err)
	}
	seq, _ := s.Sequence(s.Seed)
	ctx, cancel := context.WithCancel(context.Background())
	c := &fakeClient{}
	var events []faults.Event
	go func() { time.Sleep(300 * time.Millisecond); cancel() }()
	err = s.Run(ctx, c, seq, true, func(e faults.Event) { events = append(events, e) })
	if err != context.Canceled {
		t.Fatalf("Run: %v, want canceled", err)
	}
	want := "node pause n2,net flaky n4,node stop n5,net isolate,node resume n2,node start n5,net fullmesh,net flaky n4"
	if got := strings.Join(c.got, ","); got != want {
		t.Fatalf("verbs:\n got %s\nwant %s", got, want)
	}
	var kinds []string
	for _, e := range events {
		kinds = append(kinds, e.Kind)
	}
	if got := strings.Join(kinds, ","); got != "faults,fault,fault,fault,fault,heal,heal,heal,heal,faults-end" {
		t.Fatalf("events %s", got)
	}
}

func TestFailedVerbIsReportedAndTheScheduleGoesOn(t *testing.T) {
	s, err := compile(t, "schedule: [{at: 0s, do: node stop n1}, {at: 1ms, do: net halves --seed 3}]", nodes5)
	if err != nil {
		t.Fatal(err)
	}
	seq, _ := s.Sequence(1)
	c := &fakeClient{fail: "stop"}
	var errs []string
	if err := s.Run(context.Background(), c, seq, true, func(e faults.Event) { errs = append(errs, e.Err) }); err != nil {
		t.Fatal(err)
	}
	if len(c.got) != 2 || errs[1] != "no" || errs[2] != "" {
		t.Fatalf("verbs %v, errors %q", c.got, errs)
	}
}
