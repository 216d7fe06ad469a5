package test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestUpReadyInterrupted: while `nsrun up` waits for a node's ready check
// (the long form, with a timeout of 2 minutes), it says every few seconds
// what it waits for, and Ctrl-C or SIGTERM ends the wait at once: the
// started node is stopped, nsrun exits with 128+N, and nothing is left.
func TestUpReadyInterrupted(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			marker := fmt.Sprintf("%d", 410000+time.Now().UnixNano()%100000)
			dir := project(t, map[string]string{"nsrun.yaml": `
nodes:
  slow:
    ip: 172.18.0.2
    command: sleep ` + marker + `
    ready: {check: tcp:9999, timeout: 2m}
  after:
    ip: 172.18.0.3
    depends_on: [slow]
    command: echo never
`})
			rc, out := startUp(t, u, dir, "slow waiting for tcp:9999 (172.18.0.2) to accept: 5s of 2m0s", "--timeout", "2")
			if len(processesOf(u, "sleep "+marker)) != 1 {
				t.Errorf("the node's process does not run: %v", processesOf(u, "sleep "+marker))
			}
			sent := time.Now()
			_ = rc.cmd.Process.Signal(sig)
			code := rc.wait()
			if took := time.Since(sent); took > 5*time.Second {
				t.Errorf("nsrun up took %s to end after %s", took, sig)
			}
			if code != 128+int(sig) {
				t.Errorf("exit %d after %s, want %d\n%s\n%s", code, sig, 128+int(sig), out.all(), rc.stderr)
			}
			if strings.Contains(out.all(), "never") || strings.Contains(out.all(), "after started") {
				t.Errorf("a node that depends on the interrupted one started:\n%s", out.all())
			}
			if left := processesOf(u, "sleep "+marker); len(left) != 0 {
				t.Errorf("the node's process survived: %v", left)
			}
			if left := nsrunProcesses(u); len(left) != 0 {
				t.Errorf("nsrun processes left: %v", left)
			}
			if left := u.runDirs(); len(left) != 0 {
				t.Errorf("run folders left: %v", left)
			}
		})
	}
}

// TestUpReadyTimeout: the file's ready timeout is the one that applies,
// and the failure says how to wait longer.
func TestUpReadyTimeout(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	dir := project(t, map[string]string{"nsrun.yaml": `
nodes:
  slow: {ip: 172.18.0.2, command: sleep 600, ready: {check: tcp:9999, timeout: 2s}}
`})
	start := time.Now()
	r := u.up(t, dir)
	if took := time.Since(start); r.Code != 125 || took > 15*time.Second ||
		!strings.Contains(r.Stderr, `node "slow": tcp:9999 did not accept within 2s (to wait longer, write ready: {check: tcp:9999, timeout: 5m})`) {
		t.Errorf("exit %d after %s, stderr %q", r.Code, took, r.Stderr)
	}
	if left := u.runDirs(); len(left) != 0 {
		t.Errorf("run folders left: %v", left)
	}
	// A bad timeout is refused at the file, with line and column.
	bad := project(t, map[string]string{"nsrun.yaml": "nodes:\n  a:\n    ip: 172.18.0.2\n    ready: {check: tcp:80, timeout: soon}\n"})
	if r := u.up(t, bad, "--dry-run"); r.Code != 125 || !strings.Contains(r.Stderr, `nsrun.yaml:4:37: nodes.a.ready.timeout: "soon": write a duration`) {
		t.Errorf("bad timeout: exit %d, %q", r.Code, r.Stderr)
	}
	// A ready check on a node without a command, which the run would
	// leave out, is refused by --dry-run and by the run alike.
	idle := project(t, map[string]string{"nsrun.yaml": "nodes:\n  a:\n    ip: 172.18.0.2\n    ready: tcp:80\n"})
	for _, args := range [][]string{{"--dry-run"}, nil} {
		if r := u.up(t, idle, args...); r.Code != 125 || !strings.Contains(r.Stderr, "nsrun.yaml:4:12: nodes.a.ready: the node has no command") {
			t.Errorf("up %v: ready without a command: exit %d, %q", args, r.Code, r.Stderr)
		}
	}
}

