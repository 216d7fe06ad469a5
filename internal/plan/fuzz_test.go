package plan

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/internal/topology"
	"github.com/nsrun/nsrun/ipam"
)

// FuzzBuildNames: two nodes, each with or without a tap link, every link
// captured. Build must refuse the plan exactly when two things would get
// one name (a bridge port, an interface inside a node, a capture file),
// and every name it hands out must fit an interface name.
func FuzzBuildNames(f *testing.F) {
	f.Add("a.b", "c", "a", "b.c")
	f.Add("a.b", "", "a", "b")
	f.Add("vm", "x", "db", "")
	f.Add("vm", "lo", "db", "eth0")
	f.Add(strings.Repeat("n", 40), "", strings.Repeat("n", 41), "t")
	f.Fuzz(func(t *testing.T, node1, tap1, node2, tap2 string) {
		if node1 == node2 || ipam.CheckNodeName("n", node1) != nil || ipam.CheckNodeName("n", node2) != nil {
			t.Skip()
		}
		for _, tp := range []string{tap1, tap2} {
			if tp != "" && (ipam.CheckNodeName("t", tp) != nil || len(tp) > 12) {
				t.Skip() // topology refuses these
			}
		}
		top := &topology.Topology{File: "f.yaml", Subnets: []topology.Subnet{{Name: "default", Subnet: ipam.DefaultSubnet()}}}
		for i, nt := range [][2]string{{node1, tap1}, {node2, tap2}} {
			n := topology.Node{Name: nt[0], Hostname: "h" + string(rune('0'+i)), Addr: netip.AddrFrom4([4]byte{172, 18, 0, byte(i + 1)}), Capture: true}
			if nt[1] != "" {
				n.Taps = []topology.Tap{{Name: nt[1]}}
			}
			top.Nodes = append(top.Nodes, n)
		}
		// What nsrun would name each thing, counted by space.
		clash := false
		seen := map[string]bool{}
		use := func(space, name string) {
			clash = clash || seen[space+"/"+name]
			seen[space+"/"+name] = true
		}
		use("bridge", "lo")
		use("bridge", "br0")
		use("files", CaptureLog)
		for _, n := range top.Nodes {
			use(n.Name, "lo")
			if len(n.Taps) == 0 {
				use("bridge", VethPort(n.Name))
				use("files", n.Name+".pcap")
				continue
			}
			tp := n.Taps[0].Name
			use("bridge", TapPort(n.Name, tp))
			use("files", n.Name+"."+tp+".pcap")
			use(n.Name, tp)
			use(n.Name, "tp-"+tp)
			use(n.Name, "tb-"+tp)
		}
		in := input(top)
		in.CaptureDir = "/tmp/c"
		p, err := Build(in)
		if clash != (err != nil) {
			t.Fatalf("nodes %q (tap %q) and %q (tap %q): clash %v, Build: %v", node1, tap1, node2, tap2, clash, err)
		}
		if err != nil {
			if !strings.Contains(err.Error(), " gets the ") || !strings.HasPrefix(err.Error(), "f.yaml:") {
				t.Fatalf("clash error does not say what clashes where: %v", err)
			}
			return
		}
		for _, n := range p.Nodes {
			for _, l := range n.Links {
				for _, name := range []string{l.Port, l.Inside, l.TapPeer, l.TapBridge} {
					if len(name) > ipam.MaxIfNameLen {
						t.Fatalf("interface name %q is longer than %d", name, ipam.MaxIfNameLen)
					}
				}
			}
		}
	})
}
