package test

// The IPv6 uplink of issue 13, and the attacks on it, performed for real
// in a simulated host (see helper_attack_test.go): no packet leaves the
// namespaces the test made.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// wire6 gives the namespace wire made as tag number n IPv6 too: the
// simulated host's side fd99:N::1/64, the peer fd99:N::2/64 with a default
// route via the host. It returns the peer's address.
func (h *simHost) wire6(t *testing.T, tag string, n int) string {
	t.Helper()
	peer := h.Name + "-" + tag
	shOK(t, fmt.Sprintf(`ip -n %[2]s addr add fd99:%[3]d::1/64 dev hv-%[4]s nodad
ip -n %[1]s addr add fd99:%[3]d::2/64 dev eth0 nodad
ip -n %[1]s route add default via fd99:%[3]d::1`, peer, h.Name, n, tag))
	untentative(t, peer, h.Name)
	return fmt.Sprintf("fd99:%d::2", n)
}

// untentative waits until no address in the namespaces is tentative:
// neighbour discovery and router advertisements need the link-local
// addresses links get when they come up (duplicate address detection,
// about a second).
func untentative(t *testing.T, namespaces ...string) {
	t.Helper()
	if !eventually(5*time.Second, func() bool {
		for _, ns := range namespaces {
			if out, _ := exec.Command("ip", "-n", ns, "-6", "addr", "show", "tentative").CombinedOutput(); len(strings.TrimSpace(string(out))) > 0 {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("addresses of %v still tentative", namespaces)
	}
}

// TestHelperIPv6Uplink: with the helper installed in a host with IPv6, a
// guest reaches the host's own IPv6 address and a server upstream over
// IPv6, and the server sees the host's address (masquerade); the guest's
// AAAA lookups go through the bridge, the gateway and the host to the
// host's resolver.
func TestHelperIPv6Uplink(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	h.start(t, "dns", "127.0.0.1:15399", "upstream.test=198.51.100.2", "upstream.test=fd99:4::2")
	rec := h.install(t, u)
	if !rec.Gateway6.IsValid() || !rec.HostAddr6.IsValid() || rec.HostAddr6.Bits() != 64 || !rec.HostAddr6.Overlaps(rec.Gateway6) {
		t.Fatalf("record: host %s gateway %s; want a static /64 on the host link", rec.HostAddr6, rec.Gateway6)
	}
	if !strings.HasPrefix(rec.HostAddr6.String(), "fd6e:7372:") {
		t.Errorf("host address %s is not from the default pool fd6e:7372::/48", rec.HostAddr6)
	}
	up, _ := h.wire(t, "up6", 4)
	upAddr := h.wire6(t, "up6", 4)
	up.start(t, "listen", "["+upAddr+"]:8006")
	hostAddr := rec.HostAddr6.Addr().String()
	h.start(t, "listen", "["+hostAddr+"]:7006")
	out := nsrunOK(t, u, "--", "sh", "-c", "probe dial ["+hostAddr+"]:7006; probe dial ["+upAddr+"]:8006; getent ahostsv6 upstream.test | head -1")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ok ") {
		t.Fatalf("guest -> host [%s]:7006, upstream, DNS: %q", hostAddr, out)
	}
	// The upstream answers "HOSTNAME REMOTEADDR": the host's own address
	// on that link, never the gateway's or a guest's.
	if !strings.HasPrefix(lines[1], "ok ") || !strings.Contains(lines[1], " [fd99:4::1]:") {
		t.Errorf("guest -> upstream over IPv6: %q; want the upstream to see the host's fd99:4::1", lines[1])
	}
	if !strings.HasPrefix(lines[2], "fd99:4::2 ") {
		t.Errorf("AAAA of upstream.test through the bridge: %q, want fd99:4::2", lines[2])
	}
	// A dual-stack run over an IPv6 uplink says nothing about IPv6.
	for _, d := range u.runtimeDirs() {
		_ = os.Remove(d + "/.ipv6-note-shown")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r := run(t, u.nsrun(ctx, "--", "true")); strings.Contains(r.Stderr, "IPv6 stays inside") {
		t.Errorf("IPv6 note with an IPv6 uplink: %q", r.Stderr)
	}
}

// TestHelperIPv6NoHostIPv6: where the host has IPv6 off, install gives the
// gateway no IPv6, the host drops every IPv6 packet from it, and a run
// stays dual-stack inside and says so once.
func TestHelperIPv6NoHostIPv6(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	h.sysctl(t, "net.ipv6.conf.all.disable_ipv6", "1")
	h.sysctl(t, "net.ipv6.conf.default.disable_ipv6", "1")
	rec := h.install(t, u)
	if rec.Gateway6.IsValid() || rec.HostAddr6.IsValid() {
		t.Errorf("record on a host without IPv6: host %s gateway %s", rec.HostAddr6, rec.Gateway6)
	}
	if got := h.sh(t, "nft list table inet "+rec.Table); !strings.Contains(got, "meta nfproto ipv6 drop") {
		t.Errorf("host table without IPv6 does not drop it:\n%s", got)
	}
	for _, d := range u.runtimeDirs() {
		_ = os.Remove(d + "/.ipv6-note-shown")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, want := range []bool{true, false} {
		r := run(t, u.nsrun(ctx, "--", "sh", "-c", "ip -6 addr show dev eth0 | grep -c 'inet6 fd00:ac12::1/64'"))
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != "1" {
			t.Errorf("run %d: no IPv6 inside: exit %d %q %q", i+1, r.Code, r.Stdout, r.Stderr)
		}
		if got := strings.Count(r.Stderr, "IPv6 stays inside runs"); got != map[bool]int{true: 1, false: 0}[want] {
			t.Errorf("run %d: IPv6 note %d times, want it once at first: %q", i+1, got, r.Stderr)
		}
	}
}

// TestHelperIPv6Attacks: what the gateway (where the user is root) sends
// over IPv6 gets the rules IPv4 gets: a forged source, a protocol other
// than TCP, UDP and ICMPv6, a privileged source port, and any address of
// the host but the user's own host address are dropped; the same packets
// from the gateway's own address and an unprivileged port arrive.
func TestHelperIPv6Attacks(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	rec := h.install(t, u)
	up, _ := h.wire(t, "up6", 4)
	upAddr := h.wire6(t, "up6", 4)
	gw, host := rec.Gateway6.Addr().String(), rec.HostAddr6.Addr().String()
	got := up.start(t, "udp-from", "["+upAddr+"]:9999")
	dst := "[" + upAddr + "]:9999"
	// The gateway's own NAT would hide a forged source: remove it.
	r := inGateway(t, u, `set -e
nft delete table inet nsrun
ip -6 addr add fd6e:dead::7/128 dev lo nodad
probe udp-send fd6e:dead::7 `+dst+` forged
probe udp-send [`+gw+`]:700 `+dst+` privileged
probe udp-send [`+gw+`]:40000 `+dst+` genuine`)
	if r.Code != 0 {
		t.Fatalf("gateway script: exit %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if !eventually(3*time.Second, func() bool { return strings.Contains(got.all(), "genuine") }) {
		t.Fatalf("control: the genuine datagram did not arrive: %q", got.all())
	}
	time.Sleep(300 * time.Millisecond)
	if strings.Contains(got.all(), "forged") {
		t.Errorf("a datagram with a forged IPv6 source crossed the host: %q", got.all())
	}
	if strings.Contains(got.all(), ": privileged") {
		t.Errorf("a datagram from port 700 crossed the host: %q", got.all())
	}
	// Protocol 253 (for experiments, RFC 3692) over IPv6: the host itself
	// delivers it upstream (control; from its nsrun address, so that its
	// connection tracking entry does not clash with the one the
	// gateway's packet would get from masquerade: without ports, both
	// would be HOST -> UPSTREAM), the gateway's never arrives.
	wait := rawRecv6(t, up.Name, 253, "CTL253")
	h.sh(t, rawSend6(253, host, upAddr, "CTL253"))
	if got := wait(); !strings.HasPrefix(got, "got ") {
		t.Fatalf("control: protocol 253 from the host to the upstream: %q; the test proves nothing", got)
	}
	wait = rawRecv6(t, up.Name, 253, "GW253")
	if r := inGateway(t, u, rawSend6(253, gw, upAddr, "GW253")); r.Code != 0 {
		t.Fatalf("send from the gateway: exit %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if got := wait(); got != "timeout" {
		t.Errorf("protocol 253 over IPv6 from the gateway reached the upstream: %q", got)
	}
	// The host's other addresses: only the user's own host address answers.
	h.start(t, "listen", "[::]:7007")
	r = inGateway(t, u, "ip -6 route add fd99:4::/64 via "+host+" 2>/dev/null; probe dial ["+host+"]:7007 1s; probe dial [fd99:4::1]:7007 1s; true")
	if !strings.HasPrefix(r.Stdout, "ok ") || strings.Count(r.Stdout, "ok ") != 1 || !strings.Contains(r.Stdout, "timeout") {
		t.Errorf("gateway -> host [%s]:7007 and the host's [fd99:4::1]:7007: %q %q; want the first only", host, r.Stdout, r.Stderr)
	}
}

// rawRecv6 waits in the namespace ns for one IPv6 packet of protocol
// proto holding marker ("got SRC" or "timeout").
func rawRecv6(t *testing.T, ns string, proto int, marker string) func() string {
	t.Helper()
	return rawRecvFamily(t, "AF_INET6", ns, proto, marker)
}

// rawSend6 is a python3 line sending one IPv6 packet of protocol proto
// holding marker from src to addr.
func rawSend6(proto int, src, addr, marker string) string {
	return fmt.Sprintf(`python3 -c 'import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, %d); s.bind(("%s", 0)); s.sendto(b"\x00\x00\x08\x00%s", ("%s", 0))'`, proto, src, marker, addr)
}

// TestHelperIPv6UplinkPartition: `--uplink` cuts a node's IPv6 way to the
// host too.
func TestHelperIPv6UplinkPartition(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	rec := h.install(t, u)
	host := "[" + rec.HostAddr6.Addr().String() + "]:7008"
	h.start(t, "listen", host)
	r := startRun(t, u, "nodes:\n  a: {ip: 172.18.0.1, command: probe listen 0.0.0.0:9000}\n  b: {ip: 172.18.0.2, command: probe listen 0.0.0.0:9000}\n", "b     | listening")
	reach := func(node string) bool {
		return strings.HasPrefix(r.exec(t, node, "probe", "dial", host, dialTimeout).Stdout, "ok ")
	}
	if !reach("a") || !reach("b") {
		t.Fatal("nodes do not reach the host over IPv6 before any cut")
	}
	r.netOK(t, "isolate", "a")
	if !reach("a") {
		t.Error("isolate without --uplink cut a's IPv6 way to the host")
	}
	r.netOK(t, "isolate", "--uplink", "a")
	if reach("a") {
		t.Error("isolate --uplink a: a still reaches the host over IPv6")
	}
	if !reach("b") {
		t.Error("isolate --uplink a: b lost the host too")
	}
	r.netOK(t, "fullmesh")
	if !reach("a") {
		t.Error("fullmesh did not restore a's IPv6 uplink")
	}
}

// TestHelperIPv6ForwardGuard: on a host whose IPv6 forwarding was off,
// install turns it on for nsrun only: two namespaces the test wires to the
// host do not reach each other over IPv6, while a run reaches the
// upstream; the last uninstall turns IPv6 forwarding off again, and an
// interface's own forwarding (IPv6 and IPv4) back on where it was.
func TestHelperIPv6ForwardGuard(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	const fwd = "net.ipv6.conf.all.forwarding"
	a, _ := h.wire(t, "a", 1)
	h.wire6(t, "a", 1)
	b, _ := h.wire(t, "b", 2)
	bAddr := "[" + h.wire6(t, "b", 2) + "]:7020"
	b.start(t, "listen", bAddr)
	// Control: with IPv6 forwarding on and no nsrun, a reaches b.
	h.sysctl(t, fwd, "1")
	if out := probeIn(t, a.Name, "dial", bAddr, "2s"); !strings.HasPrefix(out, "ok ") {
		t.Fatalf("control a -> b over IPv6 with forwarding on: %q", out)
	}
	h.sysctl(t, fwd, "0")
	// hv-a forwards by itself (all.forwarding=0), in both families.
	own := []string{"net.ipv6.conf.hv-a.forwarding", "net.ipv4.conf.hv-a.forwarding"}
	for _, k := range own {
		h.sysctl(t, k, "1")
	}
	h.install(t, u)
	if got := h.sysctl(t, fwd, ""); got != "1" {
		t.Fatalf("%s after install = %s", fwd, got)
	}
	if out := probeIn(t, a.Name, "dial", bAddr, "1s"); !strings.HasPrefix(out, "unreachable") {
		t.Errorf("IPv6 forwarding was off before install; a -> b now: %q, want it dropped", out)
	}
	if out := nsrunOK(t, u, "--", "probe", "dial", bAddr); !strings.HasPrefix(out, "ok ") {
		t.Errorf("a run -> upstream b over IPv6: %q", out)
	}
	if r := h.helper(t, "uninstall", "--user", u.Name); r.Code != 0 {
		t.Fatalf("uninstall: %s %s", r.Stdout, r.Stderr)
	}
	delete(h.installed, u.Name)
	if got := h.sysctl(t, fwd, ""); got != "0" {
		t.Errorf("%s after the last uninstall = %s, want 0 as before", fwd, got)
	}
	// Writing all.forwarding wrote every interface's: hv-a's own is on
	// again, hv-b's off as it was.
	for _, k := range own {
		if got := h.sysctl(t, k, ""); got != "1" {
			t.Errorf("%s after the last uninstall = %s, want 1 as before", k, got)
		}
		if k := strings.Replace(k, "hv-a", "hv-b", 1); h.sysctl(t, k, "") != "0" {
			t.Errorf("%s after the last uninstall = %s, want 0 as before", k, h.sysctl(t, k, ""))
		}
	}
}

// TestHelperIPv6OnlyDNS: a node of an IPv6-only subnet asks its bridge's
// IPv6 address for names (its resolv.conf names nothing else); the run
// relays the query over UDP and TCP to the host's resolver, and the node
// reaches the upstream over IPv6.
func TestHelperIPv6OnlyDNS(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	h.start(t, "dns", "127.0.0.1:15399", "upstream.test=198.51.100.2", "upstream.test=fd99:4::2")
	h.install(t, u)
	up, _ := h.wire(t, "up6", 4)
	upAddr := h.wire6(t, "up6", 4)
	up.start(t, "listen", "["+upAddr+"]:8006")
	r := startRun(t, u, "subnets:\n  v6: \"fd00:6::/64\"\nnodes:\n  a:\n    ip6: \"fd00:6::5\"\n    command: probe listen [::]:9000\n", "a     | listening")
	if got := r.exec(t, "a", "cat", "/etc/resolv.conf").Stdout; !strings.Contains(got, "nameserver fd00:6::fe") {
		t.Fatalf("resolv.conf of an IPv6-only node: %q", got)
	}
	if got := r.exec(t, "a", "getent", "ahostsv6", "upstream.test").Stdout; !strings.HasPrefix(got, "fd99:4::2 ") {
		t.Errorf("AAAA of upstream.test from an IPv6-only node (UDP): %q", got)
	}
	// The same question over TCP (a DNS message with its length first).
	tcp := `import socket, struct
q = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x08upstream\x04test\x00" + struct.pack(">HH", 28, 1)
s = socket.create_connection(("fd00:6::fe", 53), timeout=5)
s.sendall(struct.pack(">H", len(q)) + q)
n = struct.unpack(">H", s.recv(2))[0]
a = b""
while len(a) < n:
    a += s.recv(n - len(a))
print(socket.inet_ntop(socket.AF_INET6, a[-16:]))`
	if got := strings.TrimSpace(r.exec(t, "a", "python3", "-c", tcp).Stdout); got != "fd99:4::2" {
		t.Errorf("AAAA of upstream.test from an IPv6-only node (TCP): %q", got)
	}
	if got := r.exec(t, "a", "probe", "dial", "upstream.test:8006").Stdout; !strings.HasPrefix(got, "ok ") || !strings.Contains(got, "[fd99:4::1]:") {
		t.Errorf("an IPv6-only node -> upstream.test:8006: %q; want it reached, from the host's address", got)
	}
}

// TestHelperIPv6KeepsRARoutes: a host that takes IPv6 routes from router
// advertisements (accept_ra=1) would lose them once IPv6 forwarding is on
// (the kernel then ignores advertisements there), so install leaves IPv6
// forwarding off and the gateway without IPv6, and says why and how to
// have it; with accept_ra=2 the same install gets its IPv6 uplink.
func TestHelperIPv6KeepsRARoutes(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	h.sysctl(t, "net.ipv6.conf.all.forwarding", "0")
	shOK(t, `ip -n `+h.Name+` link add ra0 type veth peer name ra1
ip netns exec `+h.Name+` sysctl -qw net.ipv6.conf.ra0.accept_ra=1
ip -n `+h.Name+` link set ra1 up
ip -n `+h.Name+` link set ra0 up
ip -n `+h.Name+` -6 route add fd99:7261::/64 dev ra0 proto ra`)
	h.mu.Lock()
	h.installed[u.Name] = true
	h.mu.Unlock()
	r := h.helper(t, "install", "--user", u.Name, "--resolver", "127.0.0.1:15399")
	if r.Code != 0 {
		t.Fatalf("install: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "no IPv6 uplink: ra0 takes its IPv6 routes from router advertisements") ||
		!strings.Contains(r.Stdout, "net.ipv6.conf.ra0.accept_ra=2") {
		t.Errorf("install does not say why there is no IPv6 uplink, and the fix:\n%s", r.Stdout)
	}
	if rec := readRecord(t, u); rec.Gateway6.IsValid() || rec.HostAddr6.IsValid() {
		t.Errorf("record with IPv6 on a host routed by advertisements: host %s gateway %s", rec.HostAddr6, rec.Gateway6)
	}
	if got := h.sysctl(t, "net.ipv6.conf.all.forwarding", ""); got != "0" {
		t.Errorf("IPv6 forwarding turned on (%s) on a host routed by advertisements", got)
	}
	if got := h.sh(t, "ip -6 route show proto ra"); !strings.Contains(got, "fd99:7261::/64 dev ra0") {
		t.Errorf("the host's advertised route is gone: %q", got)
	}

	h.sysctl(t, "net.ipv6.conf.ra0.accept_ra", "2")
	rec := h.install(t, u)
	if !rec.Gateway6.IsValid() || !rec.HostAddr6.IsValid() {
		t.Errorf("with accept_ra=2 the gateway has no IPv6: host %s gateway %s", rec.HostAddr6, rec.Gateway6)
	}
	if got := h.sysctl(t, "net.ipv6.conf.all.forwarding", ""); got != "1" {
		t.Errorf("with accept_ra=2, IPv6 forwarding is %s after install", got)
	}
}

// TestHelperIPv6InvalidNotForwarded: masquerade only sees packets that
// connection tracking follows. What it calls invalid (an ICMPv6 echo reply
// that answers no request, a TCP segment with SYN and FIN) would cross the
// host with the gateway's own source, not NATed; the host drops them. (IPv4
// too: an ICMP echo reply.)
func TestHelperIPv6InvalidNotForwarded(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	rec := h.install(t, u)
	up, upAddr4 := h.wire(t, "up6", 4)
	upAddr := h.wire6(t, "up6", 4)
	gw := rec.Gateway6.Addr().String()
	// Control: an echo request is NATed and arrives from the host's address.
	wait := rawRecv6(t, up.Name, 58, "REQ")
	if r := inGateway(t, u, `python3 -c 'import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 58); s.sendto(b"\x80\x00\x00\x00\x00\x01\x00\x01REQ", ("`+upAddr+`", 0))'`); r.Code != 0 {
		t.Fatalf("send from the gateway: %s %s", r.Stdout, r.Stderr)
	}
	if got := wait(); got != "got fd99:4::1" {
		t.Fatalf("control: echo request from the gateway: %q, want it from the host's fd99:4::1", got)
	}
	wait = rawRecv6(t, up.Name, 58, "REPLY")
	if r := inGateway(t, u, `python3 -c 'import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 58); s.sendto(b"\x81\x00\x00\x00\x00\x02\x00\x01REPLY", ("`+upAddr+`", 0))'`); r.Code != 0 {
		t.Fatalf("send from the gateway: %s %s", r.Stdout, r.Stderr)
	}
	if got := wait(); got != "timeout" {
		t.Errorf("an unsolicited ICMPv6 echo reply from the gateway %s crossed the host: %q", gw, got)
	}
	// TCP SYN+FIN from port 40000 (checksum by the kernel: IPV6_CHECKSUM 16).
	wait = rawRecv6(t, up.Name, 6, "SYNFIN")
	if r := inGateway(t, u, `python3 -c 'import socket, struct; s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 6); s.setsockopt(41, 7, 16); s.sendto(struct.pack("!HHIIBBHHH", 40000, 9999, 1, 0, 0x50, 0x03, 65535, 0, 0) + b"SYNFIN", ("`+upAddr+`", 0))'`); r.Code != 0 {
		t.Fatalf("send from the gateway: %s %s", r.Stdout, r.Stderr)
	}
	if got := wait(); got != "timeout" {
		t.Errorf("a TCP SYN+FIN from the gateway %s crossed the host: %q", gw, got)
	}
	// IPv4: an echo reply from the gateway's 172.18.255.x.
	wait = rawRecv(t, up.Name, 1, "REPLY4")
	if r := inGateway(t, u, `python3 -c 'import socket, struct
m = b"\x00\x00\x00\x00\x00\x01\x00\x00REPLY4"
c = sum(struct.unpack("!%dH" % (len(m) // 2), m)); c = (c & 0xffff) + (c >> 16)
socket.socket(socket.AF_INET, socket.SOCK_RAW, 1).sendto(m[:2] + struct.pack("!H", ~c & 0xffff) + m[4:], ("`+upAddr4+`", 0))'`); r.Code != 0 {
		t.Fatalf("send from the gateway: %s %s", r.Stdout, r.Stderr)
	}
	if got := wait(); got != "timeout" {
		t.Errorf("an unsolicited ICMP echo reply from the gateway %s crossed the host: %q", rec.Gateway.Addr(), got)
	}
}

// TestHelperIPv6ForwardingUpgrade: a host state saved by a helper before
// the IPv6 uplink has no net.ipv6.conf.all.forwarding (that helper never
// changed it). The next install, which turns IPv6 forwarding on, must
// still limit it to nsrun interfaces, and the last uninstall turn it off.
func TestHelperIPv6ForwardingUpgrade(t *testing.T) {
	u, u2 := unprivileged(t), secondUser(t)
	h := newSimHost(t, false)
	const fwd = "net.ipv6.conf.all.forwarding"
	a, _ := h.wire(t, "a", 1)
	h.wire6(t, "a", 1)
	b, _ := h.wire(t, "b", 2)
	bAddr := "[" + h.wire6(t, "b", 2) + "]:7021"
	b.start(t, "listen", bAddr)
	// u's install as a helper before the IPv6 uplink left it: IPv6
	// forwarding as it was, the saved state without ipv6_forwarding.
	h.install(t, u)
	ino := strings.TrimSpace(h.sh(t, "stat -L -c %i /proc/self/ns/net"))
	if err := os.WriteFile("/run/nsrun-helper/host-"+ino+".json", []byte(`{"ip_forward": "0", "all_accept_redirects": "1", "default_accept_redirects": "1"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.sysctl(t, fwd, "0")
	rec := h.install(t, u2)
	if !rec.Gateway6.IsValid() {
		t.Fatalf("second install has no IPv6 uplink: %+v", rec)
	}
	if out := probeIn(t, a.Name, "dial", bAddr, "1s"); !strings.HasPrefix(out, "unreachable") {
		t.Errorf("IPv6 forwarding was off before any install; a -> b now: %q, want it dropped", out)
	}
	for _, user := range []testUser{u2, u} {
		if r := h.helper(t, "uninstall", "--user", user.Name); r.Code != 0 {
			t.Fatalf("uninstall %s: %s %s", user.Name, r.Stdout, r.Stderr)
		}
		delete(h.installed, user.Name)
	}
	if got := h.sysctl(t, fwd, ""); got != "0" {
		t.Errorf("%s after the last uninstall = %s, want 0 as before", fwd, got)
	}
}

// TestHelperIPv6PortRuleHeaders: the privileged-port rule finds UDP behind
// IPv6 extension headers and in fragments (the host reassembles before
// the rule): a datagram from port 700 behind a destination-options
// header, and one of 3000 bytes (two fragments), are dropped; the same
// from port 40000 arrive.
func TestHelperIPv6PortRuleHeaders(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	rec := h.install(t, u)
	up, _ := h.wire(t, "up6", 4)
	upAddr := h.wire6(t, "up6", 4)
	gw := rec.Gateway6.Addr().String()
	got := up.start(t, "udp-from", "["+upAddr+"]:9999")
	send := func(port int, marker string, dstopts bool, size int) string {
		anc := "[]"
		if dstopts {
			anc = `[(41, 59, b"\x00\x00\x01\x04\x00\x00\x00\x00")]`
		}
		return fmt.Sprintf(`python3 -c 'import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("%s", %d))
m = b"%s"; m = m + b"." * (%d - len(m))
s.sendmsg([m], %s, 0, ("%s", 9999))'`, gw, port, marker, size, anc, upAddr)
	}
	r := inGateway(t, u, "set -e\n"+send(40000, "genuine-opts", true, 20)+"\n"+send(40001, "genuine-frag", false, 3000)+"\n"+
		send(700, "privileged-opts", true, 20)+"\n"+send(701, "privileged-frag", false, 3000))
	if r.Code != 0 {
		t.Fatalf("gateway script: exit %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if !eventually(3*time.Second, func() bool {
		return strings.Contains(got.all(), "genuine-opts") && strings.Contains(got.all(), "genuine-frag")
	}) {
		t.Fatalf("control: the genuine datagrams did not arrive: %q", got.all())
	}
	time.Sleep(300 * time.Millisecond)
	if strings.Contains(got.all(), "privileged") {
		t.Errorf("a datagram from a port below 1024 crossed the host behind a header or in fragments: %q", got.all())
	}
}

// TestHelperIPv6NeighbourFlood: neighbour solicitations from made-up
// link-local sources, which would each become an entry of the host's
// neighbour table (a table the whole host shares, full at gc_thresh3),
// make none; the same solicitation from the gateway's own link-local
// address, fe80::2, is heard (its made-up MAC address becomes that
// neighbour's).
func TestHelperIPv6NeighbourFlood(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	rec := h.install(t, u)
	r := inGateway(t, u, "ip -6 -o addr show dev uplink scope link")
	if r.Code != 0 || strings.Count(r.Stdout, "inet6 ") != 1 || !strings.Contains(r.Stdout, "inet6 fe80::2/64") {
		t.Fatalf("gateway's link-local addresses: exit %d %q %q; want fe80::2/64 only", r.Code, r.Stdout, r.Stderr)
	}
	r = inGateway(t, u, "python3 - "+rec.HostAddr6.Addr().String()+" <<'EOF'\n"+neighbourSolicits+"EOF\n")
	if r.Code != 0 {
		t.Fatalf("send solicitations in the gateway: exit %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	var neigh string
	if !eventually(3*time.Second, func() bool {
		neigh = h.sh(t, "ip -6 neigh show dev "+rec.Interface)
		return strings.Contains(neigh, "fe80::2 lladdr 02:00:00:00:ff:ff")
	}) {
		t.Fatalf("control: the solicitation from fe80::2 did not reach the host's neighbour table; the test proves nothing:\n%s", neigh)
	}
	time.Sleep(300 * time.Millisecond)
	neigh = h.sh(t, "ip -6 neigh show dev "+rec.Interface)
	if n := strings.Count(neigh, "fe80::1:"); n > 0 {
		t.Errorf("%d of 200 solicitations from made-up link-local sources became neighbours of the host:\n%s", n, neigh)
	}
}

// neighbourSolicits is a python3 script that sends, on the gateway's
// uplink, 200 neighbour solicitations for the host end (argv[1]) from
// fe80::1:N with MAC address 02:00:00:01:0N (N = 1..200), then one from
// fe80::2 with MAC address 02:00:00:00:ff:ff, each with its source
// link-layer address option.
const neighbourSolicits = `import socket, struct, sys
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
target = socket.inet_pton(socket.AF_INET6, sys.argv[1])
dst = bytes.fromhex("ff0200000000000000000001ff") + target[13:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("uplink", 0))
def solicit(src, mac):
    src = socket.inet_pton(socket.AF_INET6, src)
    body = struct.pack("!BBHI", 135, 0, 0, 0) + target + bytes([1, 1]) + mac
    pseudo = src + dst + struct.pack("!I", len(body)) + bytes([0, 0, 0, 58])
    body = body[:2] + struct.pack("!H", csum(pseudo + body)) + body[4:]
    ip6 = struct.pack("!IHBB", 6 << 28, len(body), 58, 255) + src + dst
    s.send(b"\x33\x33" + dst[12:] + mac + b"\x86\xdd" + ip6 + body)
for n in range(1, 201):
    solicit("fe80::1:%x" % n, bytes([2, 0, 0, 1, n >> 8, n & 255]))
solicit("fe80::2", bytes([2, 0, 0, 0, 255, 255]))
`
