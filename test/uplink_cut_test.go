package test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUplinkCutPublishedPort: after `isolate --uplink n1`, the host no
// longer reaches n1's published port (the port proxy dials n1 from the
// bridge namespace, which forwarding rules never see), nor gets more of
// a connection it had; n2's port still works; fullmesh gives both back.
func TestUplinkCutPublishedPort(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	r := startRun(t, u, `
nodes:
  n1: {ip: 172.18.0.1, command: "sh -c 'probe tick 0.0.0.0:9001 & exec probe listen 0.0.0.0:9000'", ports: ["18481:9000", "18483:9001"]}
  n2: {ip: 172.18.0.2, command: "probe listen 0.0.0.0:9000", ports: ["18482:9000"]}
`, "n2    | listening")
	dial := func(port string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return run(t, u.command(ctx, filepath.Join(binDir, "probe"), "dial", "127.0.0.1:"+port, dialTimeout)).Stdout
	}
	if out := dial("18481"); !strings.HasPrefix(out, "ok n1 ") {
		t.Fatalf("the host -> n1's published port before any cut: %q", out)
	}
	r.netOK(t, "isolate", "n1")
	if out := dial("18481"); !strings.HasPrefix(out, "ok n1 ") {
		t.Errorf("isolate without --uplink cut n1's published port: %q", out)
	}
	// An established connection through the port: n1 ticks every 50 ms.
	ticks := followTicks(t, "127.0.0.1:18483")
	ticksSince := func(from time.Time) int { n, _ := ticks(from); return n }
	start := time.Now()
	if !eventually(5*time.Second, func() bool { return ticksSince(start) >= 3 }) {
		t.Fatal("no ticks through the published port before the cut")
	}
	r.netOK(t, "isolate", "--uplink", "n1")
	cut := time.Now()
	time.Sleep(1300 * time.Millisecond)
	if n := ticksSince(cut.Add(300 * time.Millisecond)); n > 0 {
		t.Errorf("isolate --uplink n1: %d ticks of an established connection through n1's published port arrived during the cut", n)
	}
	if out := dial("18481"); strings.Contains(out, "n1") {
		t.Errorf("isolate --uplink n1: the host still reaches n1's published port: %q", out)
	}
	if out := dial("18482"); !strings.HasPrefix(out, "ok n2 ") {
		t.Errorf("isolate --uplink n1: n2's published port: %q", out)
	}
	r.netOK(t, "fullmesh")
	if out := dial("18481"); !strings.HasPrefix(out, "ok n1 ") {
		t.Errorf("after fullmesh, n1's published port: %q", out)
	}
	healed := time.Now()
	if !eventually(10*time.Second, func() bool { return ticksSince(healed) >= 3 }) {
		t.Error("after fullmesh, the established connection through n1's published port did not resume")
	}
}

// TestHelperUplinkCutDNSRelay: a node of an IPv6-only subnet resolves
// names through the run's DNS relay, in the bridge namespace, which asks
// the host's resolver over the IPv4 uplink: after `isolate --uplink a`
// that way is closed for a (UDP and TCP), not for b, and fullmesh opens
// it again.
func TestHelperUplinkCutDNSRelay(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	h.start(t, "dns", "127.0.0.1:15399", "upstream.test=198.51.100.2", "upstream.test=fd99:4::2")
	h.install(t, u)
	r := startRun(t, u, "subnets:\n  v6: \"fd00:6::/64\"\nnodes:\n  a: {ip6: \"fd00:6::5\", command: \"probe listen [::]:9000\"}\n  b: {ip6: \"fd00:6::6\", command: \"probe listen [::]:9000\"}\n", "b     | listening")
	udp := func(node string) bool {
		t.Helper()
		return strings.HasPrefix(r.exec(t, node, "getent", "ahostsv6", "upstream.test").Stdout, "fd99:4::2 ")
	}
	const tcpQuery = `import socket, struct
q = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x08upstream\x04test\x00" + struct.pack(">HH", 28, 1)
s = socket.create_connection(("fd00:6::fe", 53), timeout=3)
s.settimeout(3)
s.sendall(struct.pack(">H", len(q)) + q)
n = struct.unpack(">H", s.recv(2))[0]
a = b""
while len(a) < n:
    a += s.recv(n - len(a))
print(socket.inet_ntop(socket.AF_INET6, a[-16:]))`
	tcp := func(node string) bool {
		t.Helper()
		return strings.TrimSpace(r.exec(t, node, "python3", "-c", tcpQuery).Stdout) == "fd99:4::2"
	}
	if !udp("a") || !tcp("a") {
		t.Fatal("a does not resolve through the relay before any cut")
	}
	r.netOK(t, "isolate", "--uplink", "a")
	if udp("a") {
		t.Error("isolate --uplink a: a still resolves through the relay (UDP)")
	}
	if tcp("a") {
		t.Error("isolate --uplink a: a still resolves through the relay (TCP)")
	}
	if !udp("b") || !tcp("b") {
		t.Error("isolate --uplink a: b no longer resolves")
	}
	r.netOK(t, "fullmesh")
	if !udp("a") || !tcp("a") {
		t.Error("after fullmesh, a does not resolve through the relay")
	}
	// A subnet of one node has no bridge (plan.Bridge.Deferred): its
	// router address comes on the node's link as the link is wired, and
	// the relay, started meanwhile, listens on it all the same.
	solo := startRun(t, u, "subnets:\n  v6: \"fd00:6::/64\"\nnodes:\n  solo: {ip6: \"fd00:6::7\", command: \"probe listen [::]:9000\"}\n", "solo  | listening")
	if out := solo.exec(t, "solo", "getent", "ahostsv6", "upstream.test").Stdout; !strings.HasPrefix(out, "fd99:4::2 ") {
		t.Errorf("a run of one IPv6-only node does not resolve through the relay: %q", out)
	}
}

