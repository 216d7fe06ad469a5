package test

// The attacks of issue 12, performed for real. Most tests here install the
// helper into a "simulated host": a network namespace the test creates and
// runs nsrun-helper in (nsenter --net, so mounts still land in the real
// /run/user/UID). Its forwarding, routes and tables are the test's own, so
// other installs on this machine (and their ip_forward) change nothing in
// them, and no packet leaves the namespaces the test made.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	nshelper "github.com/nsrun/nsrun/helper"
	"github.com/nsrun/nsrun/internal/install"
	"github.com/nsrun/nsrun/internal/runstate"
)

var simCount atomic.Int32

// simHost is a network namespace standing in for the host.
type simHost struct {
	Name      string
	installed map[string]bool // users installed in it, uninstalled at cleanup
	mu        sync.Mutex
}

func newSimHost(t *testing.T, forwarding bool) *simHost {
	t.Helper()
	requireRoot(t)
	h := &simHost{Name: fmt.Sprintf("nsrh-%d-%d", os.Getpid(), simCount.Add(1)), installed: map[string]bool{}}
	shOK(t, "ip netns add "+h.Name+" && ip -n "+h.Name+" link set lo up")
	t.Cleanup(func() {
		for name := range h.installed {
			if r := h.helper(t, "uninstall", "--user", name); r.Code != 0 {
				t.Errorf("cleanup: uninstall %s: %s %s", name, r.Stdout, r.Stderr)
			}
		}
		_ = exec.Command("ip", "netns", "del", h.Name).Run()
	})
	if forwarding {
		h.sysctl(t, "net.ipv4.ip_forward", "1")
	}
	return h
}

