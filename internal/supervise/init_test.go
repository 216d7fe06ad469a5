package supervise

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/guest"
	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/internal/plan"
)

// members lists the processes of pid namespace ns other than its init.
func members(ns nsID, init int) []int {
	var out []int
	for _, pid := range procPids() {
		if got, err := pidNamespace(pid); err == nil && got == ns && pid != init {
			out = append(out, pid)
		}
	}
	return out
}

// TestNodeInit drives a node whose command runs under its init (PIDNS)
// and starts a daemon (double fork and setsid) and an orphan: the init
// reaps the orphan, pause stops every process of the node (the daemon's
// output stops), resume continues them, and stop leaves no process of the
// node's pid namespace.
func TestNodeInit(t *testing.T) {
	ns, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	ticks := t.TempDir() + "/ticks"
	argv := []string{"sh", "-c", "(setsid sh -c 'while :; do echo t >> " + ticks + "; sleep 0.05; done' &); (sleep 0.1 &); exec sleep 30"}
	exited := make(chan exit, 8)
	n := newNode(plan.Node{Name: "a", Hostname: "a", Command: plan.Command{Argv: argv}}, 0)
	launch := func(n *node) error {
		p, err := guest.Start(guest.Spec{NetNS: ns, Hostname: "a", Argv: n.cfg.Argv, Env: []string{"PATH=" + os.Getenv("PATH")}, Setpgid: true, PIDNS: true})
		if err != nil {
			return err
		}
		n.begin(p, exited, func(int) {})
		return nil
	}
	if err := launch(n); err != nil {
		t.Fatal(err)
	}
	init := n.initPid()
	if init == 0 {
		t.Fatal("the node runs no init")
	}
	pidNS, err := pidNamespace(init)
	if err != nil {
		t.Fatal(err)
	}
	count := func() int { b, _ := os.ReadFile(ticks); return strings.Count(string(b), "t") }
	if !eventuallyTrue(func() bool { return count() > 2 }) {
		t.Fatal("the daemon does not tick")
	}
	// The orphan (sleep 0.1, whose parent subshell exited) is reaped: no
	// zombie is left to the init. (The daemon's own sleep can be a zombie
	// for a moment, until the daemon, its parent, reaps it.)
	time.Sleep(300 * time.Millisecond)
	for _, pid := range members(pidNS, init) {
		if st, parent := procState(pid), procParent(pid); st == "Z" && parent == init {
			t.Errorf("process %d of the node is a zombie left to the init", pid)
		}
	}

	if err := n.do("pause", time.Second, launch); err != nil {
		t.Fatal(err)
	}
	for _, pid := range append(members(pidNS, init), init) {
		// Z: a child (the daemon's sleep) that ended as the pause came,
		// which its stopped parent reaps once resumed; it runs no more.
		if st := procState(pid); st != "T" && st != "Z" {
			t.Errorf("after pause, process %d is %q, want T (or Z)", pid, st)
		}
	}
	before := count()
	time.Sleep(300 * time.Millisecond)
	if after := count(); after != before {
		t.Errorf("the daemon ticked %d times while paused", after-before)
	}
	if err := n.do("resume", time.Second, launch); err != nil {
		t.Fatal(err)
	}
	if !eventuallyTrue(func() bool { return count() > before }) {
		t.Error("the daemon does not tick after resume")
	}

	if err := n.do("stop", 2*time.Second, launch); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, exited, "stop"); !e.held || e.code != 128+15 {
		t.Errorf("stop: exit %+v, want held with 143 (sleep's SIGTERM)", e)
	}
	if left := members(pidNS, 0); len(left) != 0 {
		t.Errorf("processes of the node left after stop: %v", left)
	}
	stopped := count()
	time.Sleep(200 * time.Millisecond)
	if count() != stopped {
		t.Error("the daemon ticks after stop")
	}
}

// procParent is the parent of pid as /proc/PID/stat has it (0 when pid
// is gone).
func procParent(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
