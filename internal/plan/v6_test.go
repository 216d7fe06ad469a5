package plan

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestBuildIPv6 carries both families into the plan: an IPv6-only
// subnet's node has only IPv6 (its ready check and DNS use it), a node
// with ipv6: false gets a link without IPv6.
func TestBuildIPv6(t *testing.T) {
	p, err := Build(input(parse(t, `
subnets:
  front: 172.18.0.0/24
  v6: fd00:6::/64
nodes:
  a: {ip: 172.18.0.1, ipv6: false}
  e: {ip6: "fd00:6::5", command: "probe listen [::]:80", ready: tcp:80}
`)))
	if err != nil {
		t.Fatal(err)
	}
	if br := p.Bridges[1]; br.Prefix.IsValid() || br.Router6 != netip.MustParseAddr("fd00:6::fe") || br.MainRouter() != br.Router6 {
		t.Errorf("IPv6-only bridge %+v", br)
	}
	a, e := p.Nodes[0], p.Nodes[1]
	if a.Addr6.IsValid() || a.Links[0].Addr6.IsValid() || !a.Links[0].Addr.IsValid() {
		t.Errorf("ipv6: false node %+v", a)
	}
	if e.Addr.IsValid() || e.Links[0].Addr.IsValid() || e.Links[0].Addr6 != netip.MustParsePrefix("fd00:6::5/64") ||
		e.Links[0].Gateway6 != netip.MustParseAddr("fd00:6::fe") || e.Ready.Addr != netip.MustParseAddrPort("[fd00:6::5]:80") {
		t.Errorf("IPv6-only node %+v", e)
	}
	if len(p.Hosts) != 2 || p.Hosts[1].Addr != netip.MustParseAddr("fd00:6::5") {
		t.Errorf("hosts %+v", p.Hosts)
	}
	if p.Mounts[3].Nameserver != netip.MustParseAddr("fd00:6::fe") || p.Mounts[1].Target != "/etc/gai.conf" {
		t.Errorf("mounts %+v", p.Mounts)
	}
	// Without IPv6, no gai.conf.
	p4, err := Build(input(parse(t, "ipv6: false\nnodes:\n  a: {ip: 172.18.0.1}\n")))
	if err != nil || len(p4.Mounts) != 2 {
		t.Errorf("mounts without IPv6: %+v %v", p4.Mounts, err)
	}
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"bridge br0    subnet front      172.18.0.0/24      router 172.18.0.254, fd00:ac12::/64 router fd00:ac12::fe",
		"bridge br1    subnet v6         fd00:6::/64        router fd00:6::fe (IPv6 only)",
		"veth eth0 172.18.0.1/24 via 172.18.0.254 (IPv6 off), bridge port va on br0",
		"veth eth0 fd00:6::5/64 via fd00:6::fe, bridge port ve on br1",
		"  e: fd00:6::5\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("plan text lacks %q:\n%s", want, b.String())
		}
	}
}

// TestBuildReadyTimeout: a node's own ready timeout reaches the plan;
// without one, ReadyTimeout applies.
func TestBuildReadyTimeout(t *testing.T) {
	p, err := Build(input(parse(t, "nodes:\n  a: {ip: 172.18.0.1, command: x, ready: {check: tcp:80, timeout: 90s}}\n  b: {ip: 172.18.0.2, command: x, ready: tcp:81}\n")))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := p.Nodes[0].Ready, p.Nodes[1].Ready; a.Timeout != 90*time.Second || b.Timeout != ReadyTimeout || a.Addr.Port() != 80 {
		t.Errorf("ready: a %+v, b %+v", a, b)
	}
}
