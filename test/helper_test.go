package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/install"
)

// helper runs nsrun-helper as root (the test process) without SUDO_UID.
func helper(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "nsrun-helper"), args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	return run(t, cmd)
}

// secondUser is another unprivileged user, for tests of two users at once.
func secondUser(t *testing.T) testUser {
	t.Helper()
	name := os.Getenv("NSRUN_TEST_USER2")
	need(t, name != "", "set NSRUN_TEST_USER2 to a second unprivileged user")
	old := os.Getenv("NSRUN_TEST_USER")
	os.Setenv("NSRUN_TEST_USER", name)
	defer os.Setenv("NSRUN_TEST_USER", old)
	return unprivileged(t)
}

// testResolver starts the test's own DNS server on 127.0.0.1 and returns
// its address. Guests must never query the host's real resolver.
func testResolver(t *testing.T, pairs ...string) string {
	t.Helper()
	for port := 15353; port < 15400; port++ {
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		cmd := exec.Command(filepath.Join(binDir, "probe"), append([]string{"dns", addr}, pairs...)...)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		if strings.TrimSpace(line) == "listening" {
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			return addr
		}
		_ = cmd.Wait()
	}
	t.Fatal("no free port for the test resolver")
	return ""
}

// installFor installs the helper for u (pointing guests' DNS at a test
// resolver) and uninstalls it when the test ends.
func installFor(t *testing.T, u testUser, resolver string, extra ...string) install.Record {
	t.Helper()
	requireRoot(t)
	args := append([]string{"install", "--user", u.Name, "--resolver", resolver}, extra...)
	r := helper(t, args...)
	t.Cleanup(func() {
		if r := helper(t, "uninstall", "--user", u.Name); r.Code != 0 {
			t.Errorf("uninstall: %s %s", r.Stdout, r.Stderr)
		}
	})
	if r.Code != 0 {
		t.Fatalf("install for %s: exit %d\n%s\n%s", u.Name, r.Code, r.Stdout, r.Stderr)
	}
	b, err := os.ReadFile(install.RecordPath(u.UID))
	if err != nil {
		t.Fatal(err)
	}
	var rec install.Record
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// hostServer starts a probe TCP server on the host (as root) at addr.
func hostServer(t *testing.T, argv ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "probe"), argv...)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "listening" {
		t.Fatalf("probe %v: %q", argv, line)
	}
}

// upstreamNS is a network namespace the test creates to stand for "the
// world": routed from the host over a veth, in TEST-NET-2.
type upstreamNS struct {
	Name             string
	HostAddr, Remote netip.Addr
}

func newUpstream(t *testing.T) upstreamNS {
	t.Helper()
	requireRoot(t)
	up := upstreamNS{Name: fmt.Sprintf("nsrun-test-up%d", os.Getpid()%10000),
		HostAddr: netip.MustParseAddr("198.51.100.1"), Remote: netip.MustParseAddr("198.51.100.2")}
	hostIf := "nsrunt-up0"
	sh := func(cmd string) {
		t.Helper()
		if out, err := exec.Command("sh", "-ec", cmd).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", hostIf).Run()
		_ = exec.Command("ip", "netns", "del", up.Name).Run()
	})
	sh(fmt.Sprintf(`ip netns add %[1]s
ip link add %[2]s type veth peer name eth0 netns %[1]s
ip addr add %[3]s/24 dev %[2]s
ip link set %[2]s up
ip -n %[1]s addr add %[4]s/24 dev eth0
ip -n %[1]s link set eth0 up
ip -n %[1]s link set lo up`, up.Name, hostIf, up.HostAddr, up.Remote))
	return up
}

// start runs argv inside the upstream namespace until the test ends and
// returns its output so far, line by line.
func (up upstreamNS) start(t *testing.T, argv ...string) *lineLog {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", up.Name, filepath.Join(binDir, "probe")}, argv...)...)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	l := &lineLog{}
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "listening" {
		t.Fatalf("upstream probe %v did not start", argv)
	}
	go func() {
		for sc.Scan() {
			l.add(sc.Text())
		}
	}()
	return l
}

