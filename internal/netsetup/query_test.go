package netsetup

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/nsfd"
)

// nsWithVeth makes a network namespace and a peer namespace, both
// closed when t ends, and a veth pair between them: a in the first, b in
// the peer. It returns the first namespace and a handle on it.
func nsWithVeth(t *testing.T, a, b string) (*os.File, *netlink.Handle) {
	t.Helper()
	ns, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	peer, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	h, err := Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if err := AddVethPair(h, a, b, peer); err != nil {
		t.Fatal(err)
	}
	return ns, h
}

// TestRoutesAndLinks: what the helper asks of a namespace (links, their
// addresses, routes, default gateways) reads back what was made, and
// DefaultRoute replaces the default route rather than failing on it.
func TestRoutesAndLinks(t *testing.T) {
	_, h := nsWithVeth(t, "q0", "q1")
	for _, p := range []string{"10.7.0.1/29", "fd00:7::1/64"} {
		if err := AddrUp(h, "q0", netip.MustParsePrefix(p)); err != nil {
			t.Fatal(err)
		}
	}
	if up, ok, err := LinkUp(h, "q0"); !up || !ok || err != nil {
		t.Fatalf("q0: up %v, exists %v, %v", up, ok, err)
	}
	if _, ok, err := LinkUp(h, "q1"); ok || err != nil {
		t.Errorf("the peer is in this namespace (%v)", err)
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
	if _, ok, err := LinkUp(h, "q0"); ok || err != nil {
		t.Errorf("q0 is left after DeleteLink (%v)", err)
	}
	if err := DeleteLink(h, "q0"); err != nil {
		t.Errorf("DeleteLink of a missing link: %v", err)
	}
}

// TestRetryDump: a dump that a change interrupted is asked for again, at
// most maxDumpTries times; what an interrupted dump returned is never
// passed on, and other errors are not retried.
func TestRetryDump(t *testing.T) {
	calls := 0
	flaky := func(interrupted int) func() ([]int, error) {
		calls = 0
		return func() ([]int, error) {
			calls++
			if calls <= interrupted {
				return []int{-1}, netlink.ErrDumpInterrupted // a list that may be spoiled
			}
			return []int{1, 2}, nil
		}
	}
	if got, err := retryDump("things", flaky(3)); err != nil || len(got) != 2 || calls != 4 {
		t.Errorf("interrupted 3 times: %v, %v after %d calls; want the fourth dump's list", got, err, calls)
	}
	got, err := retryDump("things", flaky(maxDumpTries))
	if !errors.Is(err, netlink.ErrDumpInterrupted) || got != nil || calls != maxDumpTries || !strings.Contains(err.Error(), "list things") {
		t.Errorf("always interrupted: %v, %v after %d calls; want ErrDumpInterrupted, no list, %d calls", got, err, calls, maxDumpTries)
	}
	calls = 0
	_, err = retryDump("things", func() ([]int, error) { calls++; return nil, unix.EPERM })
	if !errors.Is(err, unix.EPERM) || calls != 1 {
		t.Errorf("another error: %v after %d calls; want it at once", err, calls)
	}
}

// TestHasAddrUnderChurn: while other addresses of the namespace come and
// go, address dumps are interrupted (NLM_F_DUMP_INTR: the control below
// counts them), and HasAddr still never reads an address that is there
// as missing: it retries, or at worst says it could not tell. Before,
// it read every error as "not there", and the helper's install then
// deleted and re-created the user's veth.
func TestHasAddrUnderChurn(t *testing.T) {
	ns, h := nsWithVeth(t, "c0", "c1")
	want := netip.MustParsePrefix("10.8.0.1/30")
	if err := AddrUp(h, "c0", want); err != nil {
		t.Fatal(err)
	}
	// Enough addresses that a dump takes several messages of the kernel's.
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1500 {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 9, byte(i/250), byte(i%250+1)), Mask: net.CIDRMask(32, 32)}}
		if err := h.AddrAdd(lo, a); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	churned := make(chan error, 1)
	go func() {
		ch, err := Handle(ns)
		if err != nil {
			churned <- err
			return
		}
		defer ch.Close()
		a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 10, 0, 1), Mask: net.CIDRMask(32, 32)}}
		for {
			select {
			case <-stop:
				churned <- nil
				return
			default:
			}
			if err := ch.AddrAdd(lo, a); err != nil {
				churned <- err
				return
			}
			if err := ch.AddrDel(lo, a); err != nil {
				churned <- err
				return
			}
			time.Sleep(time.Millisecond) // a busy host, not a flood
		}
	}()
	interrupted, unsure := 0, 0
	c0, err := h.LinkByName("c0")
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		if _, err := h.AddrList(c0, netlink.FAMILY_ALL); errors.Is(err, netlink.ErrDumpInterrupted) {
			interrupted++
		}
		ok, err := HasAddr(h, "c0", want)
		switch {
		case err != nil && errors.Is(err, netlink.ErrDumpInterrupted):
			unsure++
		case err != nil:
			t.Fatal(err)
		case !ok:
			t.Fatalf("HasAddr read c0's address %s as missing while other addresses changed", want)
		}
	}
	close(stop)
	if err := <-churned; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d of 200 control dumps interrupted; HasAddr could not tell %d times", interrupted, unsure)
	if interrupted == 0 {
		t.Fatal("no dump was interrupted: the test proves nothing")
	}
	if unsure > 10 {
		t.Errorf("HasAddr could not tell %d times of 200", unsure)
	}
}
