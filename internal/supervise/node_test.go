package supervise

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/guest"
	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/internal/plan"
)

func waitExit(t *testing.T, exited <-chan exit, what string) exit {
	t.Helper()
	select {
	case e := <-exited:
		return e
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no exit reported", what)
	}
	return exit{}
}

// TestNodeLife drives a node's process through its verbs against the
// kernel, in namespaces of its own: pause and resume stop and continue
// the whole process group, stop holds the node (its exit says so), start
// and restart begin a new process in the same network namespace, a
// process that ignores SIGTERM is killed after the timeout, and the run's
// stop marks a node it had to kill.
func TestNodeLife(t *testing.T) {
	ns, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	nsIno := func(pid int) string { l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); return l }
	want, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", ns.Fd()))

	exited := make(chan exit, 32)
	ready := t.TempDir() + "/ready"
	// The node says when its shell has set its trap.
	argv := []string{"sh", "-c", "trap 'exit 3' TERM; touch " + ready + "; sleep 30 & wait"}
	n := newNode(plan.Node{Name: "a", Hostname: "a", Command: plan.Command{Argv: argv}}, 0)
	launch := func(n *node) error {
		p, err := guest.Start(guest.Spec{NetNS: ns, Hostname: "a", Argv: n.cfg.Argv, Env: []string{"PATH=" + os.Getenv("PATH")}, Setpgid: true})
		if err != nil {
			return err
		}
		n.begin(p, exited, func(int) {})
		return nil
	}
	if n.running() || n.pid() != 0 {
		t.Fatal("a node runs before it was started")
	}
	if err := launch(n); err != nil {
		t.Fatal(err)
	}
	if !eventuallyTrue(func() bool { _, err := os.Stat(ready); return err == nil }) {
		t.Fatal("the node's shell did not start")
	}
	first := n.pid()
	if !n.running() || nsIno(first) != want {
		t.Fatalf("started: running %v, netns %s, want %s", n.running(), nsIno(first), want)
	}

	if err := n.do("pause", time.Second, launch); err != nil {
		t.Fatal(err)
	}
	if !eventuallyTrue(func() bool { return procState(first) == "T" }) {
		t.Errorf("paused: state %q", procState(first))
	}
	if err := n.do("resume", time.Second, launch); err != nil {
		t.Fatal(err)
	}
	if !eventuallyTrue(func() bool { return procState(first) != "T" }) {
		t.Errorf("resumed: state %q", procState(first))
	}

	// Stop a paused node: it must still hear SIGTERM.
	_ = n.do("pause", time.Second, launch)
	if err := n.do("stop", 5*time.Second, launch); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, exited, "stop"); !e.held || e.code != 3 || e.n != n {
		t.Errorf("stop: exit %+v, want held with code 3", e)
	}
	if n.running() || n.exitCode() != 3 {
		t.Errorf("stopped: running %v, code %d", n.running(), n.exitCode())
	}
	if err := n.do("pause", time.Second, launch); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("pause of a stopped node: %v", err)
	}

	_ = os.Remove(ready)
	if err := n.do("start", time.Second, launch); err != nil {
		t.Fatal(err)
	}
	if !eventuallyTrue(func() bool { _, err := os.Stat(ready); return err == nil }) {
		t.Fatal("the node's shell did not start again")
	}
	second := n.pid()
	if second == first || !n.running() || nsIno(second) != want {
		t.Fatalf("started again: pid %d (was %d), running %v, netns %s", second, first, n.running(), nsIno(second))
	}
	if err := n.do("start", time.Second, launch); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("start of a running node: %v", err)
	}
	_ = os.Remove(ready)
	if err := n.do("restart", 5*time.Second, launch); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, exited, "restart"); !e.held || e.code != 3 {
		t.Errorf("restart: the old process's exit %+v is not held", e)
	}
	third := n.pid()
	if !eventuallyTrue(func() bool { _, err := os.Stat(ready); return err == nil }) {
		t.Fatal("the restarted shell did not start")
	}
	if third == second || !n.running() {
		t.Fatalf("restarted: pid %d (was %d), running %v", third, second, n.running())
	}
	if err := n.do("kill", time.Second, launch); err == nil {
		t.Error("an unknown action was carried out")
	}

	// A process that ignores SIGTERM: killed after the timeout.
	stubborn := newNode(plan.Node{Name: "b", Command: plan.Command{Argv: []string{"sh", "-c", "trap '' TERM; sleep 30 & wait; wait"}}}, 1)
	if err := launch(stubborn); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the shell set its trap
	start := time.Now()
	stubborn.stop(300 * time.Millisecond)
	if e := waitExit(t, exited, "stubborn stop"); e.code != 128+9 || !e.held || time.Since(start) < 300*time.Millisecond {
		t.Errorf("stop of a process ignoring SIGTERM: exit %+v after %s", e, time.Since(start))
	}

	// The run's stop: SIGTERM to every node, SIGKILL at the deadline.
	ends := newNode(plan.Node{Name: "c", Command: plan.Command{Argv: []string{"sh", "-c", "trap '' TERM; sleep 30 & wait; wait"}}}, 2)
	if err := launch(ends); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	_ = ends.signal(15)
	ends.end(time.After(200 * time.Millisecond))
	if !ends.wasKilled() || ends.running() {
		t.Errorf("end: killed %v, running %v", ends.wasKilled(), ends.running())
	}
	_ = n.signal(15) // it exits by itself
	n.end(time.After(5 * time.Second))
	if n.wasKilled() || n.running() {
		t.Errorf("a node that ended by itself: killed %v, running %v", n.wasKilled(), n.running())
	}
	// The run's kill (endAll at once): nodes that already ended, then
	// one that runs; every one is waited for or killed, none blocks.
	var all []*node
	for i := range 8 {
		gone := newNode(plan.Node{Name: fmt.Sprintf("g%d", i), Command: plan.Command{Argv: []string{"true"}}}, 4+i)
		if err := launch(gone); err != nil {
			t.Fatal(err)
		}
		_, done := gone.process()
		<-done
		all = append(all, gone)
	}
	live := newNode(plan.Node{Name: "live", Command: plan.Command{Argv: []string{"sleep", "30"}}}, 12)
	if err := launch(live); err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() { endAll(append(all, live), time.Now()); close(ended) }()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		live.kill()
		t.Fatal("endAll blocked on a node after ended ones")
	}
	if !live.wasKilled() || live.running() {
		t.Errorf("endAll: the running node: killed %v, running %v", live.wasKilled(), live.running())
	}
	// The deadline had passed, but the nodes that ended by themselves
	// were not killed: nsrun up's exit code (1 when a node had to be
	// killed) must not depend on which ready channel select picked.
	for _, gone := range all {
		if gone.wasKilled() {
			t.Errorf("endAll: node %s ended by itself, but is marked killed", gone.cfg.Name)
		}
	}
	// A node whose first start failed: waiting for it never blocks.
	never := newNode(plan.Node{Name: "d"}, 3)
	never.failedFirstStart()
	if _, done := never.process(); done == nil {
		t.Fatal("no done channel")
	} else {
		<-done
	}
}

func eventuallyTrue(cond func() bool) bool {
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