type lineLog struct {
	mu      sync.Mutex
	lines   []string
	partial string // logWriter's unfinished line
}

func (l *lineLog) add(s string) { l.mu.Lock(); l.lines = append(l.lines, s); l.mu.Unlock() }

func (l *lineLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}
func (l *lineLog) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// inGateway runs a shell script as u inside u's gateway (user + network
// namespaces), as the README tells users to do for debugging.
func inGateway(t *testing.T, u testUser, script string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return run(t, u.command(ctx, "nsenter", "--preserve-credentials",
		"--user="+install.UserNSPath(u.UID), "--net="+install.NetNSPath(u.UID), "sh", "-c", script))
}

func TestHelperGuestReachesHost(t *testing.T) {
	u := unprivileged(t)
	rec := installFor(t, u, testResolver(t))
	hostAddr := rec.HostAddr.Addr().String()
	hostServer(t, "listen", hostAddr+":7000")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// (Whether IPv6 leaves the run: TestHelperIPv6Uplink, TestHelperIPv6NoHostIPv6.)
	if r := run(t, u.nsrun(ctx, "--", "probe", "dial", hostAddr+":7000")); r.Code != 0 || !strings.HasPrefix(r.Stdout, "ok ") {
		t.Errorf("guest -> host %s:7000: exit %d %q %q", hostAddr, r.Code, r.Stdout, r.Stderr)
	}
	// --isolated keeps the core's island.
	if r := run(t, u.nsrun(ctx, "--isolated", "--", "probe", "dial", hostAddr+":7000", "1s")); r.Code != 4 {
		t.Errorf("--isolated reached the host: exit %d %q", r.Code, r.Stdout)
	}
	// A second install changes nothing.
	if r := helper(t, "install", "--user", u.Name, "--resolver", rec.Resolver.String()); r.Code != 0 || !strings.Contains(r.Stdout, "nothing to change") {
		t.Errorf("second install: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// status, as the user, without root.
	st := run(t, u.command(ctx, filepath.Join(binDir, "nsrun-helper"), "status", "--json"))
	var s struct {
		Installed bool   `json:"installed"`
		Interface string `json:"interface"`
	}
	if err := json.Unmarshal([]byte(st.Stdout), &s); err != nil || st.Code != 0 || !s.Installed || s.Interface != rec.Interface {
		t.Errorf("status --json as the user: exit %d, %q, %v", st.Code, st.Stdout, err)
	}
}

func TestHelperWorldThroughNAT(t *testing.T) {
	u := unprivileged(t)
	installFor(t, u, testResolver(t))
	up := newUpstream(t)
	up.start(t, "listen", up.Remote.String()+":8000")
	out := nsrunOK(t, u, "--", "probe", "dial", up.Remote.String()+":8000")
	// The upstream server answers "HOSTNAME REMOTEADDR": it must see the
	// host's own address on that link, not a guest's.
	if !strings.HasPrefix(out, "ok ") || !strings.Contains(out, " "+up.HostAddr.String()+":") {
		t.Errorf("guest -> upstream: %q; want the upstream to see %s", out, up.HostAddr)
	}
}

func TestHelperDNS(t *testing.T) {
	u := unprivileged(t)
	resolver := testResolver(t, "upstream.test=198.51.100.2", "db.example=192.0.2.10")
	installFor(t, u, resolver)
	out := nsrunOK(t, u, "--", "sh", "-c", "getent hosts upstream.test; getent ahostsv4 db.example | head -1")
	if !strings.Contains(out, "198.51.100.2") || !strings.Contains(out, "192.0.2.10") {
		t.Errorf("guest resolution through bridge, gateway and host: %q", out)
	}
}

// TestHelperLoopbackClosed: the user is root in the gateway and can send
// anything to the host; of the host's loopback only the DNATed DNS may
// answer (route_localnet is on for the nsrun interface).
func TestHelperLoopbackClosed(t *testing.T) {
	u := unprivileged(t)
	rec := installFor(t, u, testResolver(t))
	hostServer(t, "listen", "127.0.0.1:7002")
	// Guests first: their 127.0.0.1 is their own; the host address does
	// not lead to the host's loopback.
	out := nsrunOK(t, u, "--", "sh", "-c", "probe dial 127.0.0.1:7002 1s; probe dial "+rec.HostAddr.Addr().String()+":7002 1s; true")
	if strings.Contains(out, "ok ") {
		t.Errorf("a guest reached the host's loopback server: %q", out)
	}
	// Then the gateway, forging its way to 127.0.0.1 on the host.
	r := inGateway(t, u, `set -e
ip addr del 127.0.0.1/8 dev lo
ip route add 127.0.0.0/8 via `+rec.HostAddr.Addr().String()+` dev uplink
echo 1 > /proc/sys/net/ipv4/conf/uplink/route_localnet
probe dial 127.0.0.1:7002 1s || true`)
	if r.Code != 0 || strings.Contains(r.Stdout, "ok ") || !strings.Contains(r.Stdout, "unreachable") {
		t.Errorf("gateway -> host 127.0.0.1:7002: exit %d, %q %q; want it dropped", r.Code, r.Stdout, r.Stderr)
	}
}

// TestHelperAntiSpoofing: a packet with a forged source, sent from the
// gateway toward the test's upstream, must not arrive; one from the
// gateway's own address does.
func TestHelperAntiSpoofing(t *testing.T) {
	u := unprivileged(t)
	rec := installFor(t, u, testResolver(t))
	up := newUpstream(t)
	got := up.start(t, "udp-listen", up.Remote.String()+":9999")
	dst := up.Remote.String() + ":9999"
	r := inGateway(t, u, `set -e
nft delete table inet nsrun
ip addr add 203.0.113.7/32 dev lo
probe udp-send 203.0.113.7 `+dst+` forged
probe udp-send `+rec.Gateway.Addr().String()+` `+dst+` genuine`)
	if r.Code != 0 {
		t.Fatalf("gateway script: exit %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if !eventually(3*time.Second, func() bool { return strings.Contains(got.all(), "genuine") }) {
		t.Fatalf("the genuine datagram did not arrive either: %q", got.all())
	}
	time.Sleep(300 * time.Millisecond)
	if strings.Contains(got.all(), "forged") {
		t.Errorf("a datagram with a forged source crossed the host: %q", got.all())
	}
}

func TestHelperTwoUsersAndManyRuns(t *testing.T) {
	u1 := unprivileged(t)
	u2 := secondUser(t)
	resolver := testResolver(t)
	rec1 := installFor(t, u1, resolver)
	rec2 := installFor(t, u2, resolver)
	if rec1.Interface == rec2.Interface || rec1.HostAddr.Overlaps(rec2.HostAddr) || rec1.Table == rec2.Table {
		t.Fatalf("two users share an interface, /30 or table: %+v %+v", rec1, rec2)
	}
	for _, c := range []struct {
		u   testUser
		rec install.Record
	}{{u1, rec1}, {u2, rec2}} {
		hostServer(t, "listen", c.rec.HostAddr.Addr().String()+":7003")
		if out := nsrunOK(t, c.u, "--", "probe", "dial", c.rec.HostAddr.Addr().String()+":7003"); !strings.HasPrefix(out, "ok ") {
			t.Errorf("%s's guest -> host: %q", c.u.Name, out)
		}
	}
	// 100 concurrent runs of one user: all succeed, each with its own
	// uplink (the leases held while they all run are distinct).
	leaseDir := filepath.Join(fmt.Sprintf("/run/user/%d/nsrun-runs", u1.UID), "leases")
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	release := filepath.Join(binDir, fmt.Sprintf("release-%d", time.Now().UnixNano()))
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			// A second try: with 100 runs starting at once on two cores,
			// one ARP resolution now and then takes longer than its 3 s.
			dial := "probe dial " + rec1.HostAddr.Addr().String() + ":7003 10s"
			cmd := u1.nsrun(ctx, "--", "sh", "-c",
				dial+" || "+dial+" || exit 9; while [ ! -e "+release+" ]; do sleep 0.1; done")
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Sprintf("%v: %s", err, out)
			}
		}()
	}
	// Count the leases held by live runs: a killed run's lease stays until
	// it is reclaimed, by design.
	runsDir := filepath.Join(fmt.Sprintf("/run/user/%d/nsrun-runs", u1.UID), "runs")
	var leases int
	eventually(2*time.Minute, func() bool {
		ents, _ := os.ReadDir(leaseDir)
		leases = 0
		for _, e := range ents {
			if _, err := netip.ParseAddr(e.Name()); err != nil {
				continue
			}
			owner, _ := os.ReadFile(filepath.Join(leaseDir, e.Name()))
			if _, err := os.Stat(filepath.Join(runsDir, strings.TrimSpace(string(owner)))); err == nil {
				leases++
			}
		}
		return leases == 100
	})
	_ = os.WriteFile(release, nil, 0o644)
	defer os.Remove(release)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if leases != 100 {
		t.Errorf("100 live runs held %d distinct uplink leases", leases)
	}
}

