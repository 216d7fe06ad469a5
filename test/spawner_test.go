package test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// spawnerYAML: two nodes; look reads what a node can of its init (PID 1
// of its own pid namespace).
const spawnerYAML = `nodes:
  look:
    ip: 172.18.0.2
    command: [sh, -c, 'tr "\0" " " < /proc/1/cmdline; echo; if readlink /proc/1/fd/0 > /dev/null 2>&1; then echo "init fds: readable"; else echo "init fds: refused"; fi; echo listening; exec sleep 600']
  idle:
    ip: 172.18.0.3
    command: [sleep, '600']
`

// TestSpawnedInits holds what the spawner promises (userns/launch/
// spawner.c): every node's init is a child of the supervisor, forked by
// the spawner, and holds nothing but its standard files; the spawner
// holds its socket and /dev/null only; no process of the run but the
// supervisor and the spawner holds the spawner's socket, so no node can
// ask it for anything; and a node cannot read its init's descriptors.
func TestSpawnedInits(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	r := startRun(t, u, spawnerYAML, "look  | listening", "--isolated")
	defer func() { r.rc.cancel(); r.rc.wait() }()
	for _, want := range []string{"look  | nsrun-init", "look  | init fds: refused"} {
		if !slices.ContainsFunc(r.out.snapshot(), func(line string) bool { return strings.TrimSpace(line) == want }) {
			t.Errorf("node look printed no %q:\n%s", want, r.out.all())
		}
	}
	sup := firstChild(r.rc.cmd.Process.Pid)
	if sup == 0 {
		t.Fatal("nsrun has no supervisor")
	}
	var spawner int
	var inits []int
	for _, pid := range childrenOf(sup) {
		switch comm := procField(t, pid, "Name"); comm {
		case "nsrun-spawner":
			spawner = pid
		case "nsrun-init":
			inits = append(inits, pid)
			if pp := procField(t, pid, "PPid"); pp != strconv.Itoa(sup) {
				t.Errorf("init %d: parent %s, want the supervisor %d", pid, pp, sup)
			}
		default:
			t.Errorf("the supervisor has a child %d %q: want the spawner and the nodes' inits only", pid, comm)
		}
	}
	if spawner == 0 || len(inits) != 2 {
		t.Fatalf("children of the supervisor: spawner %d, inits %v; want one spawner and 2 inits", spawner, inits)
	}
	fds := fdTargets(t, spawner)
	if len(fds) != 4 || fds[0] != "/dev/null" || fds[1] != "/dev/null" || fds[2] != "/dev/null" || !strings.HasPrefix(fds[3], "socket:") {
		t.Errorf("the spawner's descriptors: %v; want /dev/null on 0-2 and its socket on 3", fds)
	}
	sock := fds[3]
	blocked, err := strconv.ParseUint(procField(t, spawner, "SigBlk"), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range []int{1, 2, 3, 15, 10, 12} { // HUP INT QUIT TERM USR1 USR2
		if blocked&(1<<(sig-1)) == 0 {
			t.Errorf("the spawner does not block signal %d (SigBlk %x)", sig, blocked)
		}
	}
	for _, pid := range inits {
		if fds := fdTargets(t, pid); len(fds) != 3 {
			t.Errorf("init %d holds %v; want its standard files only", pid, fds)
		}
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.TrimRight(string(b), "\x00") != "nsrun-init" {
			t.Errorf("init %d: command line %q, want nsrun-init", pid, b)
		}
	}
	// Every process of the run: only the supervisor and the spawner hold
	// the spawner's socket.
	run := followRun(t, r.rc.cmd.Process.Pid)
	for _, p := range run.live() {
		pid, _ := strconv.Atoi(strings.Fields(p)[0])
		if pid == sup || pid == spawner {
			continue
		}
		for fd, target := range fdTargets(t, pid) {
			if target == sock {
				t.Errorf("process %s holds the spawner's socket (fd %d)", p, fd)
			}
		}
	}
	if t.Failed() {
		return
	}
	// Stopped, the run leaves nothing: the spawner ends with it.
	r.rc.cancel()
	r.rc.wait()
	if !eventually(5*time.Second, func() bool { return len(run.live()) == 0 }) {
		t.Errorf("left running after the stop: %q", run.live())
	}
}

// childrenOf lists the children of every thread of pid.
func childrenOf(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// procField is the value of one field of /proc/PID/status.
func procField(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, name)
	return ""
}

// fdTargets maps each open descriptor of pid to what it points at.
func fdTargets(t *testing.T, pid int) map[int]string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("descriptors of %d: %v", pid, err)
	}
	out := map[int]string{}
	for _, e := range ents {
		fd, _ := strconv.Atoi(e.Name())
		if target, err := os.Readlink(dir + "/" + e.Name()); err == nil {
			out[fd] = target
		}
	}
	return out
}

