package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// faultsYAML is five listening nodes and a schedule: fixed steps and a
// seeded generator whose faults last long enough (heal-after 5s) for the
// test to find each in force with packets.
const faultsYAML = `
nodes:
  n1: {ip: 172.18.0.1, command: "probe listen 0.0.0.0:9000"}
  n2: {ip: 172.18.0.2, command: "probe listen 0.0.0.0:9000"}
  n3: {ip: 172.18.0.3, command: "probe listen 0.0.0.0:9000"}
  n4: {ip: 172.18.0.4, command: "probe listen 0.0.0.0:9000"}
  n5: {ip: 172.18.0.5, command: "probe listen 0.0.0.0:9000"}
faults:
  seed: 7
  schedule:
    - at: 1s
      do: net isolate n3
    - at: 6s
      do: net fullmesh
  random:
    every: 11s ±1s
    for: 36s
    heal-after: 5s
    pick: [net halves, net isolate random, node pause random, net majorities-ring]
`

// faultsSeq7 is the sequence seed 7 gives faultsYAML: the contract that
// the same seed gives the same faults with the same nodes.
var faultsSeq7 = []string{
	"fault net isolate n3",
	"fault net fullmesh",
	"fault node pause n2",
	"heal node resume n2",
	"fault net isolate n5",
	"heal net fullmesh",
	"fault net halves --seed 6938828042536116",
	"heal net fullmesh",
}

// faultLine is a line of the schedule's in nsrun up's output.
var faultLine = regexp.MustCompile(`faults +[0-9.]+s (fault|heal) +(.*)$`)

// faultSteps are the schedule's faults and heals in out, in order.
func faultSteps(out []string) []string {
	var steps []string
	for _, l := range out {
		if m := faultLine.FindStringSubmatch(l); m != nil {
			steps = append(steps, m[1]+" "+m[2])
		}
	}
	return steps
}

// TestFaultScheduleRepeats: a 5-node run with a fixed seed does exactly
// the expected faults and heals, twice, and while each fault is in force
// the test finds it there with packets (or, for a pause, in the node's
// process state); after each heal, everything is back.
func TestFaultScheduleRepeats(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	for round := 1; round <= 2; round++ {
		r := startRun(t, u, faultsYAML, "faults   0.000s start, seed 7")
		checked := 0
		for checked < len(faultsSeq7) {
			var steps []string
			if !eventually(40*time.Second, func() bool {
				steps = faultSteps(r.out.snapshot())
				return len(steps) > checked
			}) {
				t.Fatalf("round %d: %d steps, want %d:\n%s", round, len(steps), len(faultsSeq7), r.out.all())
			}
			step := steps[checked]
			if step != faultsSeq7[checked] {
				t.Fatalf("round %d: step %d is %q, want %q\nall: %q", round, checked, step, faultsSeq7[checked], steps)
			}
			// Sampled right after the step: the fixed steps are 5s apart
			// and each random fault lasts 5s.
			r.checkInForce(t, step)
			checked++
		}
		if !eventually(20*time.Second, func() bool { return strings.Contains(r.out.all(), "end (done)") }) {
			t.Fatalf("round %d: the schedule did not end:\n%s", round, r.out.all())
		}
		if got := faultSteps(r.out.snapshot()); strings.Join(got, "\n") != strings.Join(faultsSeq7, "\n") {
			t.Fatalf("round %d: steps\n%s\nwant\n%s", round, strings.Join(got, "\n"), strings.Join(faultsSeq7, "\n"))
		}
		_ = r.rc.cmd.Process.Signal(syscall.SIGINT)
		if code := r.rc.wait(); code != 0 {
			t.Fatalf("round %d: exit %d, %s", round, code, r.rc.stderr)
		}
	}
}

