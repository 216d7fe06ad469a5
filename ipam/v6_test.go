package ipam

import (
	"net/netip"
	"strings"
	"testing"
)

func TestPair6Rule(t *testing.T) {
	for _, tc := range []struct{ v4, v6, bridge6, guest4, guest6 string }{
		{"172.18.0.0/24", "fd00:ac12::/64", "fd00:ac12::fe", "172.18.0.7", "fd00:ac12::7"},
		{"172.18.0.0/24", "fd00:ac12::/64", "fd00:ac12::fe", "172.18.0.10", "fd00:ac12::a"},
		{"172.18.1.0/24", "fd00:ac12:100::/64", "fd00:ac12:100::fe", "172.18.1.1", "fd00:ac12:100::1"},
		{"10.1.0.0/16", "fd00:a01::/64", "fd00:a01::fffe", "10.1.2.3", "fd00:a01::203"},
		{"192.168.7.8/29", "fd00:c0a8:708::/64", "fd00:c0a8:708::6", "192.168.7.9", "fd00:c0a8:708::1"},
	} {
		s, err := NewSubnet("s", tc.v4)
		if err != nil {
			t.Fatal(err)
		}
		d := s.Dual()
		if d.Prefix6.String() != tc.v6 || d.Bridge6.String() != tc.bridge6 {
			t.Errorf("%s: paired with %s bridge %s, want %s bridge %s", tc.v4, d.Prefix6, d.Bridge6, tc.v6, tc.bridge6)
		}
		if g := d.Guest6(netip.MustParseAddr(tc.guest4)); g.String() != tc.guest6 {
			t.Errorf("%s: guest %s maps to %s, want %s", tc.v4, tc.guest4, g, tc.guest6)
		}
		if err := d.CheckGuest6("ip6", d.Guest6(netip.MustParseAddr(tc.guest4))); err != nil {
			t.Errorf("mapped guest refused: %v", err)
		}
	}
	if g := DefaultSubnet().Guest6(DefaultGuest); g.IsValid() {
		t.Errorf("a subnet without IPv6 maps %s to %s", DefaultGuest, g)
	}
}

func TestNewSubnet6(t *testing.T) {
	s, err := NewSubnet6("subnets.v6", "fd00:1::/64")
	if err != nil {
		t.Fatal(err)
	}
	if s.HasIPv4() || s.Bridge6.String() != "fd00:1::fe" {
		t.Errorf("IPv6-only subnet %+v, want bridge fd00:1::fe and no IPv4", s)
	}
	for _, tc := range []struct{ cidr, wantErr string }{
		{"fd00:1::/48", "must be a /64"},
		{"fd00:1::/80", "must be a /64"},
		{"fd00:1::1/64", "host bits set; write fd00:1::/64"},
		{"fe80::/64", "link-local"},
		{"ff02::/64", "multicast"},
		{"::ffff:172.18.0.0/120", "IPv4-mapped"},
		{"::/64", "loopback"},
		{"172.18.0.0/24", "IPv4 prefix"},
		{"fd00::1", "not an IPv6 prefix"},
		{"nonsense", "not an IPv6 prefix"},
	} {
		_, err := NewSubnet6("subnets.v6", tc.cidr)
		if err == nil || !strings.HasPrefix(err.Error(), "subnets.v6: ") || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("NewSubnet6(%q) = %v, want an error naming the field and containing %q", tc.cidr, err, tc.wantErr)
		}
	}
}

func TestCheckGuest6(t *testing.T) {
	s := DefaultSubnet().Dual()
	for _, tc := range []struct{ addr, wantErr string }{
		{"fd00:ac12::7", ""},
		{"fd00:ac12::1:2:3:4", ""},
		{"fd00:ac12::", "subnet-router anycast"},
		{"fd00:ac12::fe", "bridge's own address"},
		{"fd00:ac13::7", "outside the subnet's IPv6 prefix fd00:ac12::/64; pick an address such as fd00:ac12::7"},
		{"fe80::7", "link-local"},
		{"ff02::1", "multicast"},
		{"::ffff:172.18.0.7", "not an IPv6 address"},
		{"172.18.0.7", "not an IPv6 address"},
	} {
		err := s.CheckGuest6("nodes.db.ip6", netip.MustParseAddr(tc.addr))
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%s: unexpected error %v", tc.addr, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), "nodes.db.ip6: ") || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want one naming the field and containing %q", tc.addr, err, tc.wantErr)
		}
	}
	if _, err := s.ParseGuest6("--ip6", "fe80::1%eth0"); err == nil || !strings.Contains(err.Error(), "link-local") {
		t.Errorf("zoned link-local accepted: %v", err)
	}
	if _, err := s.ParseGuest6("--ip6", "fd00:ac12::1%eth0"); err == nil || !strings.Contains(err.Error(), "zone") {
		t.Errorf("zoned address accepted: %v", err)
	}
	if _, err := s.ParseGuest6("--ip6", "bogus"); err == nil || !strings.HasPrefix(err.Error(), "--ip6: ") {
		t.Errorf("bogus accepted: %v", err)
	}
	if err := DefaultSubnet().CheckGuest6("--ip6", netip.MustParseAddr("fd00:ac12::7")); err == nil || !strings.Contains(err.Error(), "no IPv6 prefix") {
		t.Errorf("IPv6 address accepted in an IPv4-only subnet: %v", err)
	}
	v6only, _ := NewSubnet6("s", "fd00:1::/64")
	if err := v6only.CheckGuest("ip", netip.MustParseAddr("172.18.0.7")); err == nil || !strings.Contains(err.Error(), "IPv6-only") {
		t.Errorf("IPv4 address accepted in an IPv6-only subnet: %v", err)
	}
}
