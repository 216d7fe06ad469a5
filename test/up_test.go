package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/plan"
)

// project writes files into a folder the test user can read and returns it.
func project(t *testing.T, files map[string]string) string {
	t.Helper()
	dir, err := os.MkdirTemp(binDir, "project-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// needPrograms fails (CI) or skips when Debian programs used as nodes are
// missing.
func needPrograms(t *testing.T, progs ...string) {
	t.Helper()
	for _, p := range progs {
		_, err := exec.LookPath(p)
		need(t, err == nil, p+" is not installed (.ci/run installs it from Debian's packages)")
	}
}

// up runs `nsrun up args...` in dir as u, to its end.
func (u testUser) up(t *testing.T, dir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := u.nsrun(ctx, append([]string{"up"}, args...)...)
	cmd.Dir = dir
	return run(t, cmd)
}

// upRefused runs nsrun up args in dir as u and checks that it is refused
// (exit 125) with want in its error.
func (u testUser) upRefused(t *testing.T, dir, want string, args ...string) {
	t.Helper()
	if r := u.up(t, dir, args...); r.Code != 125 || !strings.Contains(r.Stderr, want) {
		t.Errorf("up %s: exit %d, stderr %q; want 125 and %q", strings.Join(args, " "), r.Code, r.Stderr, want)
	}
}

const threeNodes = `
nodes:
  db:
    ip: 172.18.0.10
    command: ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
    ready: tcp:6379
  web:
    ip: 172.18.0.20
    hostname: web1
    command: python3 -m http.server 8000
    working_dir: site
    ready: tcp:8000
  client:
    ip: 172.18.0.30
    depends_on: [db, web]
    environment: {KEY: greeting}
    command: sh -c 'redis-cli -h db set $$KEY hello-from-redis >/dev/null && redis-cli -h db get $$KEY && busybox wget -qO- http://web1:8000/index.txt && busybox wget -qO- http://web:8000/index.txt'
`

// TestUpThreeNodes: a client reaches two servers by name, and the same file
// runs twice at once without interference.
func TestUpThreeNodes(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	needPrograms(t, "redis-server", "redis-cli", "python3", "busybox")
	dir := project(t, map[string]string{"nsrun.yaml": threeNodes, "site/index.txt": "hello-from-web\n"})
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = u.up(t, dir, "--exit-code-from", "client", "--timeout", "3")
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.Code != 0 {
			t.Errorf("run %d: exit %d\n%s\n%s", i, r.Code, r.Stdout, r.Stderr)
		}
		for _, want := range []string{"client | hello-from-redis", "client | hello-from-web", "nsrun  | db ready (tcp:6379 accepts)", "nsrun  | client exited with code 0"} {
			if !strings.Contains(r.Stdout, want) {
				t.Errorf("run %d: output lacks %q:\n%s", i, want, r.Stdout)
			}
		}
		// Output is prefixed by node, and dependencies started first.
		if strings.Index(r.Stdout, "db started") > strings.Index(r.Stdout, "client started") {
			t.Errorf("run %d: client started before db:\n%s", i, r.Stdout)
		}
	}
	if left := u.runDirs(); len(left) != 0 {
		t.Errorf("run folders left: %v", left)
	}
}

// TestUpTwoSubnets: a node in one subnet reaches one in the other, routed by
// the run's bridge namespace; net exec sees the node's address.
func TestUpTwoSubnets(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	dir := project(t, map[string]string{"two.yaml": `
subnets:
  front: 172.18.0.0/24
  back: 172.18.1.0/24
nodes:
  server:
    ip: 172.18.1.10
    command: probe listen 0.0.0.0:9000
    ready: tcp:9000
  client:
    ip: 172.18.0.2
    depends_on: [server]
    control: true
    command: sh -c 'probe dial server:9000 && nsrun net exec server -- ip -4 -o addr show eth0 && ip route'
`})
	r := u.up(t, dir, "-f", "two.yaml", "--exit-code-from", "client", "--timeout", "2")
	if r.Code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{"client | ok server 172.18.0.2:", "inet 172.18.1.10/24", "client | default via 172.18.0.254"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.Stdout)
		}
	}
}