func TestHelperUninstallLeavesNothing(t *testing.T) {
	u := unprivileged(t)
	requireRoot(t)
	resolver := testResolver(t)
	r := helper(t, "install", "--user", u.Name, "--resolver", resolver)
	if r.Code != 0 {
		t.Fatalf("install: %s %s", r.Stdout, r.Stderr)
	}
	nsrunOK(t, u, "--", "true")
	for i := 0; i < 2; i++ {
		if r := helper(t, "uninstall", "--user", u.Name); r.Code != 0 {
			t.Fatalf("uninstall #%d: exit %d %s %s", i+1, r.Code, r.Stdout, r.Stderr)
		}
	}
	ifname, table := install.InterfaceName(u.UID), install.TableName(u.UID)
	if out, _ := exec.Command("ip", "-o", "link").Output(); strings.Contains(string(out), ifname) {
		t.Errorf("interface %s left:\n%s", ifname, out)
	}
	if out, _ := exec.Command("nft", "list", "tables").Output(); strings.Contains(string(out), table) {
		t.Errorf("table %s left:\n%s", table, out)
	}
	if m, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(m), install.Dir(u.UID)) {
		t.Errorf("mounts left:\n%s", m)
	}
	if _, err := os.Lstat(install.Dir(u.UID)); err == nil {
		t.Errorf("%s left", install.Dir(u.UID))
	}
	if _, err := os.Lstat("/run/nsrun-helper/users/" + fmt.Sprint(u.UID) + ".json"); err == nil {
		t.Error("user registration left")
	}
	// nsrun still works, isolated again.
	nsrunOK(t, u, "--", "true")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if st := run(t, u.command(ctx, filepath.Join(binDir, "nsrun-helper"), "status")); st.Code != 1 || !strings.Contains(st.Stdout, "not installed") {
		t.Errorf("status after uninstall: exit %d %q", st.Code, st.Stdout)
	}
}

