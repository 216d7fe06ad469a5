package ipam

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheckGuest(t *testing.T) {
	s := DefaultSubnet()
	for _, tc := range []struct {
		addr, wantErr string
	}{
		{"172.18.0.1", ""},
		{"172.18.0.253", ""},
		{"172.18.0.0", "network address"},
		{"172.18.0.255", "broadcast address"},
		{"172.18.0.254", "bridge's own address"},
		{"172.18.1.1", "outside the guest subnet 172.18.0.0/24; pick an address in 172.18.0.1-172.18.0.253"},
		{"10.0.0.1", "outside"},
	} {
		err := s.CheckGuest("--ip", netip.MustParseAddr(tc.addr))
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%s: unexpected error %v", tc.addr, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "--ip: ") {
			t.Errorf("%s: error %v, want one naming --ip and containing %q", tc.addr, err, tc.wantErr)
		}
	}
}

func TestParseGuest(t *testing.T) {
	s := DefaultSubnet()
	for _, bad := range []string{"", "172.18.0", "172.18.0.1/24", "::1", "hello", "172.18.0.300"} {
		if _, err := s.ParseGuest("--ip", bad); err == nil || !strings.HasPrefix(err.Error(), "--ip: ") {
			t.Errorf("ParseGuest(%q) = %v, want an error naming --ip", bad, err)
		}
	}
	if a, err := s.ParseGuest("--ip", "172.18.0.7"); err != nil || a.String() != "172.18.0.7" {
		t.Errorf("ParseGuest(172.18.0.7) = %v, %v", a, err)
	}
}

func TestNewSubnet(t *testing.T) {
	s, err := NewSubnet("subnets.back", "172.18.1.0/24")
	if err != nil {
		t.Fatal(err)
	}
	if s.Bridge.String() != "172.18.1.254" {
		t.Errorf("bridge = %s, want 172.18.1.254", s.Bridge)
	}
	for _, bad := range []string{"172.18.1.1/24", "172.18.1.0", "fd00::/64", "172.18.1.0/30", "10.0.0.0/7"} {
		if _, err := NewSubnet("subnets.back", bad); err == nil || !strings.HasPrefix(err.Error(), "subnets.back: ") {
			t.Errorf("NewSubnet(%q) = %v, want an error naming the field", bad, err)
		}
	}
}

func TestIfName(t *testing.T) {
	if got := IfName("v", "db"); got != "vdb" {
		t.Errorf("IfName(v, db) = %q", got)
	}
	long := "a-node-name-that-is-far-too-long"
	a, b := IfName("v", long), IfName("v", long)
	if a != b || len(a) != MaxIfNameLen || !strings.HasPrefix(a, "v") {
		t.Errorf("IfName(long) = %q, %q: want stable 15-byte names", a, b)
	}
	if IfName("v", long) == IfName("v", long+"x") {
		t.Error("different long names must give different interface names")
	}
	if got := IfName("v", "a:b"); strings.Contains(got, ":") {
		t.Errorf("IfName with ':' = %q, want it hashed", got)
	}
}

func TestNames(t *testing.T) {
	for _, ok := range []string{"db", "web-1", "n.2", "A_b"} {
		if err := CheckNodeName("nodes", ok); err != nil {
			t.Errorf("CheckNodeName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-x", "a b", "a/b", strings.Repeat("x", 64)} {
		if err := CheckNodeName("nodes", bad); err == nil {
			t.Errorf("CheckNodeName(%q) accepted", bad)
		}
	}
	for _, ok := range []string{"db", "web-1.example", "a"} {
		if err := CheckHostname("--hostname", ok); err != nil {
			t.Errorf("CheckHostname(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a-", "a..b", "a_b", "a.", "a b"} {
		if err := CheckHostname("--hostname", bad); err == nil {
			t.Errorf("CheckHostname(%q) accepted", bad)
		}
	}
}
