package runnet

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/netsetup"
	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/internal/plan"
	"github.com/nsrun/nsrun/internal/testns"
	"github.com/nsrun/nsrun/internal/topology"
)

// buildFresh runs Build as the supervisor does, in a network namespace
// of its own that becomes the bridge namespace: here a new one per test.
func buildFresh(p *plan.Plan, onWired func(i int, ns *os.File)) (n *Network, err error) {
	terr := testns.InNewNet(func() error {
		n, err = Build(p, slog.New(slog.DiscardHandler), onWired)
		return nil
	})
	if terr != nil {
		return nil, terr
	}
	return n, err
}

// buildWired builds p's network with buildFresh (t's cleanup closes it,
// also after an error: Build returns what it made), waits until every
// node is wired and returns the network and the nodes' namespaces.
func buildWired(t *testing.T, p *plan.Plan) (*Network, []*os.File) {
	t.Helper()
	nodeNS := make([]*os.File, len(p.Nodes))
	n, err := buildFresh(p, func(i int, ns *os.File) { nodeNS[i] = ns })
	t.Cleanup(n.Close)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.WaitAllWired(); err != nil {
		t.Fatal(err)
	}
	return n, nodeNS
}

// planOf is the plan of the file yaml, without uplink.
func planOf(t *testing.T, yaml string) *plan.Plan {
	t.Helper()
	top, err := topology.Parse("t.yaml", t.TempDir(), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(plan.Input{Top: top})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBuildAppliesPlan applies the network part of a plan against
// the kernel: bridges, veth links with their addresses and routes, a tap
// link, forwarding between subnets; then a TCP connection crosses from a
// node of one subnet to a node of the other.
func TestBuildAppliesPlan(t *testing.T) {
	yaml := `
subnets:
  front: 172.18.0.0/24
  back: 172.18.1.0/24
nodes:
  a: {ip: 172.18.0.2}
  b: {ip: 172.18.1.3}
`
	tapOK := false
	if f, err := os.OpenFile(netsetup.TunDevice, os.O_RDWR, 0); err == nil {
		f.Close()
		tapOK = true
		yaml += "  vm: {ip: 172.18.0.9, tap: {link0: back}}\n"
	}
	p := planOf(t, yaml)
	n, nodeNS := buildWired(t, p)

	// The bridge namespace: a bridge per subnet with its router address,
	// and each link's port on its bridge; a subnet of one link has no
	// bridge, and its port holds the router address.
	bh, err := netsetup.Handle(n.bridgeNS)
	if err != nil {
		t.Fatal(err)
	}
	defer bh.Close()
	// front has one link (a's; vm has none but its tap's, on back).
	wantDeferred := map[string]bool{"front": true, "back": !tapOK}
	for _, b := range p.Bridges {
		if b.Deferred != wantDeferred[b.Subnet] {
			t.Errorf("bridge %s (subnet %s) deferred %v, want %v", b.Name, b.Subnet, b.Deferred, wantDeferred[b.Subnet])
		}
		if !b.Deferred {
			hasAddr(t, bh, b.Name, netip.PrefixFrom(b.Router, b.Prefix.Bits()))
			noSnooping(t, bh, b.Name)
		}
	}
	for _, nd := range p.Nodes {
		for _, l := range nd.Links {
			port, err := bh.LinkByName(l.Port)
			if err != nil {
				t.Fatalf("node %s: bridge port %s: %v", nd.Name, l.Port, err)
			}
			b := p.Bridges[l.Bridge]
			if b.Deferred {
				hasAddr(t, bh, l.Port, netip.PrefixFrom(b.Router, b.Prefix.Bits()))
				if port.Attrs().MasterIndex != 0 {
					t.Errorf("node %s: port %s of a deferred bridge is on a bridge", nd.Name, l.Port)
				}
				continue
			}
			br, _ := bh.LinkByName(b.Name)
			if port.Attrs().MasterIndex != br.Attrs().Index {
				t.Errorf("node %s: port %s is not on %s", nd.Name, l.Port, b.Name)
			}
		}
	}
	// Each node: eth0 with its address and default route, or the tap.
	for i, nd := range p.Nodes {
		err := nsfd.Do(nodeNS[i], func() error {
			h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
			if err != nil {
				return err
			}
			defer h.Close()
			l := nd.Links[0]
			if l.Kind == plan.Tap {
				for _, name := range []string{l.Inside, l.TapPeer, l.TapBridge} {
					if _, err := h.LinkByName(name); err != nil {
						t.Errorf("node %s: %s: %v", nd.Name, name, err)
					}
				}
				return nil
			}
			hasAddr(t, h, l.Inside, l.Addr)
			routes, err := h.RouteList(nil, netlink.FAMILY_V4)
			if err != nil {
				return err
			}
			found := false
			for _, r := range routes {
				isDefault := r.Dst == nil || r.Dst.String() == "0.0.0.0/0"
				found = found || isDefault && r.Gw.String() == l.Gateway.String()
			}
			if !found {
				t.Errorf("node %s: no default route via %s: %v", nd.Name, l.Gateway, routes)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("node %s: %v", nd.Name, err)
		}
	}
	if !tapOK {
		t.Logf("no tap link tried: %s is not usable here", netsetup.TunDevice)
	}

	// a (front) reaches b (back) through the bridge namespace.
	var ln net.Listener
	if err := nsfd.Do(nodeNS[1], func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(p.Nodes[1].Addr, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = c.Write([]byte("hello from b"))
			c.Close()
		}
	}()
	var got []byte
	if err := nsfd.Do(nodeNS[0], func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		got, err = io.ReadAll(c)
		return err
	}); err != nil {
		t.Fatalf("a -> b across subnets: %v", err)
	}
	if string(got) != "hello from b" {
		t.Errorf("a read %q from b", got)
	}
}

// hasAddr checks that link name in h's namespace has address want.
func hasAddr(t *testing.T, h *netlink.Handle, name string, want netip.Prefix) {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.IPNet.String() == want.String() {
			return
		}
	}
	t.Errorf("%s has addresses %v, not %s", name, addrs, want)
}

// TestBuildWiringFailure: a link the kernel refuses (here, a plan
// changed after Build so that two ports share a name, which Build itself
// refuses) fails that node's wiring, naming the node, and the other node
// is still wired.
func TestBuildWiringFailure(t *testing.T) {
	p := planOf(t, "nodes:\n  a: {ip: 172.18.0.2}\n  b: {ip: 172.18.0.3}\n")
	p.Nodes[1].Links[0].Port = p.Nodes[0].Links[0].Port
	n, err := buildFresh(p, func(int, *os.File) {})
	t.Cleanup(n.Close) // also after an error: Build returns what it made
	if err != nil {
		t.Fatal(err)
	}
	// The two are wired at once: either may get the port first.
	errA, errB := n.WaitWired(0), n.WaitWired(1)
	failed, other := errB, errA
	name := "b"
	if errA != nil {
		failed, other, name = errA, errB, "a"
	}
	if other != nil || failed == nil || !strings.Contains(failed.Error(), `node "`+name+`": create veth "va"`) {
		t.Errorf("two nodes wired with one port name: a: %v; b: %v", errA, errB)
	}
	if err := n.WaitAllWired(); err == nil {
		t.Error("waitAllWired reports no failure")
	}
}

// TestDeferredBridge: the one node of a subnet is wired without a bridge,
// its port holding the router addresses (both families reach the router);
// EnsureBridges then makes the bridge, with the port's MAC, moves the
// addresses onto it and puts the port on it, while a TCP connection from
// the node to the router goes on; a second node wired afterwards (as
// attach does) reaches the first; a second EnsureBridges changes nothing.
func TestDeferredBridge(t *testing.T) {
	p := planOf(t, "nodes:\n  a: {ip: 172.18.0.2}\n")
	br := p.Bridges[0]
	if !br.Deferred {
		t.Fatalf("a subnet of one node: bridge not deferred: %+v", br)
	}
	n, nodeNS := buildWired(t, p)
	bh, err := netsetup.Handle(n.bridgeNS)
	if err != nil {
		t.Fatal(err)
	}
	defer bh.Close()
	if _, err := bh.LinkByName(br.Name); err == nil {
		t.Fatalf("%s exists before anything needs it", br.Name)
	}
	port := p.Nodes[0].Links[0].Port
	hasAddr(t, bh, port, netip.PrefixFrom(br.Router, br.Prefix.Bits()))
	hasAddr(t, bh, port, netip.PrefixFrom(br.Router6, br.Prefix6.Bits()))
	portLink, err := bh.LinkByName(port)
	if err != nil {
		t.Fatal(err)
	}

	// A connection from the node to the router, open across the change.
	var ln net.Listener
	if err := nsfd.Do(n.bridgeNS, func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(br.Router, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	echoed := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			echoed <- err
			return
		}
		defer c.Close()
		_, err = io.Copy(c, c)
		echoed <- err
	}()
	var conn net.Conn
	for _, to := range []netip.Addr{br.Router6, br.Router} {
		if err := nsfd.Do(nodeNS[0], func() error {
			var err error
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(to, uint16(ln.Addr().(*net.TCPAddr).Port)).String(), 5*time.Second)
			if err != nil || to.Is4() {
				conn = c
				return err
			}
			return c.Close() // IPv6 reaches the router too; no one accepts it
		}); err != nil && to.Is4() {
			t.Fatalf("node -> router %s before the bridge: %v", to, err)
		}
	}
	defer conn.Close()
	roundTrip := func(msg string) {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatalf("write %q: %v", msg, err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, got); err != nil || string(got) != msg {
			t.Fatalf("echo of %q: %q, %v", msg, got, err)
		}
	}
	roundTrip("before")

	if err := n.EnsureBridges(); err != nil {
		t.Fatal(err)
	}
	b, err := bh.LinkByName(br.Name)
	if err != nil {
		t.Fatalf("no %s after EnsureBridges: %v", br.Name, err)
	}
	if b.Attrs().HardwareAddr.String() != portLink.Attrs().HardwareAddr.String() {
		t.Errorf("%s has MAC %s, not its port's %s: the node's neighbour entry for its router went stale", br.Name, b.Attrs().HardwareAddr, portLink.Attrs().HardwareAddr)
	}
	hasAddr(t, bh, br.Name, netip.PrefixFrom(br.Router, br.Prefix.Bits()))
	hasAddr(t, bh, br.Name, netip.PrefixFrom(br.Router6, br.Prefix6.Bits()))
	noSnooping(t, bh, br.Name)
	if pl, _ := bh.LinkByName(port); pl == nil || pl.Attrs().MasterIndex != b.Attrs().Index {
		t.Errorf("port %s is not on %s", port, br.Name)
	}
	if addrs, _ := bh.AddrList(portLink, netlink.FAMILY_ALL); len(addrs) != 0 {
		t.Errorf("port %s still has addresses: %v", port, addrs)
	}
	roundTrip("after")
	if err := n.EnsureBridges(); err != nil {
		t.Fatal(err)
	}

	// A second node joins the bridge and reaches the first.
	second := plan.Node{Name: "b", Addr: netip.MustParseAddr("172.18.0.3"), Links: []plan.Link{{
		Kind: plan.Veth, Node: "b", Bridge: 0, Port: plan.VethPort("b"), Inside: plan.GuestIfName,
		Addr: netip.MustParsePrefix("172.18.0.3/24"), Gateway: br.Router,
	}}}
	ns2, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	defer ns2.Close()
	if err := n.Wire(&second, ns2); err != nil {
		t.Fatal(err)
	}
	var ln2 net.Listener
	if err := nsfd.Do(nodeNS[0], func() error {
		var err error
		ln2, err = net.Listen("tcp", "172.18.0.2:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	go func() {
		if c, err := ln2.Accept(); err == nil {
			c.Close()
		}
	}()
	if err := nsfd.Do(ns2, func() error {
		c, err := net.DialTimeout("tcp", ln2.Addr().String(), 5*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("second node -> first over the new bridge: %v", err)
	}
	conn.Close()
	<-echoed
}

// noSnooping checks that the bridge name floods multicast: with
// snooping, a querier among the nodes would confine IPv6 multicast
// (neighbour solicitations included) to its port, the nodes' MLD reports
// being dropped (nft.QuietMLD).
func noSnooping(t *testing.T, h *netlink.Handle, name string) {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	br, ok := l.(*netlink.Bridge)
	if !ok || br.MulticastSnooping == nil || *br.MulticastSnooping {
		t.Errorf("bridge %s snoops multicast (%+v)", name, l)
	}
}

// TestDeferredBridgePortGone: a deferred bridge whose one port is gone
// (a node with root in the run deleted its eth0, and the peer went with
// it) is still made, with the router addresses, so that verbs and attach
// work on; a second call changes nothing.
func TestDeferredBridgePortGone(t *testing.T) {
	p := planOf(t, "nodes:\n  a: {ip: 172.18.0.2}\n")
	n, _ := buildWired(t, p)
	bh, err := netsetup.Handle(n.bridgeNS)
	if err != nil {
		t.Fatal(err)
	}
	defer bh.Close()
	port, err := bh.LinkByName(p.Nodes[0].Links[0].Port)
	if err != nil {
		t.Fatal(err)
	}
	if err := bh.LinkDel(port); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := n.EnsureBridges(); err != nil {
			t.Fatalf("EnsureBridges (call %d) with the port gone: %v", i+1, err)
		}
	}
	br := p.Bridges[0]
	hasAddr(t, bh, br.Name, netip.PrefixFrom(br.Router, br.Prefix.Bits()))
}
