package runnet

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nsrun/nsrun/internal/netsetup"
	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/internal/plan"
	"github.com/nsrun/nsrun/internal/topology"
	"github.com/nsrun/nsrun/ipam"
)

// TestBuildUplink applies a plan with an uplink against the kernel, with
// a network namespace of the test's standing in for nsrun-helper's
// gateway: the run leases the pool's /30, the veth joins the gateway and
// the bridge namespace with an address at each end, the bridge namespace
// routes out through it, masquerades what leaves and sends DNS asked of
// the bridge to the host's resolver (here a UDP echo in the gateway).
// Close releases the lease. With IPv6, the uplink also carries the /64
// its /30 maps to (ipam.Pair6), routed and masqueraded alike.
func TestBuildUplink(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("ipv6=%v", v6), func(t *testing.T) { testBuildUplink(t, v6) })
	}
}

func testBuildUplink(t *testing.T, v6 bool) {
	gw, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	pool := netip.MustParsePrefix("172.18.192.0/30")
	gwAddr, brAddr := netip.MustParseAddr("172.18.192.1"), netip.MustParseAddr("172.18.192.2")
	p := uplinkPlan(t, gw, "nodes:\n  a: {ip: 172.18.0.2}\n", pool, v6)
	n, nodeNS := buildWired(t, p)

	// The lease: the pool's only /30, recorded for the run.
	block, ok := n.UplinkBlock()
	if !ok || block != pool {
		t.Fatalf("uplink block %v (%v), want %s", block, ok, pool)
	}
	lease := filepath.Join(p.Uplink.LeaseDir, pool.Addr().String())
	if b, err := os.ReadFile(lease); err != nil || string(b) != p.Run.ID+"\n" {
		t.Errorf("lease file %s: %q, %v", lease, b, err)
	}

	// Each end of the veth, addressed and up; the bridge namespace's
	// default route goes through the gateway.
	gh, err := netsetup.Handle(gw)
	if err != nil {
		t.Fatal(err)
	}
	defer gh.Close()
	hasAddr(t, gh, p.Uplink.GatewayPort, netip.PrefixFrom(gwAddr, 30))
	bh, err := netsetup.Handle(n.BridgeNS())
	if err != nil {
		t.Fatal(err)
	}
	defer bh.Close()
	hasAddr(t, bh, p.Uplink.Port, netip.PrefixFrom(brAddr, 30))
	routes, err := bh.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range routes {
		found = found || (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == gwAddr.String()
	}
	if !found {
		t.Errorf("bridge namespace: no default route via %s: %v", gwAddr, routes)
	}

	// TCP from node a to the gateway arrives masqueraded, from the
	// bridge end of the uplink.
	masqueraded(t, gw, nodeNS[0], gwAddr, brAddr)
	if v6 {
		p6 := ipam.Pair6(pool)
		gw6, br6 := p6.Addr().Next(), p6.Addr().Next().Next()
		hasAddr(t, gh, p.Uplink.GatewayPort, netip.PrefixFrom(gw6, 64))
		hasAddr(t, bh, p.Uplink.Port, netip.PrefixFrom(br6, 64))
		masqueraded(t, gw, nodeNS[0], gw6, br6)
	} else if b, err := readSysctl(gw, "net/ipv6/conf/"+p.Uplink.GatewayPort+"/disable_ipv6"); err != nil || b != "1" {
		t.Errorf("without IPv6, the gateway end has IPv6: disable_ipv6 %q, %v", b, err)
	}

	// DNS asked of the bridge goes to the host's resolver, and its answer
	// comes back.
	fakeResolver(t, gw, p.Uplink.HostDNS, func(q string, from net.IP) string { return "answer to " + q + " from " + from.String() })
	router := netip.AddrPortFrom(p.Bridges[0].Router, 53)
	answer, err := askDNS(nodeNS[0], router, "query")
	if err != nil {
		t.Fatalf("a asks %s for DNS: %v", router, err)
	}
	if want := "answer to query from " + brAddr.String(); answer != want {
		t.Errorf("DNS through the bridge: %q, want %q", answer, want)
	}

	n.Close()
	if _, err := os.Stat(lease); !os.IsNotExist(err) {
		t.Errorf("the lease is left after Close: %v", err)
	}
}

// masqueraded checks that a TCP connection from the namespace node to
// addr in the namespace gw arrives from want.
func masqueraded(t *testing.T, gw, node *os.File, addr, want netip.Addr) {
	t.Helper()
	var ln net.Listener
	if err := nsfd.Do(gw, func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		peer <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		c.Close()
	}()
	if err := nsfd.Do(node, func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("node -> %s in the gateway, through the uplink: %v", addr, err)
	}
	if got := <-peer; got != want.String() {
		t.Errorf("the gateway saw the connection to %s from %s, want %s (masqueraded)", addr, got, want)
	}
}

// readSysctl reads the sysctl key as the namespace ns has it.
func readSysctl(ns *os.File, key string) (string, error) {
	var v string
	err := nsfd.Do(ns, func() error {
		b, err := os.ReadFile("/proc/sys/" + key)
		v = strings.TrimSpace(string(b))
		return err
	})
	return v, err
}

// TestBuildUplinkDNSRelay: a node of an IPv6-only subnet asks its
// bridge's IPv6 address for DNS, and the supervisor's relay carries the
// question to the host's (IPv4) resolver, here a UDP echo in the gateway,
// and the answer back.
func TestBuildUplinkDNSRelay(t *testing.T) {
	gw, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	pool := netip.MustParsePrefix("172.18.192.4/30")
	p := uplinkPlan(t, gw, "subnets:\n  front: 172.18.0.0/24\n  v6: \"fd00:6::/64\"\nnodes:\n  a: {ip: 172.18.0.2}\n  b: {ip6: \"fd00:6::5\"}\n", pool, true)
	if len(p.Uplink.DNSRelays) != 1 || p.Uplink.DNSRelays[0].String() != "[fd00:6::fe]:53" {
		t.Fatalf("plan's DNS relays: %v, want [fd00:6::fe]:53 (the IPv6-only subnet's router) only", p.Uplink.DNSRelays)
	}
	_, nodeNS := buildWired(t, p)
	fakeResolver(t, gw, p.Uplink.HostDNS, func(q string, _ net.IP) string { return "answer to " + q })
	answer, err := askDNS(nodeNS[1], netip.MustParseAddrPort("[fd00:6::fe]:53"), "query6")
	if err != nil {
		t.Fatalf("b asks [fd00:6::fe]:53: %v", err)
	}
	if answer != "answer to query6" {
		t.Errorf("DNS relayed from the IPv6-only bridge: %q", answer)
	}
}

// fakeResolver is the host's resolver, at addr in the namespace gw until
// t ends: it answers each datagram with answer(its text, its sender).
func fakeResolver(t *testing.T, gw *os.File, addr netip.AddrPort, answer func(q string, from net.IP) string) {
	t.Helper()
	var dns net.PacketConn
	if err := nsfd.Do(gw, func() error {
		var err error
		dns, err = net.ListenPacket("udp", addr.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			k, from, err := dns.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = dns.WriteTo([]byte(answer(string(buf[:k]), from.(*net.UDPAddr).IP)), from)
		}
	}()
}

// askDNS sends query from the namespace ns to server over UDP and
// returns the answer (within 5 seconds).
func askDNS(ns *os.File, server netip.AddrPort, query string) (string, error) {
	var answer string
	err := nsfd.Do(ns, func() error {
		c, err := net.Dial("udp", server.String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(query)); err != nil {
			return err
		}
		buf := make([]byte, 512)
		k, err := c.Read(buf)
		answer = string(buf[:k])
		return err
	})
	return answer, err
}

// uplinkPlan builds the plan of the file text with an uplink through the
// gateway namespace gw, leased from pool (the host's resolver at its
// first address).
func uplinkPlan(t *testing.T, gw *os.File, text string, pool netip.Prefix, v6 bool) *plan.Plan {
	t.Helper()
	runtime := t.TempDir()
	top, err := topology.Parse("t.yaml", t.TempDir(), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(plan.Input{
		Top: top,
		Run: plan.Run{ID: "0123abcd", Dir: filepath.Join(runtime, "runs", "0123abcd"), RuntimeDir: runtime},
		Uplink: &plan.UplinkInput{
			GatewayNS: fmt.Sprintf("/proc/self/fd/%d", gw.Fd()),
			Pool:      pool,
			HostDNS:   netip.AddrPortFrom(pool.Addr().Next(), 53),
			IPv6:      v6,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