// blocked is the run's cut as nsrun net show --json says it.
func (r *liveRun) blocked(t *testing.T) map[[2]string]bool {
	t.Helper()
	var st struct {
		Blocked [][2]string `json:"blocked"`
	}
	if err := json.Unmarshal([]byte(r.netOK(t, "show", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	out := map[[2]string]bool{}
	for _, p := range st.Blocked {
		out[p] = true
	}
	return out
}

// checkInForce checks that step (a line of faultSteps) is in force now.
func (r *liveRun) checkInForce(t *testing.T, step string) {
	t.Helper()
	w := strings.Fields(step)
	switch {
	case w[1] == "node":
		pid := nodeHostPid(t, r.u, r.id, w[3])
		want := map[string]bool{"pause": true, "resume": false}[w[2]]
		if !eventually(2*time.Second, func() bool { return (procStateOf(pid) == "T") == want }) {
			t.Errorf("%s: node %s's state is %q", step, w[3], procStateOf(pid))
		}
	default:
		blocked := r.blocked(t)
		m := r.matrix(t, fiveNodes)
		var cut int
		for _, a := range fiveNodes {
			for _, b := range fiveNodes {
				if a == b {
					continue
				}
				want := !blocked[[2]string{a, b}] && !blocked[[2]string{b, a}]
				if w[2] == "isolate" {
					want = a != w[3] && b != w[3]
				}
				if m[[2]string{a, b}] != want {
					t.Errorf("%s: %s -> %s reached %v, want %v", step, a, b, m[[2]string{a, b}], want)
				}
				if !want {
					cut++
				}
			}
		}
		if (cut == 0) != (w[2] == "fullmesh") {
			t.Errorf("%s: %d pairs cut", step, cut)
		}
	}
}

// TestFaultsCtrlCHeals: nsrun faults --run ID - runs a schedule from
// stdin against a live run; Ctrl-C in its middle stops it and heals
// every fault in force (a pause, a cut, link faults, a stopped node),
// and leaves nothing: no cut, no fault, every node running.
func TestFaultsCtrlCHeals(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	r := startFive(t, u, fiveYAML)
	const sched = `faults:
  schedule:
    - {at: 0s, do: node pause n2}
    - {at: 100ms, do: net isolate n1}
    - {at: 200ms, do: net flaky n3 --loss 100%}
    - {at: 300ms, do: node stop n4}
    - {at: 1h, do: net fullmesh}
`
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := u.nsrun(ctx, "faults", "--run", r.id, "-")
	cmd.Stdin = strings.NewReader(sched)
	rc, out := startBackground(t, cmd, cancel, func(l *lineLog) bool { return strings.Contains(l.all(), "fault node stop n4") })
	pid2 := nodeHostPid(t, u, r.id, "n2")
	if st := procStateOf(pid2); st != "T" {
		t.Errorf("n2 not paused: %q", st)
	}
	m := r.matrix(t, []string{"n1", "n2", "n5"})
	if m[[2]string{"n5", "n1"}] || !m[[2]string{"n5", "n2"}] {
		t.Errorf("with n1 isolated: %v", m)
	}
	_ = rc.cmd.Process.Signal(syscall.SIGINT)
	if code := rc.wait(); code != 130 {
		t.Fatalf("nsrun faults after Ctrl-C: exit %d\n%s\n%s", code, out.all(), rc.stderr)
	}
	for _, h := range []string{"heal  node resume n2", "heal  node start n4", "heal  net fullmesh", "heal  net flaky n3"} {
		if !strings.Contains(out.all(), h) {
			t.Errorf("no %q after Ctrl-C:\n%s", h, out.all())
		}
	}
	if st := procStateOf(pid2); st == "T" {
		t.Error("n2 is still paused")
	}
	// The run's events hold each step, numbered, faults and heals.
	data, err := os.ReadFile(filepath.Join(r.runDir(t), "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e struct {
			Kind, Verb, Text string
			Step             int
		}
		if err := json.Unmarshal([]byte(line), &e); err == nil && e.Kind == "fault-step" && e.Step > 0 {
			steps = append(steps, fmt.Sprintf("%d %s %s", e.Step, e.Text, e.Verb))
		}
	}
	wantSteps := "1 fault node pause n2,2 fault net isolate n1,3 fault net flaky n3 --loss 100%,4 fault node stop n4,5 heal node resume n2,6 heal node start n4,7 heal net fullmesh,8 heal net flaky n3"
	if got := strings.Join(steps, ","); got != wantSteps {
		t.Errorf("fault steps in events.jsonl:\n got %s\nwant %s", got, wantSteps)
	}
	var st struct {
		Blocked [][2]string                `json:"blocked"`
		Faults  map[string]json.RawMessage `json:"faults"`
	}
	if err := json.Unmarshal([]byte(r.netOK(t, "show", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Blocked) != 0 || len(st.Faults) != 0 {
		t.Errorf("left after Ctrl-C: blocked %v, faults %v", st.Blocked, st.Faults)
	}
	// n4 was started again: every node reaches every other.
	if !eventually(20*time.Second, func() bool {
		for _, ok := range r.matrix(t, fiveNodes) {
			if !ok {
				return false
			}
		}
		return true
	}) {
		t.Errorf("not every pair reaches the other after Ctrl-C: %v", r.matrix(t, fiveNodes))
	}
	if left := userProcesses(u, func(argv []string) bool { return len(argv) > 1 && argv[1] == "faults" }); len(left) != 0 {
		t.Errorf("nsrun faults processes left: %v", left)
	}
}

// TestFaultsRefused: bad faults: entries are refused at the file, with
// file:line:col, and start nothing; --faults=false starts the file
// without its schedule.
func TestFaultsRefused(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	// Runs of earlier tests may still be ending: only a folder that was
	// not there before counts.
	before := map[string]bool{}
	for _, d := range u.runDirs() {
		before[d] = true
	}
	head := "nodes:\n  n1: {ip: 172.18.0.1, command: \"sleep 30\"}\n  n2: {ip: 172.18.0.2, command: \"sleep 30\"}\nfaults:\n  schedule:\n"
	for _, tc := range []struct{ steps, want string }{
		{"    - {at: 1s, do: net explode n1}", `nsrun.yaml:6:20: faults.schedule[0].do: "net explode n1": net: unknown verb "explode"`},
		{"    - {at: 1s, do: net flaky n1 --loss 30}", `nsrun.yaml:6:20: faults.schedule[0].do: "net flaky n1 --loss 30": flaky: --loss "30": no % sign`},
		{"    - {at: 1s, do: node pause n9}", `nsrun.yaml:6:20: faults.schedule[0].do: "node pause n9": node pause: no node "n9" in this run`},
		{"    - {at: 1s, do: net isolate n1}\n    - {at: 1s, do: net fullmesh}", `nsrun.yaml:7:12: faults.schedule[1].at: 1s is also the time of step 0`},
		{"    - {at: -1s, do: net fullmesh}", `nsrun.yaml:6:12: faults.schedule[0].at: "-1s" is a negative time`},
	} {
		dir := project(t, map[string]string{"nsrun.yaml": head + tc.steps + "\n"})
		r := u.up(t, dir)
		if r.Code != 125 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("%s:\nexit %d, stderr %q\nwant 125 and %q", tc.steps, r.Code, r.Stderr, tc.want)
		}
	}
	for _, d := range u.runDirs() {
		if !before[d] {
			t.Errorf("run folder left by a refused file: %s", d)
		}
	}
	// --faults=false: the same kind of file, valid, runs without faults.
	yaml := strings.Replace(faultsYAML, "at: 1s", "at: 0s", 1)
	r := startRun(t, u, yaml, "every node is up", "--faults=false")
	time.Sleep(1500 * time.Millisecond)
	if strings.Contains(r.out.all(), "faults ") {
		t.Errorf("--faults=false ran the schedule:\n%s", r.out.all())
	}
	if b := r.blocked(t); len(b) != 0 {
		t.Errorf("--faults=false: blocked %v", b)
	}
	_ = r.rc.cmd.Process.Signal(syscall.SIGINT)
	if code := r.rc.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
}
