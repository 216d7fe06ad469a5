package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ipAddr is the part of `ip -j addr` the tests look at.
type ipAddr struct {
	IfName   string `json:"ifname"`
	AddrInfo []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
	} `json:"addr_info"`
}

type ipRoute struct {
	Dst     string `json:"dst"`
	Gateway string `json:"gateway"`
	Dev     string `json:"dev"`
}

// TestGuestNetwork checks, from inside CMD, that the guest has exactly lo and
// eth0 with the default address and a default route via the bridge.
func TestGuestNetwork(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	out := nsrunOK(t, u, "--", "sh", "-c", "ip -j addr; echo; ip -j -4 route; echo; id -u; id -g")
	var parts []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" {
			parts = append(parts, l)
		}
	}
	if len(parts) != 4 {
		t.Fatalf("unexpected output:\n%s", out)
	}
	var addrs []ipAddr
	if err := json.Unmarshal([]byte(parts[0]), &addrs); err != nil {
		t.Fatalf("ip -j addr: %v\n%s", err, parts[0])
	}
	var names []string
	v4 := map[string]string{}
	for _, a := range addrs {
		names = append(names, a.IfName)
		for _, ai := range a.AddrInfo {
			if ai.Family == "inet" {
				v4[a.IfName] = fmt.Sprintf("%s/%d", ai.Local, ai.PrefixLen)
			}
		}
	}
	if strings.Join(names, ",") != "lo,eth0" {
		t.Errorf("interfaces = %v, want exactly lo and eth0", names)
	}
	if v4["eth0"] != "172.18.0.1/24" || v4["lo"] != "127.0.0.1/8" {
		t.Errorf("IPv4 addresses = %v, want eth0 172.18.0.1/24 and lo 127.0.0.1/8", v4)
	}
	var routes []ipRoute
	if err := json.Unmarshal([]byte(parts[1]), &routes); err != nil {
		t.Fatalf("ip -j route: %v\n%s", err, parts[1])
	}
	var def *ipRoute
	for i := range routes {
		if routes[i].Dst == "default" {
			def = &routes[i]
		}
	}
	if def == nil || def.Gateway != "172.18.0.254" || def.Dev != "eth0" {
		t.Errorf("routes = %+v, want default via 172.18.0.254 dev eth0", routes)
	}
	if parts[2] != fmt.Sprint(u.UID) || parts[3] != fmt.Sprint(u.GID) {
		t.Errorf("CMD runs as uid %s gid %s, want the caller's %d %d", parts[2], parts[3], u.UID, u.GID)
	}
	if got := strings.TrimSpace(nsrunOK(t, u, "--root", "--", "id", "-u")); got != "0" {
		t.Errorf("--root: id -u = %q, want 0", got)
	}
}

func TestIPAndHostname(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	out := nsrunOK(t, u, "--ip", "172.18.0.7", "--hostname", "db", "--", "sh", "-c",
		"hostname; ip -4 -o addr show eth0; grep -w db /etc/hosts; cat /etc/resolv.conf; echo $NSRUN_NODE")
	for _, want := range []string{"db\n", "inet 172.18.0.7/24", "172.18.0.7\tdb", "nameserver 172.18.0.254", "\ndb\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	host, _ := os.Hostname()
	if host == "db" {
		t.Error("the host's own hostname was changed")
	}
	if hosts, _ := os.ReadFile("/etc/hosts"); strings.Contains(string(hosts), "172.18.0.7") {
		t.Error("the host's /etc/hosts was changed")
	}
}

// TestBadInput checks that bad flags are refused with an error naming the
// flag and the fix, and that nothing is created.
func TestBadInput(t *testing.T) {
	u := unprivileged(t)
	before := u.runDirs()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ip", "172.18.0.300", "--", "true"}, "--ip: \"172.18.0.300\" is not an IPv4 address"},
		{[]string{"--ip", "10.1.2.3", "--", "true"}, "--ip: 10.1.2.3 is outside the guest subnet 172.18.0.0/24; pick an address in 172.18.0.1-172.18.0.253"},
		{[]string{"--ip", "172.18.0.0", "--", "true"}, "--ip: 172.18.0.0 is the network address"},
		{[]string{"--ip", "172.18.0.255", "--", "true"}, "--ip: 172.18.0.255 is the broadcast address"},
		{[]string{"--ip", "172.18.0.254", "--", "true"}, "--ip: 172.18.0.254 is the bridge's own address"},
		{[]string{"--hostname", "bad_name!", "--", "true"}, "--hostname: hostname \"bad_name!\""},
		{[]string{"--bogus", "--", "true"}, "flag provided but not defined: -bogus"},
		{[]string{}, "no command given"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		r := run(t, u.nsrun(ctx, tc.args...))
		cancel()
		if r.Code != 125 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("nsrun %v: exit %d, stderr %q; want 125 and %q", tc.args, r.Code, r.Stderr, tc.want)
		}
	}
	if after := u.runDirs(); len(after) != len(before) {
		t.Errorf("bad input left run folders: before %v, after %v", before, after)
	}
}