// TestHelperSymlinkAttack: a user who plants a symlink where the helper
// mounts must get no mount (nor any file) anywhere else.
func TestHelperSymlinkAttack(t *testing.T) {
	u := unprivileged(t)
	requireRoot(t)
	userDir := install.RunUserDir(u.UID)
	_, statErr := os.Lstat(userDir)
	if os.IsNotExist(statErr) {
		if err := os.MkdirAll(userDir, 0o700); err != nil {
			t.Fatal(err)
		}
		_ = os.Chown(userDir, u.UID, u.GID)
		t.Cleanup(func() { os.RemoveAll(userDir) })
	}
	victim := t.TempDir() // root-owned
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, attack := range []string{
		"ln -s " + victim + " " + install.Dir(u.UID),
		"mkdir " + install.Dir(u.UID) + " && ln -s " + victim + "/userns " + install.UserNSPath(u.UID),
	} {
		if r := run(t, u.command(ctx, "sh", "-c", attack)); r.Code != 0 {
			t.Fatalf("plant %q: %s", attack, r.Stderr)
		}
		r := helper(t, "install", "--user", u.Name, "--resolver", "127.0.0.1:15399")
		if r.Code == 0 || !(strings.Contains(r.Stderr, "symlink") || strings.Contains(r.Stderr, "owned by uid")) {
			t.Errorf("after %q: install exit %d, stderr %q; want a refusal", attack, r.Code, r.Stderr)
		}
		if ents, _ := os.ReadDir(victim); len(ents) != 0 {
			t.Errorf("after %q: files appeared in the symlink's target: %v", attack, ents)
		}
		if m, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(m), victim) || strings.Contains(string(m), install.Dir(u.UID)) {
			t.Errorf("after %q: a mount was made", attack)
		}
		if out, _ := exec.Command("ip", "-o", "link").Output(); strings.Contains(string(out), install.InterfaceName(u.UID)) {
			t.Errorf("after %q: the interface was created", attack)
		}
		_ = os.RemoveAll(install.Dir(u.UID))
	}
	_ = helper(t, "uninstall", "--user", u.Name)
}