// TestUpIPv6OnlyReady: a node of an IPv6-only subnet with a ready check
// comes up (the check dials its IPv6 address), and a node that depends on
// it reaches it by name.
func TestUpIPv6OnlyReady(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	dir := project(t, map[string]string{"nsrun.yaml": `
subnets:
  v6only: "fd00:6::/64"
nodes:
  srv:
    ip6: "fd00:6::5"
    command: probe listen [::]:8000
    ready: tcp:8000
  client:
    ip6: "fd00:6::6"
    depends_on: [srv]
    command: probe dial srv:8000
`})
	r := u.up(t, dir, "--exit-code-from", "client", "--timeout", "2")
	if r.Code != 0 || !strings.Contains(r.Stdout, "srv ready (tcp:8000 accepts)") || !strings.Contains(r.Stdout, "client | ok srv [fd00:6::6]:") {
		t.Errorf("exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if strings.Contains(r.Stderr, "panic") {
		t.Errorf("nsrun panicked:\n%s", r.Stderr)
	}
	if left := u.runDirs(); len(left) != 0 {
		t.Errorf("run folders left: %v", left)
	}
	// A port published from a node of the IPv6-only subnet: the host's
	// 127.0.0.1 leads to its IPv6 address.
	port := freePort(t)
	dir = project(t, map[string]string{"nsrun.yaml": fmt.Sprintf(`
subnets:
  v6only: "fd00:6::/64"
nodes:
  srv: {ip6: "fd00:6::5", command: "probe listen [::]:8000", ready: tcp:8000, ports: ["%d:8000"]}
`, port)})
	rc, out := startUp(t, u, dir, "every node is up", "--timeout", "2")
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatalf("published port of an IPv6-only node: %v\n%s", err, out.all())
	}
	buf := make([]byte, 100)
	n, _ := c.Read(buf)
	c.Close()
	if !strings.HasPrefix(string(buf[:n]), "srv [fd00:6::fe]:") {
		t.Errorf("published port answered %q", buf[:n])
	}
	_ = rc.cmd.Process.Signal(syscall.SIGINT)
	if code := rc.wait(); code != 0 {
		t.Errorf("exit %d after Ctrl-C: %s", code, rc.stderr)
	}
}

// TestUpAbortOnExitCode: --abort-on-exit stops every node when one exits
// and exits with that node's code (the others' SIGTERM codes do not
// count); when it exits 0, so does nsrun up.
func TestUpAbortOnExitCode(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	for _, code := range []int{7, 0} {
		dir := project(t, map[string]string{"nsrun.yaml": fmt.Sprintf(`
nodes:
  long: {ip: 172.18.0.2, command: sleep 600}
  short: {ip: 172.18.0.3, command: "sh -c 'sleep 0.5; exit %d'"}
`, code)})
		r := u.up(t, dir, "--abort-on-exit", "--timeout", "2")
		if r.Code != code || !strings.Contains(r.Stdout, fmt.Sprintf("short exited with code %d", code)) {
			t.Errorf("short exits %d: nsrun up exit %d\n%s\n%s", code, r.Code, r.Stdout, r.Stderr)
		}
	}
}

