package netsetup

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/nsrun/nsrun/nsfd"
)

// TestRoutesAndLinks: what the helper asks of a namespace (links, their
// addresses, routes, default gateways) reads back what was made, and
// DefaultRoute replaces the default route rather than failing on it.
func TestRoutesAndLinks(t *testing.T) {
	ns, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	peer, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	h, err := Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := AddVethPair(h, "q0", "q1", peer); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"10.7.0.1/29", "fd00:7::1/64"} {
		if err := AddrUp(h, "q0", netip.MustParsePrefix(p)); err != nil {
			t.Fatal(err)
		}
	}
	if up, ok := LinkUp(h, "q0"); !up || !ok {
		t.Fatalf("q0: up %v, exists %v", up, ok)
	}
	if _, ok := LinkUp(h, "q1"); ok {
		t.Error("the peer is in this namespace")
	}
	for _, gw := range []string{"10.7.0.2", "10.7.0.3", "fd00:7::2"} {
		if err := DefaultRoute(h, "q0", netip.MustParseAddr(gw)); err != nil {
			t.Fatalf("default route via %s: %v", gw, err)
		}
	}
	gws, err := DefaultGateways(h)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(gws) != "[10.7.0.3 fd00:7::2]" {
		t.Errorf("default gateways %v, want the second IPv4 one (replaced) and the IPv6 one", gws)
	}
	// Every table: the main one's connected route, the local table's
	// own and broadcast addresses.
	for _, c := range []struct {
		v6     bool
		except string
		want   string // "" for none
	}{
		{false, "", "{10.7.0.0/29 q0}"},
		{false, "q0", ""},
		{true, "", "{fd00:7::/64 q0}"},
		{true, "q0", ""},
	} {
		rs, err := Routes(h, c.v6, c.except)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range rs {
			found = found || fmt.Sprint(r) == c.want
			if r.Dev == c.except {
				t.Errorf("Routes(v6 %v, except %q) has %v", c.v6, c.except, r)
			}
		}
		if c.want != "" && !found {
			t.Errorf("Routes(v6 %v, except %q): %v, want %s among them", c.v6, c.except, rs, c.want)
		}
	}
	if err := DeleteLink(h, "q0"); err != nil {
		t.Fatal(err)
	}
	if _, ok := LinkUp(h, "q0"); ok {
		t.Error("q0 is left after DeleteLink")
	}
	if err := DeleteLink(h, "q0"); err != nil {
		t.Errorf("DeleteLink of a missing link: %v", err)
	}
}