func TestExitCodes(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	for _, tc := range []struct {
		script string
		want   int
	}{
		{"exit 0", 0}, {"exit 1", 1}, {"exit 7", 7}, {"kill -TERM $$", 143},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		r := run(t, u.nsrun(ctx, "--", "sh", "-c", tc.script))
		cancel()
		if r.Code != tc.want {
			t.Errorf("nsrun -- sh -c %q: exit %d, want %d (stderr %q)", tc.script, r.Code, tc.want, r.Stderr)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if r := run(t, u.nsrun(ctx, "--", "no-such-command-here")); r.Code != 127 || !strings.Contains(r.Stderr, "no-such-command-here") {
		t.Errorf("missing command: exit %d, stderr %q; want 127 naming it", r.Code, r.Stderr)
	}
}

// startNsrun starts nsrun as u and returns once CMD printed its first line.
func startNsrun(t *testing.T, u testUser, args ...string) (*runningCmd, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	rc, out := startBackground(t, u.nsrun(ctx, args...), cancel, func(l *lineLog) bool { return len(l.snapshot()) > 0 })
	return rc, out.snapshot()[0]
}

// startBackground starts cmd, collecting its output line by line, and
// returns once ready says so (at most 30 seconds). The command is killed
// when the test ends.
func startBackground(t *testing.T, cmd *exec.Cmd, cancel context.CancelFunc, ready func(*lineLog) bool) (*runningCmd, *lineLog) {
	t.Helper()
	out := &lineLog{}
	cmd.Stdout = logWriter{out}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rc := &runningCmd{cmd: cmd, cancel: cancel, stderr: &stderr}
	t.Cleanup(rc.kill)
	if !eventually(30*time.Second, func() bool { return ready(out) }) {
		t.Fatalf("%s: not ready within 30s:\n%s\n%s", strings.Join(cmd.Args, " "), out.all(), stderr.String())
	}
	return rc, out
}

type runningCmd struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	stderr *strings.Builder
	once   sync.Once
	code   int
}

func (r *runningCmd) wait() int {
	r.once.Do(func() {
		err := r.cmd.Wait()
		r.code = 0
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = exitCode(ee.ProcessState)
		}
		r.cancel()
	})
	return r.code
}

func (r *runningCmd) kill() {
	if r.cmd.ProcessState == nil {
		_ = r.cmd.Process.Kill()
	}
	r.wait()
}

func TestSIGINTReachesCMD(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	rc, first := startNsrun(t, u, "--", "sh", "-c", `trap 'exit 42' INT; echo ready; while :; do sleep 0.05; done`)
	if first != "ready" {
		t.Fatalf("first line %q", first)
	}
	if err := rc.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := rc.wait(); code != 42 {
		t.Errorf("after SIGINT to nsrun: exit %d, want 42 (CMD's INT trap); stderr %s", code, rc.stderr)
	}
}