// startUp starts `nsrun up` in the background and waits for a line.
func startUp(t *testing.T, u testUser, dir, waitFor string, args ...string) (*runningCmd, *lineLog) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := u.nsrun(ctx, append([]string{"up"}, args...)...)
	cmd.Dir = dir
	return startBackground(t, cmd, cancel, func(l *lineLog) bool { return strings.Contains(l.all(), waitFor) })
}

// logWriter adds the complete lines written to it to a lineLog.
type logWriter struct{ l *lineLog }

func (w logWriter) Write(b []byte) (int, error) {
	w.l.mu.Lock()
	w.l.partial += string(b)
	var lines []string
	for {
		i := strings.IndexByte(w.l.partial, '\n')
		if i < 0 {
			break
		}
		lines = append(lines, w.l.partial[:i])
		w.l.partial = w.l.partial[i+1:]
	}
	w.l.mu.Unlock()
	for _, line := range lines {
		w.l.add(line)
	}
	return len(b), nil
}

// TestUpPortsExecAndStop: a published port is reached from the host; a
// second copy of a file that publishes ports is refused; net exec --run
// works from the host; Ctrl-C stops every node and leaves nothing.
func TestUpPortsExecAndStop(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	port := freePort(t)
	dir := project(t, map[string]string{"nsrun.yaml": fmt.Sprintf(`
nodes:
  web:
    ip: 172.18.0.5
    command: probe listen 0.0.0.0:8000
    ports: ["%d:8000"]
  idle:
    ip: 172.18.0.6
    command: sh -c 'trap "exit 0" TERM; while :; do sleep 0.1; done'
`, port)})
	rc, out := startUp(t, u, dir, "web   | listening", "--timeout", "3")
	// Listening is not up: idle may still be starting (a stop signal
	// then ends the start, with 130), and the run is listed once all are.
	if !eventually(30*time.Second, func() bool { return strings.Contains(out.all(), "every node is up") }) {
		t.Fatalf("the run is not up:\n%s", out.all())
	}
	// From the host, as any user: 127.0.0.1:port leads to web:8000.
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatalf("published port: %v", err)
	}
	buf := make([]byte, 100)
	n, _ := c.Read(buf)
	c.Close()
	if !strings.HasPrefix(string(buf[:n]), "web 172.18.0.254:") {
		t.Errorf("published port answered %q", buf[:n])
	}
	// The same file again: its port is taken.
	if r := u.up(t, dir); r.Code != 125 || !strings.Contains(r.Stderr, fmt.Sprintf("nodes.web.ports: cannot publish 127.0.0.1:%d", port)) {
		t.Errorf("second copy: exit %d, %q", r.Code, r.Stderr)
	}
	// net exec from the host.
	ls := nsrunOK(t, u, "ls", "--json")
	id := between(ls, `"id": "`, `"`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ex := run(t, u.nsrun(ctx, "net", "exec", "--run", id, "idle", "--", "sh", "-c", "ip -4 -o addr show eth0; hostname; exit 3"))
	if ex.Code != 3 || !strings.Contains(ex.Stdout, "inet 172.18.0.6/24") || !strings.Contains(ex.Stdout, "\nidle\n") {
		t.Errorf("net exec --run %s idle: exit %d, %q %q", id, ex.Code, ex.Stdout, ex.Stderr)
	}
	// --root: every capability of the run's user namespace (here the
	// caller's own uid, which the run maps as itself); without it, none.
	const setMTU = "ip link set lo mtu 9000 && ip -o link show lo && id -u"
	if r := run(t, u.nsrun(ctx, "net", "exec", "--run", id, "idle", "--", "sh", "-c", setMTU)); r.Code == 0 {
		t.Errorf("net exec without --root changed the node's lo: %q", r.Stdout)
	}
	if r := run(t, u.nsrun(ctx, "net", "exec", "--root", "--run", id, "idle", "--", "sh", "-c", setMTU)); r.Code != 0 ||
		!strings.Contains(r.Stdout, "mtu 9000") || !strings.Contains(r.Stdout, fmt.Sprintf("\n%d\n", u.UID)) {
		t.Errorf("net exec --root: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if r := run(t, u.nsrun(ctx, "net", "exec", "--run", id, "nope", "--", "true")); r.Code != 125 || !strings.Contains(r.Stderr, `no node "nope"`) {
		t.Errorf("net exec to an unknown node: %d %q", r.Code, r.Stderr)
	}
	// Ctrl-C: every node gets SIGTERM and the run exits 0.
	_ = rc.cmd.Process.Signal(syscall.SIGINT)
	if code := rc.wait(); code != 0 {
		t.Errorf("after SIGINT: exit %d; stderr %s", code, rc.stderr)
	}
	if !eventually(5*time.Second, func() bool {
		return len(processesOf(u, "probe listen 0.0.0.0:8000")) == 0 && len(nsrunProcesses(u)) == 0
	}) {
		t.Error("processes left after Ctrl-C")
	}
	if left := u.runDirs(); len(left) != 0 {
		t.Errorf("run folders left: %v", left)
	}
	if _, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		t.Error("the published port still answers after the run")
	}
}