func shOK(t *testing.T, script string) string {
	t.Helper()
	out, err := exec.Command("sh", "-ec", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// helperCmd is nsrun-helper as root inside the simulated host.
func (h *simHost) helperCmd(ctx context.Context, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + h.Name, bin}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	return cmd
}

func (h *simHost) helper(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return run(t, h.helperCmd(ctx, filepath.Join(binDir, "nsrun-helper"), args...))
}

// install installs for u in the simulated host and returns the record.
func (h *simHost) install(t *testing.T, u testUser, extra ...string) install.Record {
	t.Helper()
	h.mu.Lock()
	h.installed[u.Name] = true
	h.mu.Unlock()
	r := h.helper(t, append([]string{"install", "--user", u.Name, "--resolver", "127.0.0.1:15399"}, extra...)...)
	if r.Code != 0 {
		t.Fatalf("install for %s: exit %d\n%s\n%s", u.Name, r.Code, r.Stdout, r.Stderr)
	}
	return readRecord(t, u)
}

func readRecord(t *testing.T, u testUser) install.Record {
	t.Helper()
	b, err := os.ReadFile(install.RecordPath(u.UID))
	var rec install.Record
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// sh runs a script inside the simulated host and returns its output.
func (h *simHost) sh(t *testing.T, script string) string {
	t.Helper()
	out, _ := exec.Command("ip", "netns", "exec", h.Name, "sh", "-c", script).CombinedOutput()
	return string(out)
}

func (h *simHost) sysctl(t *testing.T, key, value string) string {
	t.Helper()
	if value != "" {
		h.sh(t, "sysctl -qw "+key+"="+value)
	}
	return strings.TrimSpace(h.sh(t, "sysctl -n "+key))
}

// wire creates a namespace NAME-tag connected to the simulated host by a
// veth (host side 10.99.N.1/24, peer 10.99.N.2/24, default route via the
// host) and returns it with its address.
func (h *simHost) wire(t *testing.T, tag string, n int) (upstreamNS, string) {
	t.Helper()
	peer := h.Name + "-" + tag
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", peer).Run() })
	hostSide, addr := fmt.Sprintf("10.99.%d.1", n), fmt.Sprintf("10.99.%d.2", n)
	shOK(t, fmt.Sprintf(`ip netns add %[1]s
ip -n %[2]s link add hv-%[3]s type veth peer name eth0 netns %[1]s
ip -n %[2]s addr add %[4]s/24 dev hv-%[3]s
ip -n %[2]s link set hv-%[3]s up
ip -n %[1]s addr add %[5]s/24 dev eth0
ip -n %[1]s link set eth0 up
ip -n %[1]s link set lo up
ip -n %[1]s route add default via %[4]s`, peer, h.Name, tag, hostSide, addr))
	return upstreamNS{Name: peer}, addr
}

// probeIn runs probe once in the namespace ns and returns its output.
func probeIn(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, _ := exec.Command("ip", append([]string{"netns", "exec", ns, filepath.Join(binDir, "probe")}, args...)...).CombinedOutput()
	return string(out)
}

// TestHelperRouterAdvertisement: a router advertisement sent from the
// gateway changes no route and adds no address on the host (the host end
// keeps only its static IPv6 address and that /64). The same
// advertisement through a veth the test wires itself does change the host:
// the attack is real. (A node of a run, even with --root, cannot send one
// to the host end at all: its link ends at its run's bridge, and every hop
// after that routes at layer 3, so the gateway is the only sender there is
// on the host end's link.)
func TestHelperRouterAdvertisement(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	// Control: the probe's advertisement works on an ordinary interface
	// (before install: with IPv6 forwarding on, the host ignores them).
	ctl, _ := h.wire(t, "ra", 1)
	untentative(t, ctl.Name, h.Name)
	if out := probeIn(t, ctl.Name, "ra", "eth0", "fd77:2::"); !strings.Contains(out, "sent") {
		t.Fatalf("control advertisement: %s", out)
	}
	if !eventually(5*time.Second, func() bool { return strings.Contains(h.sh(t, "ip -6 route"), "fd77:2::/64") }) {
		t.Fatalf("the control advertisement changed nothing: the test proves nothing\n%s", h.sh(t, "ip -6 route"))
	}
	// The host now takes a route from advertisements on hv-ra: with
	// accept_ra=1 there, install would give no IPv6 uplink (it would cut
	// the host off such routes; TestHelperIPv6KeepsRARoutes).
	h.sysctl(t, "net.ipv6.conf.hv-ra.accept_ra", "2")
	rec := h.install(t, u)
	if !rec.HostAddr6.IsValid() {
		t.Fatalf("install gave the host end no IPv6 address: the test proves nothing")
	}
	own := rec.HostAddr6.Masked().String() // the host link's static /64
	// The attacker gives itself a link-local source if it has none.
	r := inGateway(t, u, "ip -6 addr add fe80::77/64 dev uplink nodad 2>/dev/null; probe ra uplink fd77:1::")
	if !strings.Contains(r.Stdout, "sent") {
		t.Fatalf("advertisement from the gateway: exit %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	time.Sleep(2 * time.Second)
	for _, line := range strings.Split(h.sh(t, "ip -6 route"), "\n") {
		if strings.Contains(line, "fd77:1") || strings.Contains(line, "dev "+rec.Interface) && !strings.HasPrefix(line, own+" ") {
			t.Errorf("host route after an advertisement from the gateway: %s", line)
		}
	}
	if got := h.sh(t, "ip -6 addr show dev "+rec.Interface); strings.Count(got, "inet6") != 1 || !strings.Contains(got, "inet6 "+rec.HostAddr6.String()) {
		t.Errorf("the host end has IPv6 addresses other than its static %s:\n%s", rec.HostAddr6, got)
	}
	for key, want := range map[string]string{"accept_ra": "0", "accept_redirects": "0", "addr_gen_mode": "1"} {
		if got := h.sysctl(t, "net.ipv6.conf."+rec.Interface+"."+key, ""); got != want {
			t.Errorf("net.ipv6.conf.%s.%s = %s, want %s", rec.Interface, key, got, want)
		}
	}
}

// TestHelperForwardGuard: on a host whose forwarding was off, install turns
// it on for nsrun only: two namespaces the test wires to the host do not
// reach each other, while runs reach the host and the test's upstream; the
// last uninstall turns forwarding off again. On a host that forwarded
// already, nothing changes for the others.
func TestHelperForwardGuard(t *testing.T) {
	u := unprivileged(t)
	for _, before := range []string{"0", "1"} {
		t.Run("ip_forward="+before, func(t *testing.T) {
			h := newSimHost(t, before == "1")
			a, _ := h.wire(t, "a", 1)
			b, bAddr := h.wire(t, "b", 2)
			b.start(t, "listen", bAddr+":7020")
			// Control: with forwarding on and no nsrun, a reaches b.
			on := h.sysctl(t, "net.ipv4.ip_forward", "1")
			if out := probeIn(t, a.Name, "dial", bAddr+":7020", "2s"); !strings.HasPrefix(out, "ok ") {
				t.Fatalf("control a -> b with forwarding on: %q", out)
			}
			h.sysctl(t, "net.ipv4.ip_forward", before)
			if on != "1" {
				t.Fatalf("control: could not turn forwarding on (%s)", on)
			}
			rec := h.install(t, u)
			if got := h.sysctl(t, "net.ipv4.ip_forward", ""); got != "1" {
				t.Fatalf("ip_forward after install = %s", got)
			}
			var st struct {
				Installed  bool   `json:"installed"`
				Forwarding string `json:"forwarding"`
			}
			r := h.helper(t, "status", "--json", "--user", u.Name)
			want := map[string]string{"0": "nsrun only", "1": "unchanged"}[before]
			if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil || !st.Installed || st.Forwarding != want {
				t.Errorf("status as root: %s %s; want installed, forwarding %q", r.Stdout, r.Stderr, want)
			}
			out := probeIn(t, a.Name, "dial", bAddr+":7020", "1s")
			if before == "0" && !strings.HasPrefix(out, "unreachable") {
				t.Errorf("forwarding was off before install; a -> b now: %q, want it dropped", out)
			}
			if before == "1" && !strings.HasPrefix(out, "ok ") {
				t.Errorf("forwarding was on before install; install changed a -> b: %q", out)
			}
			// nsrun still reaches the host and the upstream (b).
			hostAddr := rec.HostAddr.Addr().String()
			h.start(t, "listen", hostAddr+":7021")
			if out := nsrunOK(t, u, "--", "sh", "-c", "probe dial "+hostAddr+":7021; probe dial "+bAddr+":7020"); strings.Count(out, "ok ") != 2 {
				t.Errorf("a run -> host and upstream: %q", out)
			}
			if r := h.helper(t, "uninstall", "--user", u.Name); r.Code != 0 {
				t.Fatalf("uninstall: %s %s", r.Stdout, r.Stderr)
			}
			delete(h.installed, u.Name)
			if got := h.sysctl(t, "net.ipv4.ip_forward", ""); got != before {
				t.Errorf("ip_forward after the last uninstall = %s, want %s as before", got, before)
			}
			if got := h.sh(t, "nft list tables"); strings.Contains(got, "nsrun") {
				t.Errorf("tables left after uninstall: %s", got)
			}
		})
	}
}

// start runs probe inside the simulated host until the test ends.
func (h *simHost) start(t *testing.T, argv ...string) *lineLog {
	t.Helper()
	return upstreamNS{Name: h.Name}.start(t, argv...)
}

// TestHelperUsersIsolated: user A's gateway and runs reach neither user B's
// gateway, nor B's runs, nor B's host address; each reaches their own.
func TestHelperUsersIsolated(t *testing.T) {
	ua, ub := unprivileged(t), secondUser(t)
	h := newSimHost(t, false)
	// B's runs get uplinks of their own range, so that A's packets to
	// them cannot land in A's own runs.
	ra, rb := h.install(t, ua), h.install(t, ub, "--runs-cidr", "10.98.0.0/19")
	h.start(t, "listen", "0.0.0.0:7030")
	// A listener in B's gateway, as B.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cmd := ub.command(ctx, "nsenter", "--preserve-credentials", "--user="+install.UserNSPath(ub.UID), "--net="+install.NetNSPath(ub.UID),
		filepath.Join(binDir, "probe"), "listen", "0.0.0.0:7031")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if line, _ := bufio.NewReader(out).ReadString('\n'); strings.TrimSpace(line) != "listening" {
		t.Fatalf("listener in B's gateway: %q", line)
	}
	bHost, bGW := rb.HostAddr.Addr().String()+":7030", rb.Gateway.Addr().String()+":7031"
	aHost := ra.HostAddr.Addr().String() + ":7030"
	// Controls: each reaches their own host address; B's runs reach B's gateway.
	if out := nsrunOK(t, ub, "--", "sh", "-c", "probe dial "+bHost+"; probe dial "+bGW); strings.Count(out, "ok ") != 2 {
		t.Fatalf("B's run -> B's host address and gateway: %q", out)
	}
	if out := nsrunOK(t, ua, "--", "probe", "dial", aHost); !strings.HasPrefix(out, "ok ") {
		t.Fatalf("A's run -> A's host address: %q", out)
	}
	// A run of B's, alive while A tries; its uplink /30 is the lease its
	// run holds, and the run's end of it the /30's second address.
	bRun := ub.nsrun(ctx, "--", "sleep", "60")
	if err := bRun.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bRun.Process.Kill(); _ = bRun.Wait() })
	// The run is up once its record lists its uplink: written after its
	// nodes started, so its end of the /30 answers by then. (Its lease
	// and folder exist before the uplink is wired.)
	rt := fmt.Sprintf("/run/user/%d/nsrun-runs", ub.UID)
	var bRunAddr string
	eventually(10*time.Second, func() bool {
		runs, _ := runstate.List(rt)
		for _, r := range runs {
			if p, err := netip.ParsePrefix(r.Uplink); err == nil {
				bRunAddr = p.Addr().Next().Next().String() + ":9"
			}
		}
		return bRunAddr != ""
	})
	if bRunAddr == "" || !strings.HasPrefix(inGateway(t, ub, "probe dial "+bRunAddr+" 1s").Stdout, "refused") {
		t.Fatalf("control: B's gateway does not reach B's run at %q", bRunAddr)
	}
	// Dropped, not refused or unroutable: each dial times out.
	script := "probe dial " + bHost + " 1s; probe dial " + bGW + " 1s; true"
	dropped := func(out string) bool {
		return !strings.Contains(out, "ok ") && strings.Count(out, "unreachable") == 2 && strings.Count(out, "timeout") == 2
	}
	if r := inGateway(t, ua, script); !dropped(r.Stdout) {
		t.Errorf("A's gateway -> B's host address and gateway: %q %q; want both dropped", r.Stdout, r.Stderr)
	}
	if out := nsrunOK(t, ua, "--", "sh", "-c", script); !dropped(out) {
		t.Errorf("A's run -> B's host address and gateway: %q; want both dropped", out)
	}
	// B's run: the host has no route to B's runs (every hop masquerades),
	// so give it one, through B's gateway, and watch what arrives on B's
	// gateway's uplink. Control: the host's own datagram gets there.
	runIP := strings.TrimSuffix(bRunAddr, ":9")
	shOK(t, fmt.Sprintf("ip -n %s route add %s via %s", h.Name, rb.RunsCIDR, rb.Gateway.Addr()))
	wait := frameSeen(t, install.NetNSPath(ub.UID), install.GatewayUplink, "CTL-RUN")
	h.sh(t, filepath.Join(binDir, "probe")+" udp-send "+rb.HostAddr.Addr().String()+" "+runIP+":9 CTL-RUN")
	if got := wait(); !strings.HasPrefix(got, "got") {
		t.Fatalf("control: the host's datagram to B's run did not reach B's gateway: %q; the test proves nothing", got)
	}
	wait = frameSeen(t, install.NetNSPath(ub.UID), install.GatewayUplink, "A-RUN")
	if r := inGateway(t, ua, "probe udp-send "+ra.Gateway.Addr().String()+" "+runIP+":9 A-RUN-GW"); r.Code != 0 {
		t.Fatalf("send from A's gateway: %s %s", r.Stdout, r.Stderr)
	}
	nsrunOK(t, ua, "--", "probe", "udp-send", "0.0.0.0", runIP+":9", "A-RUN-NODE")
	if got := wait(); got != "timeout" {
		t.Errorf("a datagram from A's gateway or run to B's run reached B's gateway: %q", got)
	}
}

// frameSeen waits on the interface ifname of the network namespace at
// netnsPath for one frame holding marker (a packet socket, as root: it
// sees what arrives, forwarded or not), and returns "got" or "timeout".
func frameSeen(t *testing.T, netnsPath, ifname, marker string) func() string {
	t.Helper()
	script := fmt.Sprintf(`import socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((%q, 0))
s.settimeout(3)
print("ready", flush=True)
try:
    while True:
        if b%q in s.recv(65535):
            print("got", flush=True)
            break
except socket.timeout:
    print("timeout", flush=True)
`, ifname, marker)
	return pyReceiver(t, "packet socket on "+ifname, netnsPath, script)
}

// pyReceiver starts the python3 script in the network namespace at
// netnsPath (as root) and waits until it prints "ready": its socket is
// open. The function it returns waits for the next line the script
// prints, its verdict, and for its end (at most 20 s in all).
func pyReceiver(t *testing.T, what, netnsPath, script string) func() string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	cmd := exec.CommandContext(ctx, "nsenter", "--net="+netnsPath, "python3", "-c", script)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	if line, _ := r.ReadString('\n'); strings.TrimSpace(line) != "ready" {
		cancel()
		_ = cmd.Wait()
		t.Fatalf("%s: %q", what, line)
	}
	return func() string {
		defer cancel()
		line, _ := r.ReadString('\n')
		_ = cmd.Wait()
		return strings.TrimSpace(line)
	}
}