// TestIsolation runs two copies of the same address at once: neither sees
// the other, while each reaches its own guest and bridge.
func TestIsolation(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	_, first := startNsrun(t, u, "--", "probe", "listen", "172.18.0.1:9000")
	if first != "listening" {
		t.Fatalf("server: %q", first)
	}
	// A second run with the same address reaches only itself (refused);
	// one with another address finds nobody at 172.18.0.1 (unreachable).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	same := run(t, u.nsrun(ctx, "--", "probe", "dial", "172.18.0.1:9000", "1s"))
	if same.Code != 3 {
		t.Errorf("a second run at the same address reached something: exit %d, %q %q", same.Code, same.Stdout, same.Stderr)
	}
	other := run(t, u.nsrun(ctx, "--ip", "172.18.0.2", "--", "probe", "dial", "172.18.0.1:9000", "1s"))
	if other.Code != 4 {
		t.Errorf("a second run reached the first run's server: exit %d, %q %q", other.Code, other.Stdout, other.Stderr)
	}
}

// TestOwnNetworkAnswers proves the positive side of TestIsolation: within a
// run, the guest reaches its own server and its bridge answers.
func TestOwnNetworkAnswers(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	out := nsrunOK(t, u, "--hostname", "alpha", "--", "sh", "-c",
		`probe listen 172.18.0.1:9000 >/dev/null & sleep 0.3; probe dial alpha:9000; probe dial 172.18.0.254:9; kill $!; true`)
	if !strings.Contains(out, "ok alpha 172.18.0.1:") {
		t.Errorf("guest did not reach its own server by hostname:\n%s", out)
	}
	if !strings.Contains(out, "refused") {
		t.Errorf("bridge 172.18.0.254 did not answer (want connection refused):\n%s", out)
	}
}

func TestFiftyConcurrentRuns(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	var wg sync.WaitGroup
	errs := make(chan string, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := u.nsrun(ctx, "--", "true")
			out, err := cmd.CombinedOutput()
			if err != nil {
				errs <- fmt.Sprintf("%v: %s", err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if left := u.runDirs(); len(left) != 0 {
		t.Errorf("run folders left behind: %v", left)
	}
}

// TestSIGKILLLeavesNothing kills nsrun with SIGKILL mid-run: its command,
// a background daemon of the command and the supervisor must all go, and
// the next run must clean up the state folder.
func TestSIGKILLLeavesNothing(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	marker := fmt.Sprintf("%d", 300000+time.Now().UnixNano()%100000)
	rc, first := startNsrun(t, u, "--", "sh", "-c",
		`(setsid sleep `+marker+` &) ; echo ready; exec sleep `+marker)
	if first != "ready" {
		t.Fatalf("first line %q", first)
	}
	if !eventually(5*time.Second, func() bool { return len(processesOf(u, "sleep "+marker)) == 2 }) {
		t.Fatalf("expected 2 sleep processes, found %v", processesOf(u, "sleep "+marker))
	}
	if len(u.runDirs()) == 0 {
		t.Fatal("no run folder while the run is live")
	}
	if p := nsrunProcesses(u); len(p) != 2 {
		t.Fatalf("expected the launcher and the supervisor, found %v", p)
	}
	_ = rc.cmd.Process.Signal(syscall.SIGKILL)
	rc.wait()
	if !eventually(10*time.Second, func() bool {
		return len(processesOf(u, "sleep "+marker)) == 0 && len(nsrunProcesses(u)) == 0
	}) {
		t.Errorf("processes survived SIGKILL of nsrun: sleep %v, supervisor %v",
			processesOf(u, "sleep "+marker), nsrunProcesses(u))
	}
	nsrunOK(t, u, "--", "true")
	if !eventually(5*time.Second, func() bool { return len(u.runDirs()) == 0 }) {
		t.Errorf("state of the killed run survived the next run: %v", u.runDirs())
	}
	// Other users' helper installs (this machine may be shared) persist
	// their gateways' namespaces under their own /run/user/UID/nsrun.
	mounts, _ := os.ReadFile("/proc/self/mounts")
	var ours []string
	for _, m := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(m)
		if !strings.Contains(m, "nsrun") || len(f) > 1 && strings.HasPrefix(f[1], "/run/user/") && !strings.HasPrefix(f[1], fmt.Sprintf("/run/user/%d/", u.UID)) {
			continue
		}
		ours = append(ours, m)
	}
	if len(ours) > 0 {
		t.Errorf("host mounts mention nsrun:\n%s", strings.Join(ours, "\n"))
	}
}
