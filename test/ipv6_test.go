package test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Dual-stack runs: every address below lies in a namespace the test's
// run created; nothing is sent anywhere else.

const dualYAML = `
subnets:
  front: 172.18.0.0/24
  back: 172.18.1.0/24
  v6only: fd00:6::/64
nodes:
  a: {ip: 172.18.0.1, command: "probe listen [::]:9000"}
  b: {ip: 172.18.0.2, command: "probe listen [fd00:ac12::2]:9000"}
  c: {ip: 172.18.1.3, command: "probe listen [::]:9000"}
  e: {ip6: "fd00:6::5", command: "probe listen [fd00:6::5]:9000"}
  f: {ip: 172.18.0.9, ipv6: false, command: "probe listen 0.0.0.0:9000"}
`

// TestIPv6ByName: nodes reach each other over IPv6 by name, to servers
// bound to :: and to the node's own IPv6 address (bound at start-up: no
// duplicate address detection wait), across subnets through the bridge
// namespace, in an IPv6-only subnet; ipv6: false leaves a node no IPv6.
func TestIPv6ByName(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	r := startRun(t, u, dualYAML, "")
	for _, n := range []string{"a", "b", "c", "e", "f"} {
		if !eventually(10*time.Second, func() bool { return strings.Contains(r.out.all(), n+"     | listening") }) {
			t.Fatalf("node %s is not listening:\n%s", n, r.out.all())
		}
	}
	// /etc/hosts has both addresses; getent ahosts returns both.
	hosts := r.exec(t, "a", "getent", "ahosts", "b").Stdout
	if !strings.Contains(hosts, "172.18.0.2") || !strings.Contains(hosts, "fd00:ac12::2") {
		t.Errorf("getent ahosts b: %q, want 172.18.0.2 and fd00:ac12::2", hosts)
	}
	if v6 := r.exec(t, "a", "getent", "ahostsv6", "e").Stdout; !strings.Contains(v6, "fd00:6::5") {
		t.Errorf("getent ahostsv6 e: %q", v6)
	}
	addr := r.exec(t, "a", "ip", "-6", "addr", "show", "dev", "eth0").Stdout
	if !strings.Contains(addr, "fd00:ac12::1/64") || strings.Contains(addr, "tentative") {
		t.Errorf("a's IPv6 addresses: %s", addr)
	}
	if rt := r.exec(t, "a", "ip", "-6", "route", "show", "default").Stdout; !strings.Contains(rt, "via fd00:ac12::fe dev eth0") {
		t.Errorf("a's IPv6 default route: %q", rt)
	}
	res := r.exec(t, "a", "probe", "scan", "2s", "6/b:9000", "6/c:9000", "6/e:9000", "4/b:9000", "4/c:9000", "f:9000")
	for _, want := range []string{"6/b:9000 ok", "6/c:9000 ok", "6/e:9000 ok", "4/b:9000 refused", "4/c:9000 ok", "f:9000 ok"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("from a: want %q in\n%s%s", want, res.Stdout, res.Stderr)
		}
	}
	// The IPv6-only node has no IPv4 address; ipv6: false leaves f none
	// of IPv6, not even link-local.
	if out := r.exec(t, "e", "ip", "-4", "addr", "show", "dev", "eth0").Stdout; strings.TrimSpace(out) != "" {
		t.Errorf("IPv6-only node e has IPv4: %s", out)
	}
	if out := r.exec(t, "f", "ip", "-6", "addr", "show", "dev", "eth0").Stdout; strings.TrimSpace(out) != "" {
		t.Errorf("node f (ipv6: false) has IPv6: %s", out)
	}
	if res := r.exec(t, "e", "probe", "scan", "2s", "6/a:9000", "6/c:9000"); !strings.Contains(res.Stdout, "6/a:9000 ok") || !strings.Contains(res.Stdout, "6/c:9000 ok") {
		t.Errorf("from e: %s %s", res.Stdout, res.Stderr)
	}
	// nsrun ls --json and net show carry both addresses.
	ls := nsrunOK(t, u, "ls", "--json")
	if !strings.Contains(ls, `"addr6": "fd00:ac12::1"`) && !strings.Contains(ls, `"addr6":"fd00:ac12::1"`) || !strings.Contains(ls, "172.18.0.1") {
		t.Errorf("ls --json lacks an address of a: %s", ls)
	}
	if show := r.netOK(t, "show", "--json"); !strings.Contains(show, `"addr6": "fd00:6::5"`) {
		t.Errorf("net show --json lacks e's address: %s", show)
	}
}

