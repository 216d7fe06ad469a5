package topology

import (
	"strings"
	"testing"
)

func TestParseIPv6(t *testing.T) {
	const f = `
subnets:
  front: 172.18.0.0/24
  back: {ipv4: 172.18.1.0/24, ipv6: fd00:b::/64}
  v4only: {ipv4: 172.18.2.0/24, ipv6: false}
  v6only: fd00:6::/64
nodes:
  a: {ip: 172.18.0.7}
  b: {ip: 172.18.0.8, ip6: fd00:ac12::88}
  c: {ip: 172.18.1.9}
  d: {ip: 172.18.2.1}
  e: {ip6: fd00:6::5}
  f: {ip: 172.18.0.9, ipv6: false}
`
	top, err := Parse("f.yaml", "/", []byte(f))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"a": "172.18.0.7 fd00:ac12::7 front",
		"b": "172.18.0.8 fd00:ac12::88 front",
		"c": "172.18.1.9 fd00:b::9 back",
		"d": "172.18.2.1 invalid IP v4only",
		"e": "invalid IP fd00:6::5 v6only",
		"f": "172.18.0.9 invalid IP front",
	}
	for _, n := range top.Nodes {
		got := n.Addr.String() + " " + n.Addr6.String() + " " + top.Subnets[n.Subnet].Name
		if got != want[n.Name] {
			t.Errorf("node %s: %s, want %s", n.Name, got, want[n.Name])
		}
	}
	bridges := []string{}
	for _, s := range top.Subnets {
		bridges = append(bridges, s.Bridge.String()+"/"+s.Bridge6.String())
	}
	if got := strings.Join(bridges, " "); got != "172.18.0.254/fd00:ac12::fe 172.18.1.254/fd00:b::fe 172.18.2.254/invalid IP invalid IP/fd00:6::fe" {
		t.Errorf("bridges %s", got)
	}
}

