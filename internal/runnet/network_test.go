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
	// and each link's port on its bridge.
	bh, err := netsetup.Handle(n.bridgeNS)
	if err != nil {
		t.Fatal(err)
	}
	defer bh.Close()
	for _, b := range p.Bridges {
		hasAddr(t, bh, b.Name, netip.PrefixFrom(b.Router, b.Prefix.Bits()))
	}
	for _, nd := range p.Nodes {
		for _, l := range nd.Links {
			port, err := bh.LinkByName(l.Port)
			if err != nil {
				t.Fatalf("node %s: bridge port %s: %v", nd.Name, l.Port, err)
			}
			br, _ := bh.LinkByName(p.Bridges[l.Bridge].Name)
			if port.Attrs().MasterIndex != br.Attrs().Index {
				t.Errorf("node %s: port %s is not on %s", nd.Name, l.Port, p.Bridges[l.Bridge].Name)
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