// TestIPv6RunWithoutIPv6: ipv6: false at the top of the file gives no
// node a global IPv6 address.
func TestIPv6RunWithoutIPv6(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	r := startRun(t, u, "ipv6: false\nnodes:\n  a: {ip: 172.18.0.1, command: 'probe listen 0.0.0.0:9000'}\n", "a     | listening")
	if out := r.exec(t, "a", "ip", "-6", "addr", "show", "dev", "eth0", "scope", "global").Stdout; strings.TrimSpace(out) != "" {
		t.Errorf("ipv6: false, yet a has a global IPv6 address: %s", out)
	}
	if hosts := r.exec(t, "a", "getent", "ahostsv6", "a").Stdout; strings.Contains(hosts, "fd00:") {
		t.Errorf("ipv6: false, yet /etc/hosts has %s", hosts)
	}
}

// fiveYAMLTwoSubnets is fiveYAMLDual over two subnets, so that cuts
// between n1-n3 and n4-n5 are routed.
var fiveYAMLTwoSubnets = "subnets:\n  front: 172.18.0.0/24\n  back: 172.18.1.0/24\n" +
	strings.ReplaceAll(strings.ReplaceAll(fiveYAMLDual, "ip: 172.18.0.4", "ip: 172.18.1.4"), "ip: 172.18.0.5", "ip: 172.18.1.5")

// TestPartitionMatrixIPv6 repeats the partition matrix over IPv6, by
// name (AAAA), with nodes in two subnets: bridged and routed cuts.
func TestPartitionMatrixIPv6(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	r := startFive(t, u, fiveYAMLTwoSubnets)
	partitionMatrix(t, r, func(t *testing.T, nodes []string) map[[2]string]bool {
		return r.matrixVia(t, nodes, func(n string) string { return "6/" + n + ":9000" })
	}, false)
	jepsenLikeIPv4(t, r, "IPv6", func(n string) string { return "6/" + n + ":9000" })
}

// jepsenLikeIPv4 applies the Jepsen shapes not in partitionMatrix and
// checks that target (IPv6 or link-local) gives the same matrix as IPv4
// after each.
func jepsenLikeIPv4(t *testing.T, r *liveRun, what string, target func(node string) string) {
	t.Helper()
	for _, verb := range []string{"majorities-ring", "bridge", "random-node"} {
		r.netOK(t, verb, "--seed", "7")
		v4 := r.matrixVia(t, fiveNodes, func(n string) string { return "4/" + n + ":9000" })
		other := r.matrixVia(t, fiveNodes, target)
		cut := 0
		for k, ok := range v4 {
			if !ok {
				cut++
			}
			if other[k] != ok {
				t.Errorf("%s: %s->%s IPv4 %v, %s %v", verb, k[0], k[1], ok, what, other[k])
			}
		}
		if cut == 0 {
			t.Errorf("%s cut nothing", verb)
		}
	}
}

// TestPartitionBreaksEstablishedIPv6: an IPv6 stream stalls at once and
// resumes on the same connection when healed.
func TestPartitionBreaksEstablishedIPv6(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	r := startFive(t, u, fiveYAMLDual)
	s := r.follow(t, "n1", "6/n2:9001")
	c := s.cut(t, r, []string{"isolate", "n2"}, []string{"fullmesh"}, 1500*time.Millisecond)
	s.check(t, []cutRound{c})
}

// TestFlakyLossIPv6: --loss 50% drops IPv6 datagrams in the same band as
// IPv4, and neighbour discovery survives it (checked at 100%, where
// nothing else crosses).
func TestFlakyLossIPv6(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	yaml := strings.ReplaceAll(fiveYAMLDual, "0.0.0.0:9002", "[::]:9002")
	r := startFive(t, u, yaml)
	r.netOK(t, "flaky", "n2", "--loss", "50%")
	r.exec(t, "n1", "probe", "udp-burst", "6/n2:9002", "400")
	r.exec(t, "n1", "probe", "udp-burst", "4/n2:9002", "400")
	time.Sleep(300 * time.Millisecond)
	v6 := strings.Count(r.out.all(), "n2    | from fd00:ac12::1: ")
	v4 := strings.Count(r.out.all(), "n2    | from 172.18.0.1: ")
	t.Logf("--loss 50%%: %d of 400 IPv6 and %d of 400 IPv4 datagrams arrived", v6, v4)
	if v6 < 140 || v6 > 260 || v4 < 140 || v4 > 260 {
		t.Errorf("--loss 50%%: %d of 400 IPv6 and %d of 400 IPv4 datagrams arrived, want 35-65%% of each", v6, v4)
	}
	if show := r.netOK(t, "show"); !strings.Contains(show, "n2: loss 50%") {
		t.Errorf("net show: %s", show)
	}
	// Neighbour discovery is spared, deterministically: with every
	// datagram lost, n3 (which has not spoken to n2 yet) still resolves
	// n2's link-layer address, while none of its datagrams arrive.
	if before := r.exec(t, "n3", "ip", "-6", "neigh", "show", "fd00:ac12::2", "dev", "eth0").Stdout; strings.TrimSpace(before) != "" {
		t.Fatalf("n3 knows n2 before the check: %q", before)
	}
	r.netOK(t, "flaky", "n2", "--loss", "100%")
	r.exec(t, "n3", "probe", "udp-burst", "6/n2:9002", "20")
	time.Sleep(300 * time.Millisecond)
	if got := strings.Count(r.out.all(), "n2    | from fd00:ac12::3: "); got != 0 {
		t.Errorf("--loss 100%%: %d of 20 IPv6 datagrams from n3 arrived", got)
	}
	neigh := r.exec(t, "n3", "ip", "-6", "neigh", "show", "fd00:ac12::2", "dev", "eth0").Stdout
	if !strings.Contains(neigh, "lladdr") || strings.Contains(neigh, "FAILED") {
		t.Errorf("--loss 100%%: n3 did not resolve n2 by neighbour discovery: %q", neigh)
	}
}