func TestParseNoIPv6(t *testing.T) {
	top, err := Parse("f.yaml", "/", []byte("ipv6: false\nnodes:\n  a: {ip: 172.18.0.1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !top.NoIPv6 || top.Subnets[0].HasIPv6() || top.Nodes[0].Addr6.IsValid() {
		t.Errorf("ipv6: false still gives IPv6: %+v", top)
	}
	top, err = Parse("f.yaml", "/", []byte("nodes:\n  a: {ip: 172.18.0.1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if top.Subnets[0].Prefix6.String() != "fd00:ac12::/64" || top.Nodes[0].Addr6.String() != "fd00:ac12::1" {
		t.Errorf("default is not dual-stack: %+v", top)
	}
}

func TestParseIPv6Errors(t *testing.T) {
	const two = "subnets:\n  x: 172.18.0.0/24\n  y: %s\nnodes:\n  a: {ip: 172.18.0.1}\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"outside every subnet", "nodes:\n  a: {ip6: fd00:1::1}\n", "f.yaml:2:12: nodes.a.ip6: fd00:1::1 is in no subnet's IPv6 prefix (default 172.18.0.0/24 and fd00:ac12::/64)"},
		{"outside the node's subnet", "nodes:\n  a: {ip: 172.18.0.1, ip6: fd00:1::1}\n", "f.yaml:2:28: nodes.a.ip6: fd00:1::1 is outside fd00:ac12::/64, the IPv6 prefix of subnets.default where ip: 172.18.0.1 puts the node"},
		{"duplicate explicit", "nodes:\n  a: {ip: 172.18.0.1, ip6: fd00:ac12::9}\n  b: {ip: 172.18.0.2, ip6: fd00:ac12::9}\n", "f.yaml:3:3: nodes.b.ip6: fd00:ac12::9 is already node a's IPv6 address"},
		{"duplicate mapped", "nodes:\n  a: {ip: 172.18.0.9}\n  b: {ip: 172.18.0.2, ip6: fd00:ac12::9}\n", "nodes.b.ip6: fd00:ac12::9 is already node a's IPv6 address (given as ip6:, or mapped from its ip:)"},
		{"router address", "nodes:\n  a: {ip6: fd00:ac12::fe}\n", "nodes.a.ip6: fd00:ac12::fe is the bridge's own address"},
		{"anycast", "nodes:\n  a: {ip6: 'fd00:ac12::'}\n", "subnet-router anycast"},
		{"link-local", "nodes:\n  a: {ip: 172.18.0.1, ip6: 'fe80::1'}\n", "nodes.a.ip6: fe80::1 is link-local"},
		{"link-local alone", "nodes:\n  a: {ip6: 'fe80::1'}\n", "nodes.a.ip6: fe80::1 is link-local"},
		{"multicast", "nodes:\n  a: {ip6: 'ff02::1'}\n", "nodes.a.ip6: ff02::1 is a multicast address"},
		{"mapped", "nodes:\n  a: {ip: 172.18.0.1, ip6: '::ffff:172.18.0.1'}\n", "nodes.a.ip6: ::ffff:172.18.0.1 is not an IPv6 address"},
		{"v4 in ip6", "nodes:\n  a: {ip6: 172.18.0.1}\n", "nodes.a.ip6: \"172.18.0.1\" is not an IPv6 address such as fd00:ac12::7"},
		{"v6 in ip", "nodes:\n  a: {ip: 'fd00:ac12::1'}\n", "nodes.a.ip: \"fd00:ac12::1\" is not an IPv4 address such as 172.18.0.7 (IPv6 addresses go under ip6:)"},
		{"ip6 with ipv6 false", "nodes:\n  a: {ip: 172.18.0.1, ip6: 'fd00:ac12::1', ipv6: false}\n", "nodes.a.ip6: the node says ipv6: false"},
		{"bad ipv6 flag", "nodes:\n  a: {ip: 172.18.0.1, ipv6: no}\n", "nodes.a.ipv6: write true or false"},
		{"v6only with ipv6 false", "subnets:\n  s: fd00:1::/64\nnodes:\n  a: {ip6: 'fd00:1::1', ipv6: false}\n", "nodes.a.ip6: the node says ipv6: false"},
		{"ip in v6only", "subnets:\n  s: fd00:1::/64\nnodes:\n  a: {ip: 172.18.0.1}\n", "nodes.a.ip: 172.18.0.1 is in no subnet of the file (s fd00:1::/64)"},
		{"prefix not /64", "subnets:\n  s: fd00:1::/48\nnodes:\n  a: {ip6: 'fd00:1::1'}\n", "f.yaml:2:6: subnets.s: fd00:1::/48: an IPv6 subnet must be a /64"},
		{"prefix link-local", "subnets:\n  s: {ipv4: 172.18.0.0/24, ipv6: 'fe80::/64'}\nnodes:\n  a: {ip: 172.18.0.1}\n", "f.yaml:2:34: subnets.s.ipv6: fe80::/64 is link-local"},
		{"prefix multicast", "subnets:\n  s: 'ff05::/64'\nnodes:\n  a: {ip6: 'ff05::1'}\n", "subnets.s: ff05::/64 is multicast"},
		{"prefix mapped", "subnets:\n  s: '::ffff:0:0/96'\nnodes:\n  a: {ip: 172.18.0.1}\n", "subnets.s: ::ffff:0.0.0.0/96 is an IPv4-mapped prefix"},
		{"v6 prefix under ipv4", "subnets:\n  s: {ipv4: 'fd00:1::/64'}\nnodes:\n  a: {ip: 172.18.0.1}\n", "subnets.s.ipv4: \"fd00:1::/64\" is an IPv6 prefix"},
		{"overlapping explicit", "subnets:\n  x: fd00:1::/64\n  y: fd00:1::/64\nnodes:\n  a: {ip6: 'fd00:1::1'}\n", "f.yaml:3:6: subnets.y: IPv6 prefix fd00:1::/64 overlaps subnets.x (fd00:1::/64)"},
		{"overlapping mapped", strings.Replace(two, "%s", "{ipv4: 172.18.1.0/24, ipv6: 'fd00:ac12::/64'}", 1), "subnets.y.ipv6: IPv6 prefix fd00:ac12::/64 overlaps subnets.x (fd00:ac12::/64)"},
		{"no address at all", "subnets:\n  s: {ipv6: false}\nnodes:\n  a: {ip: 172.18.0.1}\n", "subnets.s: needs ipv4:, ipv6: or both"},
		{"unknown subnet key", "subnets:\n  s: {ipv5: x}\nnodes:\n  a: {ip: 172.18.0.1}\n", "subnets.s: unknown key \"ipv5\"; known keys: ipv4, ipv6"},
		{"ipv6 false with prefix", "ipv6: false\nsubnets:\n  s: fd00:1::/64\nnodes:\n  a: {ip6: 'fd00:1::1'}\n", "subnets.s: the file says ipv6: false"},
		{"bad top ipv6", "ipv6: maybe\nnodes:\n  a: {ip: 172.18.0.1}\n", "f.yaml:1:7: ipv6: write true or false"},
	} {
		_, err := Parse("f.yaml", "/", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}