// TestHelperPrivilegedSourcePort: a datagram from source port 700 in the
// gateway reaches neither the upstream nor the host itself (masquerade
// cannot remap the port with google/nftables v0.3.0, so it is dropped),
// while one from port 40000 reaches both.
func TestHelperPrivilegedSourcePort(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	rec := h.install(t, u)
	up, upAddr := h.wire(t, "up", 3)
	got := up.start(t, "udp-from", upAddr+":9999")
	host := h.start(t, "udp-from", rec.HostAddr.Addr().String()+":9998")
	gw := rec.Gateway.Addr().String()
	r := inGateway(t, u, `set -e
probe udp-send `+gw+`:700 `+upAddr+`:9999 privileged
probe udp-send `+gw+`:40000 `+upAddr+`:9999 unprivileged
probe udp-send `+gw+`:700 `+rec.HostAddr.Addr().String()+`:9998 privileged-to-host
probe udp-send `+gw+`:40000 `+rec.HostAddr.Addr().String()+`:9998 unprivileged-to-host`)
	if r.Code != 0 {
		t.Fatalf("gateway script: exit %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if !eventually(3*time.Second, func() bool { return strings.Contains(host.all(), "unprivileged-to-host") }) {
		t.Fatalf("the unprivileged datagram did not reach the host either: %q", host.all())
	}
	if !eventually(3*time.Second, func() bool { return strings.Contains(got.all(), ": unprivileged") }) {
		t.Fatalf("control: the datagram from port 40000 did not reach the upstream: %q", got.all())
	}
	time.Sleep(500 * time.Millisecond) // the privileged one was sent first
	if strings.Contains(got.all(), ": privileged") {
		t.Errorf("the datagram from port 700 reached the upstream: %q (masquerade cannot remap it; it must be dropped)", got.all())
	}
	for _, line := range got.snapshot() {
		var ip string
		var port int
		if _, err := fmt.Sscanf(strings.ReplaceAll(line, ":", " "), "from %s %d", &ip, &port); err != nil || port < 1024 {
			t.Errorf("upstream got %q: source port below 1024", line)
		}
	}
	if strings.Contains(host.all(), ": privileged-to-host") {
		t.Errorf("a datagram from port 700 reached the host: %q", host.all())
	}
}

// TestHelperPlantedFiles: a symlink or FIFO planted at install.json, in a
// folder the user made or swapped in for the helper's, makes install,
// uninstall and status fail fast with a clear error, reading nothing
// through it and printing nothing of what it points at.
func TestHelperPlantedFiles(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	secret := filepath.Join(t.TempDir(), "secret") // root's
	if err := os.WriteFile(secret, []byte("SECRET-12345\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	userDir := install.RunUserDir(u.UID)
	if _, err := os.Lstat(userDir); os.IsNotExist(err) {
		if err := os.Mkdir(userDir, 0o700); err != nil {
			t.Fatal(err)
		}
		_ = os.Chown(userDir, u.UID, u.GID)
		t.Cleanup(func() { os.RemoveAll(userDir) })
	}
	asUser := func(script string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if r := run(t, u.command(ctx, "sh", "-ec", script)); r.Code != 0 {
			t.Fatalf("as %s: %s: %s", u.Name, script, r.Stderr)
		}
	}
	dir := install.Dir(u.UID)
	check := func(attack string, installed bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, c := range []struct {
			name string
			cmd  *exec.Cmd
		}{
			{"install", h.helperCmd(ctx, filepath.Join(binDir, "nsrun-helper"), "install", "--user", u.Name, "--resolver", "127.0.0.1:15399")},
			{"uninstall", h.helperCmd(ctx, filepath.Join(binDir, "nsrun-helper"), "uninstall", "--user", u.Name)},
			{"status as root", h.helperCmd(ctx, filepath.Join(binDir, "nsrun-helper"), "status", "--user", u.Name)},
			{"status as the user", u.command(ctx, filepath.Join(binDir, "nsrun-helper"), "status")},
		} {
			start := time.Now()
			r := run(t, c.cmd)
			all := r.Stdout + r.Stderr
			switch {
			case time.Since(start) > 5*time.Second:
				t.Errorf("%s: %s took %s", attack, c.name, time.Since(start))
			case r.Code == 0:
				t.Errorf("%s: %s succeeded:\n%s", attack, c.name, all)
			case strings.Contains(all, "SECRET") || strings.Contains(all, secret):
				t.Errorf("%s: %s printed what the planted file points at:\n%s", attack, c.name, all)
			case !strings.Contains(all, "refusing"):
				t.Errorf("%s: %s: no clear refusal:\n%s", attack, c.name, all)
			}
		}
		got := h.sh(t, "ip -o link; nft list tables")
		if has := strings.Contains(got, install.InterfaceName(u.UID)) && strings.Contains(got, install.TableName(u.UID)); has != installed {
			t.Errorf("%s: installed %v, want %v:\n%s", attack, has, installed, got)
		}
	}
	// A folder of the user's own, before any install.
	asUser("mkdir " + dir + " && ln -s " + secret + " " + dir + "/install.json")
	check("a symlink at install.json in the user's own folder", false)
	asUser("rm -rf " + dir + " && mkdir " + dir + " && mkfifo " + dir + "/install.json")
	check("a FIFO at install.json in the user's own folder", false)
	asUser("rm -rf " + dir + " && ln -s /tmp " + dir)
	check("a symlink for the nsrun folder", false)
	asUser("rm -f " + dir)
	// A real install: its folder is a mount point now (a view of root's
	// /run/nsrun-helper/gw/UID), which the user can neither swap nor
	// write into.
	h.install(t, u)
	for _, attack := range []string{"mv " + dir + " " + dir + ".real", "rmdir " + dir, "touch " + dir + "/x"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r := run(t, u.command(ctx, "sh", "-c", attack))
		cancel()
		if r.Code == 0 {
			t.Errorf("as %s, %q worked on the helper's folder", u.Name, attack)
		}
	}
	// Planted in the helper's own folder (as root here, in gw/UID: the
	// checks above keep the user out; these reach the file checks behind
	// them). The user's status refuses to read it; install replaces it
	// with the record, never writing through it.
	gw := fmt.Sprintf("/run/nsrun-helper/gw/%d", u.UID)
	for _, plant := range []struct{ name, script string }{
		{"a symlink", "ln -s " + secret + " " + gw + "/install.json"},
		{"a FIFO", "mkfifo " + gw + "/install.json"},
	} {
		shOK(t, "rm -f "+gw+"/install.json && "+plant.script)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		r := run(t, u.command(ctx, filepath.Join(binDir, "nsrun-helper"), "status"))
		cancel()
		all := r.Stdout + r.Stderr
		if time.Since(start) > 5*time.Second || r.Code == 0 || strings.Contains(all, "SECRET") || !strings.Contains(all, "refusing") {
			t.Errorf("%s at install.json in the helper's folder: status as the user: exit %d after %s:\n%s", plant.name, r.Code, time.Since(start), all)
		}
		start = time.Now()
		r = h.helper(t, "install", "--user", u.Name, "--resolver", "127.0.0.1:15399")
		if all := r.Stdout + r.Stderr; time.Since(start) > 5*time.Second || r.Code != 0 || strings.Contains(all, "SECRET") {
			t.Errorf("%s at install.json in the helper's folder: install: exit %d after %s:\n%s", plant.name, r.Code, time.Since(start), all)
		}
		if fi, err := os.Lstat(dir + "/install.json"); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s at install.json: after install it is %v %v, want the record", plant.name, fi, err)
		}
		if b, _ := os.ReadFile(secret); string(b) != "SECRET-12345\n" {
			t.Errorf("%s at install.json: install wrote through it: the secret is now %q", plant.name, b)
		}
	}
	if r := h.helper(t, "uninstall", "--user", u.Name); r.Code != 0 {
		t.Errorf("uninstall once the folder is back: %s %s", r.Stdout, r.Stderr)
	}
	delete(h.installed, u.Name)
}

// TestHelperVerifyGateway runs the helper's check of the gateway
// namespaces against namespaces of the test's choosing, as a user who
// controls the pid the helper is told would choose them: only a network
// namespace of a user namespace the user owns, child of the initial one,
// is a gateway.
func TestHelperVerifyGateway(t *testing.T) {
	u := unprivileged(t)
	u2 := secondUser(t)
	requireRoot(t)
	userNamespaces(t, u)
	// hold starts `sleep` in new namespaces as runAs and opens them.
	hold := func(runAs *testUser, argv ...string) (userNS, netNS *os.File) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		var cmd *exec.Cmd
		if runAs != nil {
			cmd = runAs.command(ctx, argv[0], argv[1:]...)
		} else {
			cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
		}
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); _ = cmd.Wait() })
		var pid int
		if _, err := fmt.Fscan(out, &pid); err != nil {
			t.Fatalf("%v: no pid: %v", argv, err)
		}
		var err error
		if userNS, err = os.Open(fmt.Sprintf("/proc/%d/ns/user", pid)); err != nil {
			t.Fatal(err)
		}
		if netNS, err = os.Open(fmt.Sprintf("/proc/%d/ns/net", pid)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { userNS.Close(); netNS.Close() })
		return userNS, netNS
	}
	newNS := []string{"unshare", "-Urn", "sh", "-c", "echo $$; exec sleep 60"}
	nested := []string{"unshare", "-Urn", "unshare", "-Urn", "sh", "-c", "echo $$; exec sleep 60"}
	usersUser, usersNet := hold(&u, newNS...)
	rootsUser, rootsNet := hold(nil, newNS...)
	nestedUser, nestedNet := hold(&u, nested...)
	hostUser, _ := os.Open("/proc/self/ns/user")
	hostNet, _ := os.Open("/proc/self/ns/net")
	defer hostUser.Close()
	defer hostNet.Close()
	if err := nshelper.VerifyGateway(usersUser, usersNet, u.UID); err != nil {
		t.Fatalf("the user's own fresh namespaces are refused: %v", err)
	}
	for _, c := range []struct {
		name          string
		userNS, netNS *os.File
		uid           int
		want          string
	}{
		{"the host's own namespaces", hostUser, hostNet, u.UID, "the initial user namespace has none"},
		{"the host's network namespace with the user's user namespace", usersUser, hostNet, u.UID, "does not belong"},
		{"another user namespace's network namespace", usersUser, rootsNet, u.UID, "does not belong"},
		{"namespaces root created", rootsUser, rootsNet, u.UID, "owned by uid 0"},
		{"the user's namespaces, claimed for another user", usersUser, usersNet, u2.UID, fmt.Sprintf("owned by uid %d, not %d", u.UID, u2.UID)},
		{"a nested user namespace", nestedUser, nestedNet, u.UID, "not a child of the initial"},
		{"a network namespace given as the user namespace", usersNet, usersNet, u.UID, "not a namespace of the expected type"},
	} {
		err := nshelper.VerifyGateway(c.userNS, c.netNS, c.uid)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want a refusal saying %q", c.name, err, c.want)
		}
	}
}

