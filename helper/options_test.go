package helper

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/internal/install"
)

func TestParseOptionsUnderSudo(t *testing.T) {
	admin := AdminConfig{
		HostPool: netip.MustParsePrefix("10.200.0.0/16"),
		RunsCIDR: netip.MustParsePrefix("10.201.0.0/16"),
		Resolver: netip.MustParseAddrPort("127.0.0.1:5353"),
	}
	for _, c := range []struct {
		f     Flags
		cfg   AdminConfig
		sudo  bool
		error string
	}{
		{Flags{HostCIDR: "10.200.0.0/24"}, AdminConfig{}, true, "--host-cidr: under sudo only the admin picks host ranges"},
		{Flags{RunsCIDR: "10.201.0.0/19"}, AdminConfig{}, true, "--runs-cidr: under sudo only the admin picks host ranges"},
		{Flags{Resolver: "127.0.0.1"}, AdminConfig{}, true, "--resolver: under sudo only the admin picks"},
		{Flags{HostCIDR: "10.200.0.0/24", Resolver: "127.0.0.1"}, AdminConfig{}, false, ""},
		{Flags{HostCIDR: "10.200.9.0/24", RunsCIDR: "10.201.0.0/19", Resolver: "127.0.0.1:5353"}, admin, true, ""},
		{Flags{HostCIDR: "10.199.0.0/24"}, admin, true, "is outside the admin's host-cidr 10.200.0.0/16"},
		{Flags{HostCIDR: "10.0.0.0/8"}, admin, true, "is outside the admin's host-cidr 10.200.0.0/16"},
		{Flags{Resolver: "127.0.0.1:53"}, admin, true, "--resolver: under sudo only the admin picks"},
	} {
		o, err := ParseOptions(c.f, "u", 1000, 1000, c.cfg, "/etc/nsrun/helper.conf", c.sudo)
		switch {
		case c.error == "" && err != nil:
			t.Errorf("%+v sudo=%v: %v", c.f, c.sudo, err)
		case c.error != "" && (err == nil || !strings.Contains(err.Error(), c.error)):
			t.Errorf("%+v sudo=%v: %v; want %q", c.f, c.sudo, err, c.error)
		case c.error == "" && c.f.HostCIDR != "" && o.HostPool.String() != c.f.HostCIDR:
			t.Errorf("%+v: host pool %s", c.f, o.HostPool)
		}
	}
	o, err := ParseOptions(Flags{}, "u", 1000, 1000, admin, "/etc/nsrun/helper.conf", true)
	if err != nil || o.HostPool != admin.HostPool || o.RunsCIDR != admin.RunsCIDR || o.Resolver != admin.Resolver {
		t.Errorf("the admin's config is not the default: %+v, %v", o, err)
	}
}

func TestChooseHostNet(t *testing.T) {
	pool := netip.MustParsePrefix("172.18.255.0/24")
	taken := []netip.Prefix{netip.MustParsePrefix("172.18.255.0/30"), netip.MustParsePrefix("172.18.255.4/30")}
	names := []string{"a", "b"}
	p, err := chooseHostNet(pool, install.Record{}, taken, names)
	if err != nil || p.String() != "172.18.255.8/30" {
		t.Errorf("first free /30: %s, %v", p, err)
	}
	prev := install.Record{HostAddr: netip.MustParsePrefix("172.18.255.21/30")}
	if p, _ := chooseHostNet(pool, prev, taken, names); p.String() != "172.18.255.20/30" {
		t.Errorf("the previous install's /30 is not kept: %s", p)
	}
	prev.HostAddr = netip.MustParsePrefix("172.18.255.5/30")
	if p, _ := chooseHostNet(pool, prev, taken, names); p.String() != "172.18.255.8/30" {
		t.Errorf("a previous /30 now taken by another user is kept: %s", p)
	}
	if _, err := chooseHostNet(netip.MustParsePrefix("172.18.255.0/29"), install.Record{}, taken, names); err == nil || !strings.Contains(err.Error(), "no free /30") {
		t.Errorf("a full pool: %v", err)
	}
}
