package test

import (
	"fmt"
	"strings"
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