func TestHelperBadFlags(t *testing.T) {
	u := unprivileged(t)
	requireRoot(t)
	out, err := exec.Command("ip", "-j", "-4", "route", "show", "table", "main").Output()
	if err != nil {
		t.Fatal(err)
	}
	var routes []struct {
		Dst string `json:"dst"`
	}
	_ = json.Unmarshal(out, &routes)
	hostRoute := ""
	for _, r := range routes {
		if p, err := netip.ParsePrefix(r.Dst); err == nil && p.Bits() >= 8 && p.Bits() <= 24 {
			hostRoute = p.String()
		}
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"install", "--user", u.Name, "--host-cidr", "not-a-cidr"}, "--host-cidr: \"not-a-cidr\" is not an IPv4 CIDR"},
		{[]string{"install", "--user", u.Name, "--runs-cidr", "172.20.0.1/19"}, "--runs-cidr: \"172.20.0.1/19\" has host bits set; write 172.20.0.0/19"},
		{[]string{"install", "--user", u.Name, "--runs-cidr", "172.18.255.0/24"}, "overlaps --host-cidr"},
		{[]string{"install", "--user", u.Name, "--resolver", "dns.example"}, "--resolver: \"dns.example\" is not an IPv4 address"},
		{[]string{"install", "--user", "no-such-user-here"}, "--user: no user \"no-such-user-here\""},
		{[]string{"install", "--user", "root"}, "--user: nsrun-helper sets up an unprivileged user"},
		{[]string{"install"}, "which user?"},
		{[]string{"install", "--user", u.Name, "--json"}, "--json does not apply"},
		{[]string{"install", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"frobnicate"}, "unknown command \"frobnicate\""},
	}
	if hostRoute != "" {
		cases = append(cases, struct {
			args []string
			want string
		}{[]string{"install", "--user", u.Name, "--resolver", "127.0.0.1:15399", "--runs-cidr", hostRoute}, "overlaps the host route " + hostRoute})
	}
	for _, tc := range cases {
		r := helper(t, tc.args...)
		if r.Code == 0 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("nsrun-helper %v: exit %d, stderr %q; want %q", tc.args, r.Code, r.Stderr, tc.want)
		}
	}
	// Under sudo, --user is refused.
	cmd := exec.Command(filepath.Join(binDir, "nsrun-helper"), "install", "--user", u.Name)
	cmd.Env = []string{"SUDO_UID=" + fmt.Sprint(u.UID)}
	if r := run(t, cmd); r.Code == 0 || !strings.Contains(r.Stderr, "--user: not allowed under sudo") {
		t.Errorf("--user under sudo: %d %q", r.Code, r.Stderr)
	}
	// A dry run prints the plan and changes nothing.
	r := helper(t, "install", "--dry-run", "--user", u.Name, "--resolver", "127.0.0.1:15399")
	if r.Code != 0 || !strings.Contains(r.Stdout, "would ") || !strings.Contains(r.Stdout, "masquerade") {
		t.Errorf("dry run: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if _, err := os.Lstat(install.Dir(u.UID)); err == nil {
		t.Error("bad flags or a dry run created " + install.Dir(u.UID))
	}
	if out, _ := exec.Command("ip", "-o", "link").Output(); strings.Contains(string(out), install.InterfaceName(u.UID)) {
		t.Error("bad flags or a dry run created the interface")
	}
	if out, _ := exec.Command("nft", "list", "tables").Output(); strings.Contains(string(out), install.TableName(u.UID)) {
		t.Error("bad flags or a dry run created the table")
	}
}