// TestSpawnerFallback: the spawner can be made to refuse, and a node
// start must not fail for it. A node of the user's can fill the kernel's
// count of the user's descriptors in flight (SCM_RIGHTS messages nobody
// reads; the kernel caps them per user, not per process), after which
// every request to the spawner is refused (ETOOMANYREFS); and a process
// of the run's user may kill the spawner. In both cases a node that
// restarts is started as before the spawner (fork and exec of the init),
// and the dead spawner is reaped, not left a zombie.
func TestSpawnerFallback(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	trigger := filepath.Join(binDir, fmt.Sprintf("spawner-hold-%d", os.Getpid()))
	t.Cleanup(func() { os.Remove(trigger) })
	yaml := `nodes:
  hold:
    ip: 172.18.0.2
    command: [sh, -c, 'echo waiting; while [ ! -e ` + trigger + ` ]; do sleep 0.05; done; exec probe hold-inflight']
  flap:
    ip: 172.18.0.3
    restart: always
    command: [sh, -c, 'echo up; sleep 0.3; exit 1']
`
	r := startRun(t, u, yaml, "hold  | waiting", "--isolated")
	defer func() { r.rc.cancel(); r.rc.wait() }()
	restartsAfter := func(mark int) bool {
		lines := r.out.snapshot()
		for _, l := range lines[min(mark, len(lines)):] {
			if strings.Contains(l, "restart failed") {
				t.Fatalf("a node failed to restart:\n%s", r.out.all())
			}
			if strings.HasPrefix(l, "nsrun | flap restarted") {
				return true
			}
		}
		return false
	}
	// 1. The user's descriptors in flight are used up.
	if err := os.WriteFile(trigger, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !eventually(20*time.Second, func() bool {
		return slices.ContainsFunc(r.out.snapshot(), func(l string) bool { return strings.HasPrefix(l, "hold  | holding ") })
	}) {
		t.Fatalf("the node did not fill the descriptors in flight:\n%s", r.out.all())
	}
	if mark := len(r.out.snapshot()); !eventually(10*time.Second, func() bool { return restartsAfter(mark) }) {
		t.Fatalf("flap did not restart while the spawner was refused:\n%s", r.out.all())
	}
	// 2. The spawner is killed.
	sup := firstChild(r.rc.cmd.Process.Pid)
	spawner := 0
	for _, pid := range childrenOf(sup) {
		if procField(t, pid, "Name") == "nsrun-spawner" {
			spawner = pid
		}
	}
	if spawner == 0 {
		t.Fatalf("the supervisor %d has no spawner", sup)
	}
	if err := syscall.Kill(spawner, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if mark := len(r.out.snapshot()); !eventually(10*time.Second, func() bool { return restartsAfter(mark) }) {
		t.Fatalf("flap did not restart once the spawner was gone:\n%s", r.out.all())
	}
	if !eventually(5*time.Second, func() bool { _, err := os.Stat(fmt.Sprintf("/proc/%d", spawner)); return err != nil }) {
		t.Errorf("the dead spawner %d was not reaped (state %s)", spawner, procField(t, spawner, "State"))
	}
}
