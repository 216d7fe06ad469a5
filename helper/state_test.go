package helper

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/internal/install"
)

// TestInNS: a record with a cookie is in the namespace of that cookie
// only, whatever its inode (the kernel gives a dead namespace's inode to
// the next new one); one of an older helper, without a cookie, is matched
// by its inode.
func TestInNS(t *testing.T) {
	here := nsID{Ino: 4026532178, Cookie: 9}
	for _, c := range []struct {
		r    install.Record
		want bool
	}{
		{install.Record{NetNS: 4026532178, NetNSCookie: 9}, true},
		{install.Record{NetNS: 4026532178, NetNSCookie: 8}, false}, // a dead namespace of the same inode
		{install.Record{NetNS: 4026532100, NetNSCookie: 9}, true},
		{install.Record{NetNS: 4026532178}, true}, // an older helper's
		{install.Record{NetNS: 4026532100}, false},
	} {
		if got := inNS(c.r, here); got != c.want {
			t.Errorf("inNS(netns %d cookie %d) = %v, want %v", c.r.NetNS, c.r.NetNSCookie, got, c.want)
		}
	}
	ns, err := netNS()
	if err != nil || ns.Ino == 0 || ns.Cookie == 0 {
		t.Errorf("netNS() = %+v, %v; want an inode and a cookie", ns, err)
	}
}

// TestHostLink6: the Nth /30 of the IPv4 host pool gets the Nth /64 of
// host-cidr6, and a pool too small for N is refused with its fix.
func TestHostLink6(t *testing.T) {
	pool4 := netip.MustParsePrefix("172.18.255.0/24")
	for _, c := range []struct {
		pool6, hostNet, want string
	}{
		{"fd6e:7372::/48", "172.18.255.0/30", "fd6e:7372::/64"},
		{"fd6e:7372::/48", "172.18.255.4/30", "fd6e:7372:0:1::/64"},
		{"fd6e:7372::/48", "172.18.255.252/30", "fd6e:7372:0:3f::/64"},
		{"fd6e:7372:0:ff00::/56", "172.18.255.8/30", "fd6e:7372:0:ff02::/64"},
		{"fd00::/16", "172.18.255.12/30", "fd00:0:0:3::/64"},
		{"fd6e:7372::/64", "172.18.255.0/30", "fd6e:7372::/64"},
	} {
		got, err := hostLink6(netip.MustParsePrefix(c.pool6), pool4, netip.MustParsePrefix(c.hostNet))
		if err != nil || got != netip.MustParsePrefix(c.want) {
			t.Errorf("hostLink6(%s, %s) = %s, %v; want %s", c.pool6, c.hostNet, got, err, c.want)
		}
	}
	_, err := hostLink6(netip.MustParsePrefix("fd6e:7372::/63"), pool4, netip.MustParsePrefix("172.18.255.8/30"))
	if err == nil || !strings.Contains(err.Error(), "picks a larger host-cidr6") {
		t.Errorf("a /63 for the third /30: %v, want it refused", err)
	}
}