// simState says whether u's install in h is whole (true) or absent
// (false), and fails the test if it is half-made.
func (h *simHost) simState(t *testing.T, u testUser) bool {
	t.Helper()
	ifname, table := install.InterfaceName(u.UID), install.TableName(u.UID)
	links, tables := h.sh(t, "ip -o link show "+ifname+" 2>/dev/null"), h.sh(t, "nft list tables")
	guard := h.sh(t, "nft list set inet nsrun-guard gateways 2>/dev/null")
	mounts, _ := os.ReadFile("/proc/self/mounts")
	_, recErr := os.Stat(fmt.Sprintf("/run/nsrun-helper/users/%d.json", u.UID))
	_, dirErr := os.Lstat(install.Dir(u.UID))
	parts := map[string]bool{
		"interface up":  strings.Contains(links, ifname+"@") && strings.Contains(links, ",UP"),
		"table":         strings.Contains(tables, "inet "+table+"\n"),
		"guard element": strings.Contains(guard, `"`+ifname+`"`),
		"mounts":        strings.Count(string(mounts), install.Dir(u.UID)+"/") == 2,
		"record":        recErr == nil,
		"folder":        dirErr == nil,
	}
	var have, lack []string
	for k, v := range parts {
		if v {
			have = append(have, k)
		} else {
			lack = append(lack, k)
		}
	}
	slices.Sort(have)
	slices.Sort(lack)
	if len(have) > 0 && len(lack) > 0 {
		t.Errorf("half an install for %s: has %v, lacks %v\n%s%s%s", u.Name, have, lack, links, tables, guard)
	}
	return len(lack) == 0
}