// TestIPv6BadAddresses: every bad IPv6 address or prefix is refused,
// naming the field, and nothing starts.
func TestIPv6BadAddresses(t *testing.T) {
	u := unprivileged(t)
	files := map[string]string{
		"outside.yaml":   "nodes:\n  a: {ip6: 'fd00:1::1'}\n",
		"dup.yaml":       "nodes:\n  a: {ip: 172.18.0.1, ip6: 'fd00:ac12::9'}\n  b: {ip: 172.18.0.9}\n",
		"router.yaml":    "nodes:\n  a: {ip: 172.18.0.1, ip6: 'fd00:ac12::fe'}\n",
		"ll.yaml":        "nodes:\n  a: {ip: 172.18.0.1, ip6: 'fe80::1'}\n",
		"mc.yaml":        "nodes:\n  a: {ip: 172.18.0.1, ip6: 'ff02::1'}\n",
		"mapped.yaml":    "nodes:\n  a: {ip: 172.18.0.1, ip6: '::ffff:172.18.0.1'}\n",
		"prefix.yaml":    "subnets:\n  s: fd00:1::/56\nnodes:\n  a: {ip6: 'fd00:1::1'}\n",
		"overlap.yaml":   "subnets:\n  x: 172.18.0.0/24\n  y: {ipv4: 172.18.1.0/24, ipv6: 'fd00:ac12::/64'}\nnodes:\n  a: {ip: 172.18.0.1}\n",
		"ipv6false.yaml": "nodes:\n  a: {ip: 172.18.0.1, ip6: 'fd00:ac12::1', ipv6: false}\n",
	}
	dir := project(t, files)
	before := u.runDirs()
	for file, want := range map[string]string{
		"outside.yaml":   "outside.yaml:2:12: nodes.a.ip6: fd00:1::1 is in no subnet's IPv6 prefix",
		"dup.yaml":       "nodes.b.ip6: fd00:ac12::9 is already node a's IPv6 address",
		"router.yaml":    "nodes.a.ip6: fd00:ac12::fe is the bridge's own address",
		"ll.yaml":        "nodes.a.ip6: fe80::1 is link-local",
		"mc.yaml":        "nodes.a.ip6: ff02::1 is a multicast address",
		"mapped.yaml":    "nodes.a.ip6: ::ffff:172.18.0.1 is not an IPv6 address",
		"prefix.yaml":    "subnets.s: fd00:1::/56: an IPv6 subnet must be a /64",
		"overlap.yaml":   "subnets.y.ipv6: IPv6 prefix fd00:ac12::/64 overlaps subnets.x",
		"ipv6false.yaml": "nodes.a.ip6: the node says ipv6: false",
	} {
		u.upRefused(t, dir, want, "-f", file)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for flag, want := range map[string]string{
		"fe80::1":       "--ip6: fe80::1 is link-local",
		"fd00:ac12::fe": "--ip6: fd00:ac12::fe is the bridge's own address",
		"fd00:1::1":     "--ip6: fd00:1::1 is outside the subnet's IPv6 prefix fd00:ac12::/64",
		"172.18.0.1":    "--ip6: \"172.18.0.1\" is not an IPv6 address",
	} {
		r := run(t, u.nsrun(ctx, "--ip6", flag, "--", "true"))
		if r.Code != 125 || !strings.Contains(r.Stderr, want) {
			t.Errorf("nsrun --ip6 %s: exit %d, stderr %q; want %q", flag, r.Code, r.Stderr, want)
		}
	}
	if after := u.runDirs(); len(after) != len(before) {
		t.Errorf("bad addresses created run folders: %v", after)
	}
}

// TestIPv6SingleNode: nsrun -- CMD is dual-stack, --ip6 picks the
// address.
func TestIPv6SingleNode(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := run(t, u.nsrun(ctx, "--", "ip", "-6", "addr", "show", "dev", "eth0"))
	if r.Code != 0 || !strings.Contains(r.Stdout, "fd00:ac12::1/64") {
		t.Errorf("default node: exit %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	r = run(t, u.nsrun(ctx, "--ip", "172.18.0.7", "--ip6", "fd00:ac12::77", "--", "sh", "-c", "ip -6 addr show dev eth0; getent ahosts node"))
	if r.Code != 0 || !strings.Contains(r.Stdout, "fd00:ac12::77/64") || strings.Count(r.Stdout, "fd00:ac12::77") < 2 {
		t.Errorf("--ip6: exit %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestAttachIPv6: nsrun attach takes an IPv6 address (--ip6), alone or
// beside --ip; the attached node is reached over IPv6 by name.
func TestAttachIPv6(t *testing.T) {
	u := unprivileged(t)
	requireRoot(t) // to find the host pids of the user's processes
	userNamespaces(t, u)
	r := startRun(t, u, "nodes:\n  a: {ip: 172.18.0.1, command: 'probe listen [::]:9000'}\n", "a     | listening")
	port := fmt.Sprint(9100 + time.Now().UnixNano()%800)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := u.nsrun(ctx, "net", "exec", "--run", r.id, "a", "--", "unshare", "-rn", "probe", "listen", "[::]:"+port)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	var pids []int
	if !eventually(10*time.Second, func() bool { pids = processesOf(u, "probe listen [::]:"+port); return len(pids) == 1 }) {
		t.Fatalf("server process not found: %v", pids)
	}
	attach := func(args ...string) result {
		return run(t, u.nsrun(ctx, append([]string{"attach", "--run", r.id, "--pid", fmt.Sprint(pids[0])}, args...)...))
	}
	if res := attach("--ip6", "fd00:ac12::1", "--name", "dup"); res.Code != 125 || !strings.Contains(res.Stderr, "--ip6: fd00:ac12::1 is node a's IPv6 address") {
		t.Errorf("duplicate IPv6 address: %d %q", res.Code, res.Stderr)
	}
	if res := attach("--ip6", "fe80::5", "--name", "ll"); res.Code != 125 || !strings.Contains(res.Stderr, "--ip6: fe80::5 is link-local") {
		t.Errorf("link-local address: %d %q", res.Code, res.Stderr)
	}
	if res := attach("--ip6", "fd00:ac12::50", "--name", "extra"); res.Code != 0 || !strings.Contains(res.Stdout, "attached extra as fd00:ac12::50") {
		t.Fatalf("attach --ip6: %d %q %q", res.Code, res.Stdout, res.Stderr)
	}
	if out := r.exec(t, "a", "probe", "dial", "6/extra:"+port).Stdout; !strings.HasPrefix(out, "ok ") {
		t.Errorf("node a -> attached extra over IPv6: %q", out)
	}
	r.netOK(t, "isolate", "extra")
	if out := r.exec(t, "a", "probe", "dial", "[fd00:ac12::50]:"+port, "700ms").Stdout; strings.HasPrefix(out, "ok") {
		t.Errorf("isolated attached node still reachable over IPv6: %q", out)
	}
}

// TestCaptureIPv6: a node's pcap file holds its IPv6 frames.
func TestCaptureIPv6(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	needPrograms(t, "tshark")
	dir := project(t, map[string]string{"nsrun.yaml": `
nodes:
  srv:
    ip: 172.18.0.10
    command: sh -c 'probe udp-listen [::]:9002 & exec probe listen [::]:9000'
    ready: tcp:9000
  cli:
    ip: 172.18.0.20
    depends_on: [srv]
    command: sh -c 'probe udp-burst 6/srv:9002 7 && probe dial 6/srv:9000 && echo client-done; exec sleep 300'
`})
	capDir := ownedDir(t, u, filepath.Join(dir, "cap"))
	rc, _ := startUp(t, u, dir, "cli   | client-done", "--capture", capDir, "--timeout", "1")
	defer rc.kill()
	time.Sleep(300 * time.Millisecond)
	for _, node := range []string{"srv", "cli"} {
		file := filepath.Join(capDir, node+".pcap")
		if n, out := tshark(t, file, "ipv6.src == fd00:ac12::14 && ipv6.dst == fd00:ac12::a && udp.dstport == 9002"); n != 7 {
			t.Errorf("%s.pcap: %d IPv6 datagrams to 9002, want exactly 7\n%s", node, n, out)
		}
		if n, out := tshark(t, file, "ipv6.src == fd00:ac12::14 && tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.dstport == 9000"); n != 1 {
			t.Errorf("%s.pcap: %d IPv6 SYNs, want 1\n%s", node, n, out)
		}
	}
}