// TestOrphansReaped: a process whose parent exits is re-parented to the
// node's init, which reaps it: no zombie is left (issue 21: the run's
// PID 1 never reaped, and every orphan stayed a zombie).
func TestOrphansReaped(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	r := run(t, u.nsrun(context.Background(), "--", "sh", "-c", "(sleep 0.2 &); sleep 1; ps -eo pid,ppid,stat,comm"))
	if r.Code != 0 || !strings.Contains(r.Stdout, " ps") {
		t.Fatalf("exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n")[1:] {
		if f := strings.Fields(line); len(f) == 4 && strings.HasPrefix(f[2], "Z") {
			t.Errorf("a zombie is left: %q\n%s", line, r.Stdout)
		}
	}
	// The node's own pid namespace: its init is PID 1, and only the
	// node's processes are listed.
	if !strings.Contains(r.Stdout, "      1       0 S") || !strings.Contains(r.Stdout, "nsrun-init") {
		t.Errorf("PID 1 of the node is not nsrun's init:\n%s", r.Stdout)
	}
}

// TestNodeDaemonStopped: a node whose command starts a daemon (double
// fork and setsid: its own session and process group, its parent gone)
// is all of its processes. node pause freezes the daemon too (its output
// stops), resume brings it back, restart leaves one copy, not two, and
// node stop leaves no process of the node, proved in /proc. net exec
// into the node runs in the node's pid namespace.
func TestNodeDaemonStopped(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	marker := fmt.Sprintf("%d", 420000+time.Now().UnixNano()%100000)
	daemon := "while :; do echo tick-" + marker + "; sleep 0.1; done"
	r := startRun(t, u, `
nodes:
  d:
    ip: 172.18.0.2
    command: ["sh", "-c", "(setsid sh -c '`+daemon+`' &); exec sleep `+marker+`"]
  other: {ip: 172.18.0.3, command: "sleep 600"}
  loop: {ip: 172.18.0.4, command: "sh -c 'while :; do sleep 0.02; done'"}
`, "d     | tick-"+marker)
	nodeVerb := func(verb, name string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if res := run(t, u.nsrun(ctx, "node", verb, name, "--run", r.id)); res.Code != 0 {
			t.Fatalf("node %s %s: %d %s", verb, name, res.Code, res.Stderr)
		}
	}
	node := func(verb string) { t.Helper(); nodeVerb(verb, "d") }
	// Restarts of a shell loop leave no zombie with the run's PID 1 (the
	// supervisor) for a parent: a loop's last sleep, orphaned as its
	// shell dies first, is its node's to reap (issue 21 saw one zombie
	// per restart).
	sup := childOf(r.rc.cmd.Process.Pid)
	for range 4 {
		nodeVerb("restart", "loop")
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if z := zombiesOf(sup); len(z) != 0 {
		t.Errorf("zombies of the run's PID 1 (%d) after restarts of a shell loop: %v", sup, z)
	}
	daemons := func() []int { return processesOf(u, "sh -c "+daemon) }
	ticks := func() int { return strings.Count(r.out.all(), "tick-"+marker) }
	if d := daemons(); len(d) != 1 {
		t.Fatalf("daemons: %v, want one", d)
	}
	first := daemons()[0]
	// The daemon left the node's command's session and process group.
	if sid, _ := procStatField(first, 6); sid != strconv.Itoa(first) {
		t.Errorf("the daemon's session is %s, want its own (%d)", sid, first)
	}

	// net exec joins the node's pid namespace: it sees the node's
	// processes (its init as PID 1, the daemon) and no other node's.
	if res := r.exec(t, "d", "ps", "-eo", "pid,args"); res.Code != 0 || !strings.Contains(res.Stdout, "      1 nsrun") ||
		!strings.Contains(res.Stdout, daemon) || strings.Contains(res.Stdout, "sleep 600") {
		t.Errorf("ps in node d: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}

	node("pause")
	if st := procStateOf(first); st != "T" {
		t.Errorf("the daemon's state after node pause is %q, want T (stopped)", st)
	}
	before := ticks()
	time.Sleep(700 * time.Millisecond)
	if after := ticks(); after != before {
		t.Errorf("the daemon ticked %d times while the node was paused", after-before)
	}
	node("resume")
	if !eventually(5*time.Second, func() bool { return ticks() > before }) {
		t.Error("the daemon does not tick after node resume")
	}

	node("restart")
	if !eventually(10*time.Second, func() bool { d := daemons(); return len(d) == 1 && d[0] != first }) {
		t.Errorf("daemons after node restart: %v (the first was %d); want one new one", daemons(), first)
	}
	time.Sleep(300 * time.Millisecond)
	if d := daemons(); len(d) != 1 {
		t.Errorf("daemons after node restart: %v, want one", d)
	}

	node("stop")
	if d := daemons(); len(d) != 0 {
		t.Errorf("daemons after node stop: %v", d)
	}
	if left := processesOf(u, "sleep "+marker); len(left) != 0 {
		t.Errorf("the node's command survived node stop: %v", left)
	}
	stopped := ticks()
	time.Sleep(500 * time.Millisecond)
	if ticks() != stopped {
		t.Error("the node still ticks after node stop")
	}
	if len(processesOf(u, "sleep 600")) != 1 {
		t.Errorf("node stop d reached the other node: %v", processesOf(u, "sleep 600"))
	}
	_ = r.rc.cmd.Process.Signal(syscall.SIGINT)
	if code := r.rc.wait(); code != 0 {
		t.Errorf("exit %d after Ctrl-C; stderr %s", code, r.rc.stderr)
	}
}

// zombiesOf lists the zombie children of ppid.
func zombiesOf(ppid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, _ := procStatField(pid, 3); st != "Z" {
			continue
		}
		if pp, _ := procStatField(pid, 4); pp == strconv.Itoa(ppid) {
			out = append(out, pid)
		}
	}
	return out
}

// procStatField returns field n (1-based, as in proc(5)) of
// /proc/PID/stat.
func procStatField(pid, n int) (string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := strings.LastIndexByte(string(b), ')')
	if err != nil || i < 0 {
		return "", false
	}
	f := strings.Fields(string(b)[i+1:])
	if n-3 < 0 || n-3 >= len(f) {
		return "", false
	}
	return f[n-3], true
}

// procStateOf is the state letter of pid, "" when it is gone.
func procStateOf(pid int) string {
	s, _ := procStatField(pid, 3)
	return s
}

// TestEarlySignal: a signal in a run's first milliseconds ends it, as at
// any later moment. The supervisor is PID 1 of the run's pid namespace
// (and a node's init of the node's), and the kernel drops a signal to
// such a process while the signal's action is the default; from the Go
// runtime's start until os/signal listens, Go's default ends the process
// with 2; and at a terminal the supervisor drops Ctrl-C, which the
// command gets itself, but only once it runs. So a Ctrl-C there was lost
// (the run came up and kept running: seen by hand, at 0 to 10 ms, in
// about one try in three) or ended nsrun with 2. Each case sends the
// signal to nsrun's process group, as `kill -- -PGID` does, or types
// Ctrl-C at nsrun's terminal, 0, 1, 2, ... ms after the start, for
// `nsrun up` and `nsrun -- CMD`: nsrun exits within seconds with 128+N
// (up: 0 when every node was up first, as after a later Ctrl-C), and
// leaves no process or run folder behind.
func TestEarlySignal(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	marker := fmt.Sprintf("%d", 420000+time.Now().UnixNano()%100000)
	dir := project(t, map[string]string{"nsrun.yaml": fmt.Sprintf(`
nodes:
  a: {ip: 172.18.0.1, command: [sleep, '%[1]s']}
  b: {ip: 172.18.0.2, command: [sleep, '%[1]s']}
  c: {ip: 172.18.0.3, command: [sleep, '%[1]s']}
`, marker)})
	dirsBefore := len(u.runDirs())
	type how struct {
		name     string
		sig      syscall.Signal
		terminal bool // Ctrl-C typed at nsrun's terminal, not sent with kill
	}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"up", []string{"up", "-f", dir + "/nsrun.yaml"}},
		{"command", []string{"--", "sleep", marker}},
	} {
		for _, h := range []how{{"SIGINT", syscall.SIGINT, false}, {"SIGTERM", syscall.SIGTERM, false}, {"Ctrl-C at a terminal", syscall.SIGINT, true}} {
			for d := range 12 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				cmd := u.nsrun(ctx, c.args...)
				out := &lockedBuffer{}
				var tty *os.File
				if h.terminal {
					master, slave, _ := openPty(t)
					tty = master
					cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
					cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty = true, true
					go func() { _, _ = io.Copy(out, master) }()
				} else {
					cmd.SysProcAttr.Setpgid = true
					cmd.Stdout, cmd.Stderr = out, out
				}
				if err := cmd.Start(); err != nil {
					cancel()
					t.Fatal(err)
				}
				time.Sleep(time.Duration(d) * time.Millisecond)
				if h.terminal {
					_, _ = tty.Write([]byte{3}) // ^C: SIGINT to the terminal's foreground group
				} else {
					_ = syscall.Kill(-cmd.Process.Pid, h.sig)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case <-done:
				case <-time.After(20 * time.Second):
					_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
					<-done
					t.Errorf("%s, %s after %d ms: nsrun still ran 20 s later", c.name, h.name, d)
				}
				cancel()
				want := 128 + int(h.sig)
				printed := out.String()
				if c.name == "up" && strings.Contains(printed, "every node is up") {
					want = 0
				}
				if got := exitCode(cmd.ProcessState); got != want {
					t.Errorf("%s, %s after %d ms: exit %d, want %d; it printed:\n%s", c.name, h.name, d, got, want, printed)
				}
			}
		}
	}
	if !eventually(10*time.Second, func() bool { return len(processesOf(u, "sleep "+marker)) == 0 }) {
		t.Errorf("processes of the runs left: %v", processesOf(u, "sleep "+marker))
	}
	if !eventually(10*time.Second, func() bool { return len(u.runDirs()) <= dirsBefore }) {
		t.Errorf("run folders left: %v", u.runDirs())
	}
}

// lockedBuffer is a buffer that two copiers may write and the test read
// at the same time.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