// TestHelperSignals: SIGINT or SIGQUIT at each step of install and
// uninstall leaves either the whole install or nothing.
func TestHelperSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGQUIT} {
		t.Run(sig.String(), func(t *testing.T) { testHelperSignal(t, sig) })
	}
}

func testHelperSignal(t *testing.T, sig syscall.Signal) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	h.installed[u.Name] = true
	bin := filepath.Join(binDir, "nsrun-helper")
	// interrupt starts args and sends sig once it has printed k steps.
	interrupt := func(k int, args ...string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := h.helperCmd(ctx, bin, args...)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var log strings.Builder
		sc := bufio.NewScanner(out)
		for seen := 0; seen < k && sc.Scan(); {
			log.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "done ") {
				seen++
			}
		}
		_ = cmd.Process.Signal(sig) // nsenter passes it on
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
		}
		err := cmd.Wait()
		if err != nil {
			return 1, log.String()
		}
		return 0, log.String()
	}
	const steps = 9
	undone := 0 // installs stopped half-way and undone
	for k := 0; k <= steps; k++ {
		code, log := interrupt(k, "install", "--user", u.Name, "--resolver", "127.0.0.1:15399")
		whole := h.simState(t, u)
		if strings.Contains(log, "undoing it") {
			undone++
		}
		if whole != (code == 0) {
			t.Errorf("install interrupted after %d steps: exit %d but whole=%v\n%s", k, code, whole, log)
		}
		if got := h.sysctl(t, "net.ipv4.ip_forward", ""); got != map[bool]string{true: "1", false: "0"}[whole] {
			t.Errorf("install interrupted after %d steps: ip_forward %s with whole=%v", k, got, whole)
		}
		if !whole {
			h.install(t, u)
		}
		// An uninstall that has begun finishes; one killed before it could
		// hold the signal leaves the whole install.
		code, log = interrupt(k, "uninstall", "--user", u.Name)
		whole = h.simState(t, u)
		if whole && code == 0 {
			t.Errorf("uninstall interrupted after %d steps: exit 0 but the install is left\n%s", k, log)
		}
		if got := h.sysctl(t, "net.ipv4.ip_forward", ""); got != map[bool]string{true: "1", false: "0"}[whole] {
			t.Errorf("uninstall interrupted after %d steps: ip_forward %s with whole=%v", k, got, whole)
		}
		if whole {
			if r := h.helper(t, "uninstall", "--user", u.Name); r.Code != 0 {
				t.Fatalf("uninstall: %s %s", r.Stdout, r.Stderr)
			}
		}
	}
	t.Logf("%d of %d interrupted installs stopped half-way and were undone", undone, steps+1)
	if undone == 0 {
		t.Error("no install was interrupted half-way: the test proves nothing")
	}
}

