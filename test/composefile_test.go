package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUpInterpolation: ${VAR} in the file is filled from the caller's
// environment, then from .env beside the file, shown resolved by
// --dry-run and seen by the node; env_file's variables reach the node
// below environment:'s; a required variable left unset is refused at its
// file:line:col, before anything starts.
func TestUpInterpolation(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	dir := project(t, map[string]string{
		"nsrun.yaml": `
nodes:
  a:
    ip: ${A_IP}
    env_file: [web.env]
    environment: {OVER: from-file}
    command: ["sh", "-c", "echo greeting=${GREETING:-hi} mode=$$MODE over=$$OVER who=${WHO:?set WHO to a name}"]
`,
		".env":    "A_IP=172.18.0.7\nWHO=dotenv\n",
		"web.env": "# comment\nMODE=fast\nOVER=from-env-file\n",
	})
	upEnv := func(extra []string, args ...string) result {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := u.nsrun(ctx, append([]string{"up"}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(cmd.Env, extra...)
		return run(t, cmd)
	}
	r := upEnv([]string{"WHO=shell"}, "--dry-run")
	if r.Code != 0 || !strings.Contains(r.Stdout, "172.18.0.7") || !strings.Contains(r.Stdout, `echo greeting=hi mode=$MODE over=$OVER who=shell`) ||
		!strings.Contains(r.Stdout, "MODE=fast OVER=from-file") {
		t.Errorf("dry run: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	r = upEnv([]string{"GREETING=hello"}, "--exit-code-from", "a", "--timeout", "2")
	if r.Code != 0 || !strings.Contains(r.Stdout, "| greeting=hello mode=fast over=from-file who=dotenv") {
		t.Errorf("run: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if err := writeFile(dir, ".env", "A_IP=172.18.0.7\n"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--dry-run"}, nil} {
		r = upEnv(nil, args...)
		if r.Code != 125 || !strings.Contains(r.Stderr, "nsrun.yaml:7:27: ${WHO:?set WHO to a name}: WHO is required: set WHO to a name (set it in the environment or in .env beside the file)") {
			t.Errorf("up %v without WHO: exit %d, %q", args, r.Code, r.Stderr)
		}
	}
	if left := u.runDirs(); len(left) != 0 {
		t.Errorf("run folders left: %v", left)
	}
}

// writeFile writes name in dir, readable by the test user.
func writeFile(dir, name, body string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
}

// TestUpHealthcheck: a health check by command, run in the node, gates a
// node that depends on it with condition: service_healthy (the node
// starts only once the server, which listens 3 s after it starts,
// answers); an http:// check does the same; service_completed_successfully
// waits for a node's exit with code 0. A dependency that turns unhealthy,
// or completes with another code, fails the start with 125, and the node
// that waited for it never starts.
func TestUpHealthcheck(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	needPrograms(t, "python3")
	dir := project(t, map[string]string{"nsrun.yaml": `
nodes:
  db:
    ip: 172.18.0.2
    command: sh -c 'sleep 3; echo db-listens; exec probe listen 0.0.0.0:7000'
    healthcheck:
      test: [CMD, probe, dial, "127.0.0.1:7000"]
      interval: 10s
      start_interval: 300ms
      timeout: 2s
      retries: 100
  web:
    ip: 172.18.0.3
    command: python3 -m http.server --bind 127.0.0.1 8000
    healthcheck: {test: "http://localhost:8000/", start_interval: 300ms, retries: 100}
  app:
    ip: 172.18.0.4
    depends_on:
      db: {condition: service_healthy}
      web: {condition: service_healthy}
    command: probe dial db:7000
  after:
    ip: 172.18.0.5
    depends_on: {app: {condition: service_completed_successfully}}
    command: echo after-app
`})
	r := u.up(t, dir, "--dry-run")
	if r.Code != 0 || !strings.Contains(r.Stdout, `health check ["probe" "dial" "127.0.0.1:7000"] every 10s (every 300ms until it passes), timeout 2s, unhealthy after 100 failures`) ||
		!strings.Contains(r.Stdout, "starts once db is healthy and web is healthy") || !strings.Contains(r.Stdout, "starts once app exited with code 0") {
		t.Errorf("dry run: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	r = u.up(t, dir, "--exit-code-from", "after", "--timeout", "2")
	out := r.Stdout
	at := func(s string) int {
		i := strings.Index(out, s)
		if i < 0 {
			t.Errorf("no %q in the output", s)
		}
		return i
	}
	if r.Code != 0 {
		t.Errorf("exit %d\n%s\n%s", r.Code, out, r.Stderr)
	}
	listens, healthy, webHealthy, appStarts, appOK, afterStarts := at("| db-listens"), at(`db healthy (["probe" "dial" "127.0.0.1:7000"] passes)`),
		at("web healthy (http://localhost:8000/ passes)"), at("app started"), at("| ok db"), at("after started")
	if !(listens < healthy && healthy < appStarts && webHealthy < appStarts && appStarts < appOK && appOK < afterStarts) || !strings.Contains(out, "| after-app") {
		t.Errorf("order: db listens %d, healthy %d, web healthy %d, app starts %d, app ok %d, after starts %d\n%s", listens, healthy, webHealthy, appStarts, appOK, afterStarts, out)
	}

	// A check that keeps failing: the dependent node never starts.
	dir = project(t, map[string]string{"nsrun.yaml": `
nodes:
  db:
    ip: 172.18.0.2
    command: sleep 600
    healthcheck: {test: "echo no-db-here >&2; exit 3", interval: 200ms, start_interval: 200ms, retries: 2}
  app:
    ip: 172.18.0.3
    depends_on: {db: {condition: service_healthy}}
    command: echo app-ran
`})
	r = u.up(t, dir, "--timeout", "2")
	if r.Code != 125 || strings.Contains(r.Stdout, "app-ran") || !strings.Contains(r.Stdout, `db unhealthy: ["/bin/sh" "-c" "echo no-db-here >&2; exit 3"] failed 2 times in a row: exit code 3: no-db-here`) ||
		!strings.Contains(r.Stderr, `node "app" depends on db being healthy, but db is unhealthy`) {
		t.Errorf("unhealthy: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	// A dependency that completes with code 1.
	dir = project(t, map[string]string{"nsrun.yaml": `
nodes:
  migrate: {ip: 172.18.0.2, command: sh -c 'exit 1'}
  app:
    ip: 172.18.0.3
    depends_on: {migrate: {condition: service_completed_successfully}}
    command: echo app-ran
`})
	r = u.up(t, dir, "--timeout", "2")
	if r.Code != 125 || strings.Contains(r.Stdout, "app-ran") || !strings.Contains(r.Stderr, `node "app" depends on migrate completing successfully, but migrate exited with code 1`) {
		t.Errorf("completed with 1: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	// A udp: check: healthy once something answers the datagram,
	// unhealthy while the port is refused.
	dir = project(t, map[string]string{"nsrun.yaml": `
nodes:
  dns: {ip: 172.18.0.2, command: probe udp-echo 0.0.0.0:5353, healthcheck: {test: "udp:5353", start_interval: 200ms, retries: 20}}
  app: {ip: 172.18.0.3, depends_on: {dns: {condition: service_healthy}}, command: echo app-after-udp}
  none: {ip: 172.18.0.4, command: sleep 600, healthcheck: {test: "udp:5353", interval: 200ms, start_interval: 200ms, timeout: 500ms, retries: 2}}
  late: {ip: 172.18.0.5, depends_on: {none: {condition: service_healthy}}, command: echo never}
`})
	r = u.up(t, dir, "--timeout", "2")
	if r.Code != 125 || !strings.Contains(r.Stdout, "dns healthy (udp:5353 passes)") || !strings.Contains(r.Stdout, "none unhealthy: udp:5353 failed 2 times in a row") ||
		strings.Contains(r.Stdout, "| never") || !strings.Contains(r.Stderr, `node "late" depends on none being healthy, but none is unhealthy`) {
		t.Errorf("udp checks: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	// Refused at the file: service_healthy of a node without a check.
	dir = project(t, map[string]string{"nsrun.yaml": "nodes:\n  a: {ip: 172.18.0.2, command: sleep 1}\n  b:\n    ip: 172.18.0.3\n    depends_on: {a: {condition: service_healthy}}\n"})
	if r := u.up(t, dir, "--dry-run"); r.Code != 125 || !strings.Contains(r.Stderr, "nsrun.yaml:3:3: nodes.b.depends_on.a: condition: service_healthy, but node a has no healthcheck:") {
		t.Errorf("healthy without a check: exit %d, %q", r.Code, r.Stderr)
	}
	if left := u.runDirs(); len(left) != 0 {
		t.Errorf("run folders left: %v", left)
	}
	if left := nsrunProcesses(u); len(left) != 0 {
		t.Errorf("nsrun processes left: %v", left)
	}
}

// TestUpStopsInReverseOrder: on SIGTERM, a node hears it only once every
// node that depends on it has ended, as compose stops its services: the
// client (slowest to stop) ends first, then web, then db, though each
// of them ends at once on its own.
func TestUpStopsInReverseOrder(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	node := func(name, pause string) string {
		script := "trap 'echo " + name + "-stopping; sleep " + pause + "; exit 0' TERM; echo " + name + "-up; while :; do sleep 0.1; done"
		return fmt.Sprintf("[sh, -c, %q]", script)
	}
	dir := project(t, map[string]string{"nsrun.yaml": `
nodes:
  db: {ip: 172.18.0.2, command: ` + node("db", "0") + `}
  web: {ip: 172.18.0.3, depends_on: [db], command: ` + node("web", "0.3") + `}
  client: {ip: 172.18.0.4, depends_on: [web], command: ` + node("client", "0.8") + `}
  other: {ip: 172.18.0.5, command: ` + node("other", "0") + `}
`})
	rc, out := startUp(t, u, dir, "every node is up", "--timeout", "10")
	if !eventually(10*time.Second, func() bool { return strings.Contains(out.all(), "client-up") }) {
		t.Fatalf("client did not start:\n%s", out.all())
	}
	_ = rc.cmd.Process.Signal(syscall.SIGTERM)
	if code := rc.wait(); code != 0 {
		t.Errorf("exit %d\n%s", code, out.all())
	}
	all := out.all()
	at := func(s string) int {
		i := strings.Index(all, s)
		if i < 0 {
			t.Errorf("no %q in the output", s)
		}
		return i
	}
	clientExit, webStops, webExit, dbStops, dbExit := at("client exited with code 0"), at("web-stopping"), at("web exited with code 0"), at("db-stopping"), at("db exited with code 0")
	if !(clientExit < webStops && webExit < dbStops && dbStops < dbExit) {
		t.Errorf("order: client exits %d, web stopping %d, web exits %d, db stopping %d, db exits %d\n%s", clientExit, webStops, webExit, dbStops, dbExit, all)
	}
	// A node nothing depends on, and that depends on nothing, is not
	// held back.
	if other := at("other exited with code 0"); other > webStops {
		t.Errorf("other ended at %d, after web started to stop (%d)\n%s", other, webStops, all)
	}
	if left := u.runDirs(); len(left) != 0 {
		t.Errorf("run folders left: %v", left)
	}
}

// TestUpRestart: restart: on-failure:3 starts a failing node again 3
// times, with a growing back-off, then gives up (and the run, with no
// node left, ends); restart: always brings back a node that exits with
// 0, and a stop of the run ends the restarts and leaves nothing.
func TestUpRestart(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	dir := project(t, map[string]string{"nsrun.yaml": `
nodes:
  flaky: {ip: 172.18.0.2, command: sh -c 'echo try; exit 3', restart: "on-failure:3"}
`})
	r := u.up(t, dir, "--dry-run")
	if r.Code != 0 || !strings.Contains(r.Stdout, "restarts when it exits with a code other than 0 (at most 3 times), with a back-off") {
		t.Errorf("dry run: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	start := time.Now()
	r = u.up(t, dir, "--timeout", "2")
	if got := strings.Count(r.Stdout, "| try"); got != 4 || r.Code != 0 ||
		!strings.Contains(r.Stdout, "flaky restarting in 100ms (restart 1 of 3)") ||
		!strings.Contains(r.Stdout, "flaky restarting in 200ms (restart 2 of 3)") ||
		!strings.Contains(r.Stdout, "flaky restarting in 400ms (restart 3 of 3)") ||
		!strings.Contains(r.Stdout, "flaky not restarted: it exited with code 3 after 3 restarts (restart: on-failure:3)") {
		t.Errorf("on-failure:3: %d tries, exit %d\n%s\n%s", got, r.Code, r.Stdout, r.Stderr)
	}
	if took := time.Since(start); took < 700*time.Millisecond {
		t.Errorf("4 tries in %s: no back-off", took)
	}
	// A node that exits 0 is not restarted on-failure; always restarts it.
	dir = project(t, map[string]string{"nsrun.yaml": `
nodes:
  once: {ip: 172.18.0.2, command: sh -c 'echo once-ran', restart: on-failure}
  loop: {ip: 172.18.0.3, command: sh -c 'echo again; exit 0', restart: always}
`})
	rc, out := startUp(t, u, dir, "loop restarting in 400ms (restart 3)", "--timeout", "2")
	_ = rc.cmd.Process.Signal(syscall.SIGTERM)
	if code := rc.wait(); code != 0 && code != 1 {
		t.Errorf("exit %d after SIGTERM\n%s", code, out.all())
	}
	if strings.Count(out.all(), "| once-ran") != 1 {
		t.Errorf("on-failure restarted a node that exited with 0:\n%s", out.all())
	}
	if left := nsrunProcesses(u); len(left) != 0 {
		t.Errorf("nsrun processes left: %v", left)
	}
	if left := u.runDirs(); len(left) != 0 {
		t.Errorf("run folders left: %v", left)
	}
	// Refused at the file.
	bad := project(t, map[string]string{"nsrun.yaml": "nodes:\n  a: {ip: 172.18.0.2, command: 'true', restart: sometimes}\n"})
	if r := u.up(t, bad, "--dry-run"); r.Code != 125 || !strings.Contains(r.Stderr, `nsrun.yaml:2:49: nodes.a.restart: "sometimes": write no, on-failure, on-failure:N (at most N restarts) or always`) {
		t.Errorf("bad restart: exit %d, %q", r.Code, r.Stderr)
	}
}

// TestUpHostByName: with the helper installed, every node's /etc/hosts
// names the host's nsrun address host.nsrun.internal (both families when
// the host link has IPv6), and $NSRUN_HOST holds it: a server the test
// runs on that address is reached by name from a node. Without the
// helper (--isolated) neither is there.
func TestUpHostByName(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	rec := installFor(t, u, testResolver(t))
	hostAddr := rec.HostAddr.Addr().String()
	hostServer(t, "listen", hostAddr+":7040")
	dir := project(t, map[string]string{"nsrun.yaml": `
nodes:
  app:
    ip: 172.18.0.2
    command: [sh, -c, "echo host=$$NSRUN_HOST; grep -w host.nsrun.internal /etc/hosts; probe dial 4/host.nsrun.internal:7040"]
`})
	r := u.up(t, dir, "--exit-code-from", "app", "--timeout", "2")
	if r.Code != 0 || !strings.Contains(r.Stdout, "| host="+hostAddr+"\n") || !strings.Contains(r.Stdout, "| "+hostAddr+"\thost.nsrun.internal") ||
		!strings.Contains(r.Stdout, "| ok ") {
		t.Errorf("exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if rec.HostAddr6.IsValid() && rec.Gateway6.IsValid() && !strings.Contains(r.Stdout, "| "+rec.HostAddr6.Addr().String()+"\thost.nsrun.internal") {
		t.Errorf("no IPv6 entry for the host (%s):\n%s", rec.HostAddr6, r.Stdout)
	}
	r = u.up(t, dir, "--exit-code-from", "app", "--timeout", "2", "--isolated")
	if strings.Contains(r.Stdout, "\thost.nsrun.internal") || !strings.Contains(r.Stdout, "| host=\n") {
		t.Errorf("--isolated: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if left := u.runDirs(); len(left) != 0 {
		t.Errorf("run folders left: %v", left)
	}
}

// TestUpTmpfs: a node's tmpfs: covers a folder beside the file with an
// empty one of its own, where a node that runs there (working_dir) writes
// its files (redis's dump.rdb): the host's folder keeps what it had and
// gets nothing, and the next run starts fresh.
func TestUpTmpfs(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	dir := project(t, map[string]string{
		"data/old.txt": "from the host\n",
		"nsrun.yaml": `
nodes:
  db:
    ip: 172.18.0.2
    tmpfs: [data]
    working_dir: data
    command: [sh, -c, "ls -A | sed 's/^/saw /'; echo saved > dump.rdb && echo wrote"]
`})
	r := u.up(t, dir, "--dry-run")
	if r.Code != 0 || !strings.Contains(r.Stdout, "tmpfs on "+filepath.Join(dir, "data")+" (empty, its own)") {
		t.Errorf("dry run: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	for run := range 2 {
		r = u.up(t, dir, "--exit-code-from", "db", "--timeout", "2")
		if r.Code != 0 || strings.Contains(r.Stdout, "saw ") || !strings.Contains(r.Stdout, "| wrote") {
			t.Errorf("run %d: exit %d\n%s\n%s", run, r.Code, r.Stdout, r.Stderr)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "data")); len(entries) != 1 || entries[0].Name() != "old.txt" {
		t.Errorf("the host's folder after the runs: %v", entries)
	}
	bad := project(t, map[string]string{"nsrun.yaml": "nodes:\n  a: {ip: 172.18.0.2, command: 'true', tmpfs: /etc}\n"})
	if r := u.up(t, bad, "--dry-run"); r.Code != 125 || !strings.Contains(r.Stderr, "nsrun.yaml:2:47: nodes.a.tmpfs: /etc would cover /etc, which nsrun mounts into every node") {
		t.Errorf("tmpfs on /etc: exit %d, %q", r.Code, r.Stderr)
	}
}