// TestHelperUplinkPartition: `--uplink` cuts a node's way to the host too;
// without it the uplink stays open.
func TestHelperUplinkPartition(t *testing.T) {
	u := unprivileged(t)
	rec := installFor(t, u, testResolver(t))
	host := rec.HostAddr.Addr().String()
	hostServer(t, "listen", host+":7004")
	r := startRun(t, u, "nodes:\n  a: {ip: 172.18.0.1, command: probe listen 0.0.0.0:9000}\n  b: {ip: 172.18.0.2, command: probe listen 0.0.0.0:9000}\n", "b     | listening")
	reach := func(node string) bool {
		return strings.HasPrefix(r.exec(t, node, "probe", "dial", host+":7004", dialTimeout).Stdout, "ok ")
	}
	if !reach("a") || !reach("b") {
		t.Fatal("nodes do not reach the host before any cut")
	}
	r.netOK(t, "isolate", "a")
	if !reach("a") {
		t.Error("isolate without --uplink cut a's way to the host")
	}
	r.netOK(t, "isolate", "--uplink", "a")
	if reach("a") {
		t.Error("isolate --uplink a: a still reaches the host")
	}
	if !reach("b") {
		t.Error("isolate --uplink a: b lost the host too")
	}
	r.netOK(t, "fullmesh")
	if !reach("a") {
		t.Error("fullmesh did not restore a's uplink")
	}
}

// TestHelperWarnsForwardDrop: a table of someone else's whose forward chain
// drops by policy (as Docker's does) is named by install and status, with
// the fix. The test makes that table itself and removes it.
func TestHelperWarnsForwardDrop(t *testing.T) {
	u := unprivileged(t)
	requireRoot(t)
	table := fmt.Sprintf("nsrun_test_fw_%d", os.Getpid())
	if out, err := exec.Command("nft", "add table ip "+table+"; add chain ip "+table+" drop_fwd { type filter hook forward priority 10; policy drop; }").CombinedOutput(); err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}
	defer exec.Command("nft", "delete", "table", "ip", table).Run()
	r := helper(t, "install", "--user", u.Name, "--resolver", testResolverAddr(t))
	t.Cleanup(func() { helper(t, "uninstall", "--user", u.Name) })
	if r.Code != 0 || !strings.Contains(r.Stdout, "table ip "+table+", chain drop_fwd, drops forwarded packets") || !strings.Contains(r.Stdout, "iifname nsrun") {
		t.Errorf("install did not warn about %s:\n%s%s", table, r.Stdout, r.Stderr)
	}
	st := helper(t, "status", "--user", u.Name)
	if !strings.Contains(st.Stdout, "table ip "+table) {
		t.Errorf("status (as root) did not warn about %s:\n%s", table, st.Stdout)
	}
}

func testResolverAddr(t *testing.T) string { return testResolver(t) }

// TestHelperStatusAfterReboot: when the namespace mounts are gone (as after
// a reboot or the last logout), status says so and how to fix it.
func TestHelperStatusAfterReboot(t *testing.T) {
	u := unprivileged(t)
	installFor(t, u, testResolver(t))
	for _, p := range []string{install.UserNSPath(u.UID), install.NetNSPath(u.UID)} {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st := run(t, u.command(ctx, filepath.Join(binDir, "nsrun-helper"), "status"))
	if st.Code != 1 || !strings.Contains(st.Stdout, "no longer a mounted namespace") || !strings.Contains(st.Stdout, "sudo nsrun-helper install") {
		t.Errorf("status with the mounts gone: exit %d\n%s", st.Code, st.Stdout)
	}
	// nsrun falls back to an isolated run, and says why.
	res := run(t, u.nsrun(ctx, "--", "true"))
	if res.Code != 0 {
		t.Errorf("nsrun with a stale install: exit %d %s", res.Code, res.Stderr)
	}
}