// TestHelperConcurrentInstalls: ten installs and uninstalls for two users
// at once end with distinct /30s, whole-or-nothing installs and the right
// ip_forward.
func TestHelperConcurrentInstalls(t *testing.T) {
	ua, ub := unprivileged(t), secondUser(t)
	h := newSimHost(t, false)
	h.installed[ua.Name], h.installed[ub.Name] = true, true
	for round := 0; round < 2; round++ {
		var wg sync.WaitGroup
		errs := make(chan string, 10)
		for i := 0; i < 10; i++ {
			u := []testUser{ua, ub}[i%2]
			verb := []string{"install", "uninstall"}[(i/2+round)%2]
			if i >= 8 {
				verb = "install" // both end installed in round 0, at least once
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				args := []string{verb, "--user", u.Name}
				if verb == "install" {
					args = append(args, "--resolver", "127.0.0.1:15399")
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				defer cancel()
				var out strings.Builder
				cmd := h.helperCmd(ctx, filepath.Join(binDir, "nsrun-helper"), args...)
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Run(); err != nil {
					errs <- fmt.Sprintf("%s %s: %v\n%s", verb, u.Name, err, out.String())
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
		wa, wb := h.simState(t, ua), h.simState(t, ub)
		if wa && wb {
			a, b := readRecord(t, ua), readRecord(t, ub)
			if a.HostAddr.Overlaps(b.HostAddr) {
				t.Errorf("round %d: two users share a /30: %s %s", round, a.HostAddr, b.HostAddr)
			}
		}
		if got, want := h.sysctl(t, "net.ipv4.ip_forward", ""), map[bool]string{true: "1", false: "0"}[wa || wb]; got != want {
			t.Errorf("round %d: installed %v/%v, ip_forward %s, want %s", round, wa, wb, got, want)
		}
	}
	for _, u := range []testUser{ua, ub} {
		if r := h.helper(t, "uninstall", "--user", u.Name); r.Code != 0 {
			t.Errorf("uninstall %s: %s", u.Name, r.Stderr)
		}
	}
	if got := h.sysctl(t, "net.ipv4.ip_forward", ""); got != "0" {
		t.Errorf("ip_forward after every uninstall: %s", got)
	}
	if got := h.sh(t, "nft list tables"); strings.Contains(got, "nsrun") {
		t.Errorf("tables left: %s", got)
	}
}

// TestHelperSudoConfig: under sudo (SUDO_UID set), flags that choose host
// addresses or the resolver are refused unless the admin's root-owned
// config allows them. The test builds a helper whose config path is fixed
// at build time to a folder of its own: no user of an installed helper can
// point it elsewhere.
func TestHelperSudoConfig(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "helper.conf")
	bin := filepath.Join(dir, "nsrun-helper")
	build := exec.Command("go", "build", "-o", bin, "-ldflags", "-X main.adminConfig="+conf, "../cmd/nsrun-helper")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}
	sudo := func(args ...string) result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := h.helperCmd(ctx, bin, append([]string{"install", "--dry-run"}, args...)...)
		cmd.Env = append(cmd.Env, fmt.Sprintf("SUDO_UID=%d", u.UID), "SUDO_USER="+u.Name)
		return run(t, cmd)
	}
	refused := func(r result, want string) {
		t.Helper()
		if r.Code == 0 || !strings.Contains(r.Stderr, want) {
			t.Errorf("exit %d, %q; want a refusal saying %q", r.Code, r.Stderr, want)
		}
	}
	// No config: every such flag is refused under sudo.
	refused(sudo("--host-cidr", "10.200.0.0/24"), "--host-cidr: under sudo only the admin picks host ranges: set host-cidr in the root-owned "+conf)
	refused(sudo("--runs-cidr", "10.201.0.0/19"), "--runs-cidr: under sudo only the admin picks host ranges")
	refused(sudo("--resolver", "127.0.0.1:22"), "--resolver: under sudo only the admin picks where guests' DNS goes")
	if r := sudo(); r.Code != 0 {
		t.Errorf("under sudo without flags: exit %d %s", r.Code, r.Stderr)
	}
	// doas and pkexec do not name the user as sudo does: refused.
	for _, v := range []string{"DOAS_USER", "PKEXEC_UID"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := h.helperCmd(ctx, bin, "install", "--dry-run", "--user", u.Name, "--host-cidr", "10.200.0.0/24")
		cmd.Env = append(cmd.Env, v+"="+u.Name)
		refused(run(t, cmd), v+" is set: run nsrun-helper with sudo")
		cancel()
	}
	// As root without sudo, the flags are the admin's own choice.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r := run(t, h.helperCmd(ctx, bin, "install", "--dry-run", "--user", u.Name, "--host-cidr", "10.200.0.0/24", "--resolver", "127.0.0.1:22")); r.Code != 0 {
		t.Errorf("as root with --user: exit %d %s", r.Code, r.Stderr)
	}
	// With the admin's config: ranges inside it, and its resolver.
	if err := os.WriteFile(conf, []byte("# test\nhost-cidr = 10.200.0.0/16\nruns-cidr = 10.201.0.0/16\nresolver = 127.0.0.1:15399\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := sudo()
	if r.Code != 0 || !strings.Contains(r.Stdout, "10.200.0.1/30") || !strings.Contains(r.Stdout, "dnat ip to 127.0.0.1:15399") {
		t.Errorf("the config's ranges and resolver are not the defaults: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := sudo("--host-cidr", "10.200.5.0/24", "--runs-cidr", "10.201.32.0/19", "--resolver", "127.0.0.1:15399"); r.Code != 0 || !strings.Contains(r.Stdout, "10.200.5.1/30") {
		t.Errorf("ranges inside the config's: exit %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	refused(sudo("--host-cidr", "10.100.0.0/24"), "--host-cidr: 10.100.0.0/24 is outside the admin's host-cidr 10.200.0.0/16")
	refused(sudo("--runs-cidr", "10.0.0.0/8"), "--runs-cidr: 10.0.0.0/8 is outside the admin's runs-cidr 10.201.0.0/16")
	refused(sudo("--resolver", "127.0.0.1:22"), "--resolver: under sudo only the admin picks")
	// A config others may write is no admin's.
	if err := os.Chmod(conf, 0o666); err != nil {
		t.Fatal(err)
	}
	refused(sudo(), "refusing to read it")
	if err := os.Chmod(conf, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("host-cidr = 10.200.0.0/16\nbogus = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	refused(sudo(), conf+":2: unknown key \"bogus\"")
}

// listenInGateway starts probe listen ADDR inside u's gateway, as u, until
// the test ends.
func listenInGateway(t *testing.T, u testUser, addr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cmd := u.command(ctx, "nsenter", "--preserve-credentials", "--user="+install.UserNSPath(u.UID), "--net="+install.NetNSPath(u.UID),
		filepath.Join(binDir, "probe"), "listen", addr)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if line, _ := bufio.NewReader(out).ReadString('\n'); strings.TrimSpace(line) != "listening" {
		t.Fatalf("listener in %s's gateway: %q", u.Name, line)
	}
}

// TestHelperRulesetFlushed: after every nsrun table of the (simulated)
// host is gone, as after `flush ruleset` or an nftables reload, the next
// install of one user puts back the guard for every recorded user and
// forwarding still only for nsrun: the guard is built from the helper's
// records and its saved state, not from what is left of the tables.
func TestHelperRulesetFlushed(t *testing.T) {
	ua, ub := unprivileged(t), secondUser(t)
	h := newSimHost(t, false)
	a, _ := h.wire(t, "a", 1)
	b, bAddr := h.wire(t, "b", 2)
	b.start(t, "listen", bAddr+":7020")
	h.install(t, ua)
	rb := h.install(t, ub, "--runs-cidr", "10.98.0.0/19")
	listenInGateway(t, ub, "0.0.0.0:7031")
	bGW := rb.Gateway.Addr().String() + ":7031"
	check := func(when string, want string) {
		t.Helper()
		if r := inGateway(t, ua, "probe dial "+bGW+" 1s"); !strings.HasPrefix(r.Stdout, want) {
			t.Errorf("%s: A's gateway -> B's gateway: exit %d %q %q, want %s", when, r.Code, r.Stdout, r.Stderr, want)
		}
		if out := probeIn(t, a.Name, "dial", bAddr+":7020", "1s"); !strings.HasPrefix(out, want) {
			t.Errorf("%s: a -> b through the host (forwarding was off): %q, want %s", when, out, want)
		}
	}
	check("installed", "unreachable")
	h.sh(t, fmt.Sprintf("nft delete table inet nsrun-guard; nft delete table inet %s; nft delete table inet %s",
		install.TableName(ua.UID), install.TableName(ub.UID)))
	if got := h.sh(t, "nft list tables"); strings.Contains(got, "nsrun") {
		t.Fatalf("tables left after deleting them: %s", got)
	}
	// Control: with the tables gone the attacks work, and the sysctls of
	// the host end, which need no nftables, are still there.
	check("tables deleted", "ok ")
	for key, want := range map[string]string{"rp_filter": "1", "arp_ignore": "1", "arp_announce": "2"} {
		if got := h.sysctl(t, "net.ipv4.conf."+rb.Interface+"."+key, ""); got != want {
			t.Errorf("net.ipv4.conf.%s.%s = %s, want %s", rb.Interface, key, got, want)
		}
	}
	h.install(t, ua)
	if got := h.sh(t, "nft list tables"); !strings.Contains(got, "inet "+install.TableName(ub.UID)+"\n") {
		t.Errorf("B's table is not back after A's install: %s", got)
	}
	check("A installed again", "unreachable")
	if got := h.sh(t, "nft list set inet nsrun-guard gateways"); !strings.Contains(got, `"`+rb.Interface+`"`) {
		t.Errorf("B's interface is not in the guard set: %s", got)
	}
}

// TestHelperAcceptRedirectsRestored: turning forwarding off makes the kernel
// set net.ipv4.conf.all.accept_redirects=1; the last uninstall puts back
// the value from before the first install.
func TestHelperAcceptRedirectsRestored(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	h.sysctl(t, "net.ipv4.conf.all.accept_redirects", "0")
	h.sysctl(t, "net.ipv4.conf.default.accept_redirects", "0")
	h.install(t, u)
	if r := h.helper(t, "uninstall", "--user", u.Name); r.Code != 0 {
		t.Fatalf("uninstall: %s %s", r.Stdout, r.Stderr)
	}
	delete(h.installed, u.Name)
	if got := h.sysctl(t, "net.ipv4.ip_forward", ""); got != "0" {
		t.Errorf("ip_forward after uninstall = %s, want 0", got)
	}
	for _, k := range []string{"all", "default"} {
		if got := h.sysctl(t, "net.ipv4.conf."+k+".accept_redirects", ""); got != "0" {
			t.Errorf("net.ipv4.conf.%s.accept_redirects after uninstall = %s, want 0 as before", k, got)
		}
	}
	// Control: the kernel does turn it on by itself when forwarding goes off.
	h.sysctl(t, "net.ipv4.ip_forward", "1")
	h.sysctl(t, "net.ipv4.ip_forward", "0")
	if got := h.sysctl(t, "net.ipv4.conf.all.accept_redirects", ""); got != "1" {
		t.Errorf("control: all.accept_redirects after ip_forward 1 -> 0 = %s, want 1 (the kernel's doing)", got)
	}
	if _, err := os.Stat("/run/nsrun-helper"); err == nil {
		ents, _ := os.ReadDir("/run/nsrun-helper")
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "host-") {
				ino := h.sh(t, "stat -L -c %i /proc/self/ns/net")
				if e.Name() == "host-"+strings.TrimSpace(ino)+".json" {
					t.Errorf("the saved host state outlives the last uninstall: %s", e.Name())
				}
			}
		}
	}
}

// rawRecv waits in the namespace ns for one IPv4 packet of protocol proto
// holding marker, and returns what it printed ("got SRC" or a timeout).
func rawRecv(t *testing.T, ns string, proto int, marker string) func() string {
	t.Helper()
	return rawRecvFamily(t, "AF_INET", ns, proto, marker)
}

// rawRecvFamily is rawRecv for the socket family AF_INET or AF_INET6.
func rawRecvFamily(t *testing.T, family, ns string, proto int, marker string) func() string {
	t.Helper()
	script := fmt.Sprintf(`import socket, sys
s = socket.socket(socket.%s, socket.SOCK_RAW, %d)
s.settimeout(3)
print("ready", flush=True)
try:
    while True:
        d, a = s.recvfrom(4096)
        if b%q in d:
            print("got", a[0], flush=True)
            break
except socket.timeout:
    print("timeout", flush=True)
`, family, proto, marker)
	return pyReceiver(t, "raw receiver in "+ns, "/run/netns/"+ns, script)
}

// rawSend is a python3 line sending one packet of protocol proto holding
// marker to addr from a raw socket.
func rawSend(proto int, addr, marker string) string {
	return fmt.Sprintf(`python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, %d).sendto(b"\x00\x00\x08\x00%s", ("%s", 0))'`, proto, marker, addr)
}

// TestHelperOnlyTCPUDPICMP: a GRE (47) or IPv6-in-IPv4 (41) packet from
// the gateway reaches neither the host's upstream nor the host, while the
// same packet between two namespaces wired to the host (forwarding on)
// arrives: only TCP, UDP and ICMP leave the gateway.
func TestHelperOnlyTCPUDPICMP(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, true)
	rec := h.install(t, u)
	a, _ := h.wire(t, "a", 1)
	b, bAddr := h.wire(t, "b", 2)
	for _, proto := range []int{47, 41} {
		marker := fmt.Sprintf("CTL%d", proto)
		wait := rawRecv(t, b.Name, proto, marker)
		if out, err := exec.Command("ip", "netns", "exec", a.Name, "sh", "-c", rawSend(proto, bAddr, marker)).CombinedOutput(); err != nil {
			t.Fatalf("control send: %v %s", err, out)
		}
		if got := wait(); !strings.HasPrefix(got, "got ") {
			t.Fatalf("control: protocol %d from a to b through the host: %q; the test proves nothing", proto, got)
		}
		marker = fmt.Sprintf("GW%d", proto)
		wait = rawRecv(t, b.Name, proto, marker)
		waitHost := rawRecv(t, h.Name, proto, marker)
		r := inGateway(t, u, rawSend(proto, bAddr, marker)+" && "+rawSend(proto, rec.HostAddr.Addr().String(), marker))
		if r.Code != 0 {
			t.Fatalf("send from the gateway: exit %d %s %s", r.Code, r.Stdout, r.Stderr)
		}
		if got := wait(); got != "timeout" {
			t.Errorf("protocol %d from the gateway reached the upstream: %q", proto, got)
		}
		if got := waitHost(); got != "timeout" {
			t.Errorf("protocol %d from the gateway reached the host: %q", proto, got)
		}
	}
}

// TestHelperHostUsersOutput: on the host, another user's process cannot
// open a connection to a user's gateway, over IPv4 or IPv6; the user and
// root can.
func TestHelperHostUsersOutput(t *testing.T) {
	ua, ub := unprivileged(t), secondUser(t)
	h := newSimHost(t, false)
	ra := h.install(t, ua)
	listenInGateway(t, ua, "[::]:7040")
	for _, addr := range []string{ra.Gateway.Addr().String() + ":7040", "[" + ra.Gateway6.Addr().String() + "]:7040"} {
		as := func(u *testUser) string {
			t.Helper()
			args := []string{"netns", "exec", h.Name}
			if u != nil {
				args = append(args, "setpriv", fmt.Sprintf("--reuid=%d", u.UID), fmt.Sprintf("--regid=%d", u.GID), "--clear-groups")
			}
			out, _ := exec.Command("ip", append(args, filepath.Join(binDir, "probe"), "dial", addr, "1s")...).CombinedOutput()
			return string(out)
		}
		if out := as(&ua); !strings.HasPrefix(out, "ok ") {
			t.Fatalf("control: A on the host -> A's gateway %s: %q", addr, out)
		}
		if out := as(nil); !strings.HasPrefix(out, "ok ") {
			t.Errorf("root on the host -> A's gateway %s: %q", addr, out)
		}
		if out := as(&ub); !strings.HasPrefix(out, "unreachable") || !strings.Contains(out, "timeout") {
			t.Errorf("B on the host -> A's gateway %s: %q; want it dropped (a timeout)", addr, out)
		}
	}
}

// TestHelperClosedOutput: install and uninstall whose output nobody reads
// any more (`nsrun-helper install | head -c1`) leave the whole install or
// nothing, never half of one.
func TestHelperClosedOutput(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	h.installed[u.Name] = true
	bin := filepath.Join(binDir, "nsrun-helper")
	for _, args := range [][]string{
		{"install", "--user", u.Name, "--resolver", "127.0.0.1:15399"},
		{"uninstall", "--user", u.Name},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := h.helperCmd(ctx, bin, args...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		_, _ = out.Read(b)
		out.Close()
		err = cmd.Wait()
		cancel()
		whole := h.simState(t, u)
		if want := args[0] == "install"; whole != want {
			t.Errorf("%s with its output closed: exit %v, installed %v, want %v", args[0], err, whole, want)
		}
		if got, want := h.sysctl(t, "net.ipv4.ip_forward", ""), map[bool]string{true: "1", false: "0"}[whole]; got != want {
			t.Errorf("%s with its output closed: ip_forward %s, want %s", args[0], got, want)
		}
	}
}

// TestHelperSudoStatus: under sudo, status --user shows only the sudo
// user's own install: another user's record is refused, read by nothing.
func TestHelperSudoStatus(t *testing.T) {
	ua, ub := unprivileged(t), secondUser(t)
	h := newSimHost(t, false)
	rb := h.install(t, ub, "--runs-cidr", "10.98.0.0/19")
	status := func(sudo bool, user string) result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := h.helperCmd(ctx, filepath.Join(binDir, "nsrun-helper"), "status", "--json", "--user", user)
		if sudo {
			cmd.Env = append(cmd.Env, fmt.Sprintf("SUDO_UID=%d", ua.UID), "SUDO_USER="+ua.Name)
		}
		return run(t, cmd)
	}
	// Control: root itself reads B's record.
	if r := status(false, ub.Name); r.Code != 0 || !strings.Contains(r.Stdout, rb.Gateway.String()) {
		t.Fatalf("control: status --user %s as root: exit %d %s %s", ub.Name, r.Code, r.Stdout, r.Stderr)
	}
	r := status(true, ub.Name)
	if r.Code == 0 || strings.Contains(r.Stdout+r.Stderr, rb.Gateway.Addr().String()) || !strings.Contains(r.Stderr, "under sudo, status shows only your own install") {
		t.Errorf("status --user %s under sudo as %s: exit %d %s %s; want a refusal", ub.Name, ua.Name, r.Code, r.Stdout, r.Stderr)
	}
	if r := status(true, ua.Name); strings.Contains(r.Stderr, "under sudo") || !strings.Contains(r.Stdout, fmt.Sprintf(`"uid": %d`, ua.UID)) {
		t.Errorf("status --user %s (oneself) under sudo: exit %d %s %s", ua.Name, r.Code, r.Stdout, r.Stderr)
	}
}

// TestHelperLeftoverHostState: a saved host state left by a namespace that
// had the same inode (or an install undone before its tables) changes
// nothing: an uninstall with nothing installed removes it without writing
// ip_forward, and an install saves the host as it is now.
func TestHelperLeftoverHostState(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, true)
	ino := strings.TrimSpace(h.sh(t, "stat -L -c %i /proc/self/ns/net"))
	path := "/run/nsrun-helper/host-" + ino + ".json"
	if err := os.MkdirAll("/run/nsrun-helper", 0o755); err != nil {
		t.Fatal(err)
	}
	leftover := []byte(`{"ip_forward": "0", "all_accept_redirects": "1", "default_accept_redirects": "1"}` + "\n")
	if err := os.WriteFile(path, leftover, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	if r := h.helper(t, "uninstall", "--user", u.Name); r.Code != 0 {
		t.Fatalf("uninstall: %s %s", r.Stdout, r.Stderr)
	}
	if got := h.sysctl(t, "net.ipv4.ip_forward", ""); got != "1" {
		t.Errorf("an uninstall with nothing installed set ip_forward=%s from a leftover state", got)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the leftover state is still there: %v", err)
	}
	if err := os.WriteFile(path, leftover, 0o644); err != nil {
		t.Fatal(err)
	}
	h.install(t, u)
	if got := h.sh(t, "nft list chain inet nsrun-guard forward"); strings.Contains(got, "policy drop") {
		t.Errorf("install took the leftover's ip_forward=0: the guard drops others' forwarding on a host that forwarded:\n%s", got)
	}
}