// TestUpSIGKILL: SIGKILL of nsrun up leaves no process, and gc removes the
// run folder.
func TestUpSIGKILL(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	marker := fmt.Sprintf("%d", 400000+time.Now().UnixNano()%100000)
	dir := project(t, map[string]string{"nsrun.yaml": `
nodes:
  a: {ip: 172.18.0.1, command: "sleep ` + marker + `"}
  b: {ip: 172.18.0.2, command: "sh -c 'sleep ` + marker + ` & echo started; wait'"}
`})
	rc, _ := startUp(t, u, dir, "b     | started")
	_ = rc.cmd.Process.Signal(syscall.SIGKILL)
	rc.wait()
	if !eventually(10*time.Second, func() bool { return len(processesOf(u, "sleep "+marker)) == 0 }) {
		t.Errorf("node processes survived SIGKILL: %v", processesOf(u, "sleep "+marker))
	}
	nsrunOK(t, u, "gc")
	if left := u.runDirs(); len(left) != 0 {
		t.Errorf("run folders left after gc: %v", left)
	}
}

func TestUpBadFiles(t *testing.T) {
	u := unprivileged(t)
	port := freePort(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := project(t, map[string]string{
		"typo.yaml":   "nodes:\n  a:\n    ip: 172.18.0.1\n    comand: true\n",
		"cycle.yaml":  "nodes:\n  a: {ip: 172.18.0.1, depends_on: [b]}\n  b: {ip: 172.18.0.2, depends_on: [a]}\n",
		"dup.yaml":    "nodes:\n  a: {ip: 172.18.0.1}\n  b: {ip: 172.18.0.1}\n",
		"out.yaml":    "nodes:\n  a: {ip: 172.18.9.1}\n",
		"port.yaml":   fmt.Sprintf("nodes:\n  a: {ip: 172.18.0.1, command: 'sleep 1', ports: [\"%d:80\"]}\n", port),
		"noaddr.yaml": "nodes:\n  a: {ip: 172.18.0.1, command: 'sleep 1', ports: [\"192.0.2.1:18090:80\"]}\n",
		"syntax.yaml": "nodes:\n  a: [\n",
	})
	before := u.runDirs()
	for file, want := range map[string]string{
		"typo.yaml":    `typo.yaml:4:5: nodes.a: unknown key "comand"`,
		"cycle.yaml":   "dependency cycle",
		"dup.yaml":     "nodes.b.ip: 172.18.0.1 is already node a's address",
		"out.yaml":     "nodes.a.ip: 172.18.9.1 is in no subnet of the file",
		"port.yaml":    fmt.Sprintf("port.yaml:2:51: nodes.a.ports: cannot publish 127.0.0.1:%d: it is in use, by another run of this file or another program; change the host port", port),
		"noaddr.yaml":  "noaddr.yaml:2:51: nodes.a.ports: cannot publish 192.0.2.1:18090: no interface of this host has that address",
		"syntax.yaml":  "syntax.yaml:",
		"missing.yaml": "missing.yaml not found",
	} {
		u.upRefused(t, dir, want, "-f", file)
	}
	if r := u.up(t, dir, "-f", "dup.yaml", "--exit-code-from", "zz"); r.Code != 125 {
		t.Errorf("bad --exit-code-from: %d", r.Code)
	}
	if after := u.runDirs(); len(after) != len(before) {
		t.Errorf("bad files created run folders: %v", after)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func between(s, a, b string) string {
	i := strings.Index(s, a)
	if i < 0 {
		return ""
	}
	s = s[i+len(a):]
	if j := strings.Index(s, b); j >= 0 {
		return s[:j]
	}
	return s
}

// TestAttach plugs processes the user started in network namespaces of
// their own into a live run.
func TestAttach(t *testing.T) {
	u := unprivileged(t)
	requireRoot(t) // to find the host pids of the user's processes
	userNamespaces(t, u)
	r := startRun(t, u, "nodes:\n  a: {ip: 172.18.0.1, command: probe listen 0.0.0.0:9000}\n", "a     | listening")
	port := fmt.Sprint(9100 + time.Now().UnixNano()%800)
	// A server the user starts inside the run, in a namespace of its own.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := u.nsrun(ctx, "net", "exec", "--run", r.id, "a", "--", "unshare", "-rn", "probe", "listen", "0.0.0.0:"+port)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	var pids []int
	if !eventually(10*time.Second, func() bool { pids = processesOf(u, "probe listen 0.0.0.0:"+port); return len(pids) == 1 }) {
		t.Fatalf("server process not found: %v", pids)
	}
	attach := func(pid int, ip, name string) result {
		return run(t, u.nsrun(ctx, "attach", "--run", r.id, "--pid", fmt.Sprint(pid), "--ip", ip, "--name", name))
	}
	if res := attach(pids[0], "172.18.0.50", "extra"); res.Code != 0 || !strings.Contains(res.Stdout, "attached extra as 172.18.0.50") {
		t.Fatalf("attach: %d %q %q", res.Code, res.Stdout, res.Stderr)
	}
	if out := r.exec(t, "a", "probe", "dial", "extra:"+port).Stdout; !strings.HasPrefix(out, "ok ") {
		t.Errorf("node a -> attached extra: %q", out)
	}
	// Partitions apply to it like to any node.
	r.netOK(t, "isolate", "extra")
	if out := r.exec(t, "a", "probe", "dial", "172.18.0.50:"+port, "700ms").Stdout; strings.HasPrefix(out, "ok") {
		t.Errorf("isolated attached node still reachable: %q", out)
	}
	r.netOK(t, "fullmesh")
	// Bad input and the kernel's limit.
	if res := attach(pids[0], "172.18.0.1", "again"); res.Code != 125 || !strings.Contains(res.Stderr, "is node a's address") {
		t.Errorf("duplicate address: %d %q", res.Code, res.Stderr)
	}
	sib := u.command(ctx, "unshare", "-Urn", "sleep", "301")
	if err := sib.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sib.Process.Kill(); _ = sib.Wait() }()
	var sp []int
	eventually(5*time.Second, func() bool { sp = processesOf(u, "sleep 301"); return len(sp) == 1 })
	if len(sp) == 1 {
		if res := attach(sp[0], "172.18.0.60", "sibling"); res.Code != 125 || !strings.Contains(res.Stderr, "sibling of the run's") {
			t.Errorf("attach of a plain unshare -Urn process: %d %q", res.Code, res.Stderr)
		}
	}
}

// TestUpDryRun: `nsrun up --dry-run` prints the plan (and --json gives it
// to scripts as typed data) and starts nothing: no run folder, no
// process, no published port; `nsrun --dry-run -- CMD` does the same for
// one node.
func TestUpDryRun(t *testing.T) {
	u := unprivileged(t)
	port := freePort(t)
	dir := project(t, map[string]string{"nsrun.yaml": fmt.Sprintf(`
subnets:
  front: 172.18.0.0/24
  back: 172.18.1.0/24
nodes:
  db:
    ip: 172.18.1.10
    command: redis-server
    ready: tcp:6379
  web:
    ip: 172.18.0.20
    hostname: web1
    command: python3 -m http.server 8000
    depends_on: [db]
    ports: ["%d:8000"]
  vm:
    ip: 172.18.1.30
    tap: {link0: front}
`, port)})
	before, dirsBefore := len(nsrunProcesses(u)), len(u.runDirs())
	r := u.up(t, dir, "--dry-run", "--isolated", "--capture", "pcaps")
	if r.Code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{
		"bridge br1    subnet back       172.18.1.0/24      router 172.18.1.254",
		"veth eth0 172.18.0.20/24 via 172.18.0.254 fd00:ac12::14/64 via fd00:ac12::fe, bridge port vweb on br0",
		"tap link0 (joined by bridge tb-link0 to veth tp-link0), bridge port tvm.link0 on br0",
		"captured to " + filepath.Join(dir, "pcaps", "vm.link0.pcap"),
		"ready when 172.18.1.10:6379 accepts TCP (within 1m0s)",
		fmt.Sprintf("publishes 127.0.0.1:%d -> 172.18.0.20:8000", port),
		"starts once db is up",
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, r.Stdout)
		}
	}
	r = u.up(t, dir, "--dry-run", "--json", "--isolated")
	if r.Code != 0 {
		t.Fatalf("--json: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	var p plan.Plan
	if err := json.Unmarshal([]byte(r.Stdout), &p); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.Stdout)
	}
	if len(p.Nodes) != 3 || p.Nodes[0].Name != "db" || p.Nodes[0].Ready.Addr != netip.MustParseAddrPort("172.18.1.10:6379") ||
		p.Nodes[1].Links[0].Gateway != netip.MustParseAddr("172.18.0.254") || p.Nodes[2].Links[0].Kind != plan.Tap ||
		p.Nodes[1].Links[0].Gateway6 != netip.MustParseAddr("fd00:ac12::fe") || p.Nodes[0].Addr6 != netip.MustParseAddr("fd00:ac12:100::a") ||
		p.Nodes[1].Publish[0].Host.Port() != uint16(port) || p.Uplink != nil || p.Capture != nil || p.User.UID != u.UID {
		t.Errorf("--json plan: %+v", p)
	}
	// Nothing started: no run folder, no process, the port is free.
	if dirs := u.runDirs(); len(dirs) > dirsBefore {
		t.Errorf("run folders after a dry run: %v (%d before)", dirs, dirsBefore)
	}
	if after := len(nsrunProcesses(u)); after > before {
		t.Errorf("%d nsrun processes after a dry run, %d before", after, before)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Errorf("published port taken after a dry run: %v", err)
	} else {
		l.Close()
	}

	r = run(t, u.nsrun(context.Background(), "--dry-run", "--json", "--root", "--ip", "172.18.0.7", "--hostname", "db", "--", "true"))
	if r.Code != 0 {
		t.Fatalf("nsrun --dry-run: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	p = plan.Plan{}
	if err := json.Unmarshal([]byte(r.Stdout), &p); err != nil {
		t.Fatalf("nsrun --dry-run --json: %v\n%s", err, r.Stdout)
	}
	if len(p.Nodes) != 1 || p.Nodes[0].Hostname != "db" || p.Nodes[0].Addr != netip.MustParseAddr("172.18.0.7") ||
		p.User.Mode != plan.UserRoot || p.Run.Up || strings.Join(p.Nodes[0].Argv, " ") != "true" {
		t.Errorf("nsrun --dry-run --json: %+v", p)
	}
	r = run(t, u.nsrun(context.Background(), "--json", "--", "true"))
	if r.Code != 125 || !strings.Contains(r.Stderr, "--json prints the plan: use it with --dry-run") {
		t.Errorf("--json without --dry-run: exit %d, %s", r.Code, r.Stderr)
	}
}

// TestUpNameClash: two nodes whose derived names clash (node a.b's tap c
// and node a's tap b.c both make bridge port ta.b.c) are refused with the
// file position, the field and the fix, by a dry run and by a real one,
// before anything starts.
func TestUpNameClash(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	dir := project(t, map[string]string{"nsrun.yaml": `
nodes:
  a.b: {ip: 172.18.0.2, tap: [c]}
  a: {ip: 172.18.0.3, tap: [b.c]}
`})
	dirsBefore := len(u.runDirs())
	want := `nsrun.yaml:4:29: nodes.a.tap.b.c: the bridge port of tap b.c of node a gets the interface name "ta.b.c" in the bridge namespace, which is already the bridge port of tap c of node a.b (nodes.a.b.tap.c at line 3); rename one of the nodes or taps`
	for _, args := range [][]string{{"--dry-run"}, {"--isolated"}} {
		u.upRefused(t, dir, want, args...)
	}
	if dirs := u.runDirs(); len(dirs) > dirsBefore {
		t.Errorf("run folders after a refused file: %v (%d before)", dirs, dirsBefore)
	}
}

// TestUpDryRunUplink: with nsrun-helper installed, the plan has the
// uplink (the helper's pool, the gateway's namespace, DNS to the host) and
// a subnet overlapping the pool is refused; --isolated has none.
func TestUpDryRunUplink(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	rec := installFor(t, u, testResolverAddr(t))
	dir := project(t, map[string]string{
		"nsrun.yaml":   "nodes:\n  a: {ip: 172.18.0.2, command: 'true'}\n",
		"overlap.yaml": fmt.Sprintf("subnets:\n  x: %s\nnodes:\n  a: {ip: %s}\n", netip.PrefixFrom(rec.RunsCIDR.Addr(), 24), rec.RunsCIDR.Addr().Next()),
	})
	r := u.up(t, dir, "--dry-run", "--json")
	var p plan.Plan
	if err := json.Unmarshal([]byte(r.Stdout), &p); r.Code != 0 || err != nil {
		t.Fatalf("exit %d, %v\n%s\n%s", r.Code, err, r.Stdout, r.Stderr)
	}
	if p.Uplink == nil || p.Uplink.Pool != rec.RunsCIDR || p.Uplink.GatewayPort != "nr"+p.Run.ID || p.Uplink.Port != "uplink" ||
		p.Uplink.HostDNS != netip.AddrPortFrom(rec.HostAddr.Addr(), 53) || !p.Forward || p.User.Mode != plan.UserMapped {
		t.Errorf("plan with the helper: uplink %+v, forward %v, user %+v", p.Uplink, p.Forward, p.User)
	}
	r = u.up(t, dir, "--dry-run", "--isolated")
	if r.Code != 0 || !strings.Contains(r.Stdout, "no uplink: isolated") || !strings.Contains(r.Stdout, "user: caller") {
		t.Errorf("--isolated: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	r = u.up(t, dir, "--dry-run", "-f", "overlap.yaml")
	if want := "overlaps the run uplinks " + rec.RunsCIDR.String(); r.Code != 125 || !strings.Contains(r.Stderr, want) {
		t.Errorf("overlapping subnet: exit %d, %q; want 125 and %q", r.Code, r.Stderr, want)
	}
}