// TestUpPortBindAddress: `ports:` takes the host address to listen on
// ("[::1]:P:N", "127.0.0.2:P:N"): the port answers there and nowhere
// else. Any local user reaches a published port, as with docker -p: the
// second test user dials it too.
func TestUpPortBindAddress(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	p6, p4 := freePort(t), freePort(t)
	startRun(t, u, fmt.Sprintf(`
nodes:
  n1: {ip: 172.18.0.1, command: "probe listen 0.0.0.0:9000", ports: ["[::1]:%d:9000", "127.0.0.2:%d:9000"]}
`, p6, p4), "n1    | listening")
	dial := func(as testUser, addr string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return run(t, as.command(ctx, filepath.Join(binDir, "probe"), "dial", addr, dialTimeout)).Stdout
	}
	if out := dial(u, fmt.Sprintf("[::1]:%d", p6)); !strings.HasPrefix(out, "ok n1 ") {
		t.Errorf("[::1]:%d: %q, want n1", p6, out)
	}
	if out := dial(u, fmt.Sprintf("127.0.0.2:%d", p4)); !strings.HasPrefix(out, "ok n1 ") {
		t.Errorf("127.0.0.2:%d: %q, want n1", p4, out)
	}
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", p6), fmt.Sprintf("127.0.0.1:%d", p4)} {
		if out := dial(u, addr); !strings.HasPrefix(out, "refused") {
			t.Errorf("%s: %q, want refused (the port listens on its address only)", addr, out)
		}
	}
	if os.Getenv("NSRUN_TEST_USER2") != "" {
		if out := dial(secondUser(t), fmt.Sprintf("[::1]:%d", p6)); !strings.HasPrefix(out, "ok n1 ") {
			t.Errorf("another user -> [::1]:%d: %q; the README says any local user reaches a published port", p6, out)
		}
	}
}

// TestUpUDPPort: "HOST:53/udp" publishes a node's UDP port on the host's
// 127.0.0.1, beside a TCP port of the same number: the datagrams of two
// clients cross both ways, each client gets its own answers, from the
// address it wrote to; the dry run names the protocol; `isolate --uplink`
// of the node stops the port's datagrams (as it stops its TCP
// connections), and fullmesh lets them through again.
func TestUpUDPPort(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	port := freePort(t)
	yaml := fmt.Sprintf(`
nodes:
  dns: {ip: 172.18.0.2, command: "sh -c 'probe listen 0.0.0.0:53 & exec probe udp-echo 0.0.0.0:53'", ports: ["%d:53/udp", "%d:53"]}
`, port, port)
	dry := u.up(t, project(t, map[string]string{"nsrun.yaml": yaml}), "--dry-run")
	if want := fmt.Sprintf("publishes 127.0.0.1:%d/udp -> 172.18.0.2:53/udp\n", port); dry.Code != 0 || !strings.Contains(dry.Stdout, want) ||
		!strings.Contains(dry.Stdout, fmt.Sprintf("publishes 127.0.0.1:%d -> 172.18.0.2:53\n", port)) {
		t.Errorf("dry run: exit %d, want %q in\n%s%s", dry.Code, want, dry.Stdout, dry.Stderr)
	}
	r := startRun(t, u, yaml, "dns   | listening")
	published := fmt.Sprintf("127.0.0.1:%d", port)
	var clients []*net.UDPConn
	for range 2 {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	// ask sends msg from client i and returns the answer ("" for none
	// within wait), failing when it came from anywhere but the port.
	ask := func(i int, msg string, wait time.Duration) string {
		t.Helper()
		c := clients[i]
		if _, err := c.WriteToUDPAddrPort([]byte(msg), netip.MustParseAddrPort(published)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		for {
			_ = c.SetReadDeadline(time.Now().Add(wait))
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return ""
			}
			if from.String() != published {
				t.Errorf("client %d: an answer from %s, not %s", i, from, published)
			}
			if string(buf[:n]) == msg {
				return msg
			}
			// an answer to an earlier datagram, sent during a cut: read on
		}
	}
	if !eventually(10*time.Second, func() bool { return ask(0, "first", 500*time.Millisecond) != "" }) {
		t.Fatalf("no answer through the published UDP port %s:\n%s", published, r.out.all())
	}
	for j := range 5 {
		for i := range clients {
			if msg := fmt.Sprintf("client %d datagram %d", i, j); ask(i, msg, 5*time.Second) != msg {
				t.Errorf("%s: no answer through %s", msg, published)
			}
		}
	}
	// The TCP port of the same number goes to the node's TCP listener.
	if c, err := net.DialTimeout("tcp", published, 5*time.Second); err != nil {
		t.Errorf("the TCP port beside the UDP one: %v", err)
	} else {
		buf := make([]byte, 100)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := c.Read(buf)
		c.Close()
		if !strings.HasPrefix(string(buf[:n]), "dns ") {
			t.Errorf("the TCP port beside the UDP one answered %q", buf[:n])
		}
	}
	r.netOK(t, "isolate", "--uplink", "dns")
	for i := range clients {
		if got := ask(i, fmt.Sprintf("cut %d", i), time.Second); got != "" {
			t.Errorf("isolate --uplink dns: client %d still gets answers through the published UDP port: %q", i, got)
		}
	}
	r.netOK(t, "fullmesh")
	for i := range clients {
		msg := fmt.Sprintf("healed %d", i)
		if !eventually(5*time.Second, func() bool { return ask(i, msg, 500*time.Millisecond) == msg }) {
			t.Errorf("after fullmesh, client %d gets no answer through the published UDP port", i)
		}
	}
}
