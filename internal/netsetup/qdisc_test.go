package netsetup

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/nsfd"
)

// TestVethPairAndShaping makes a veth pair into a second namespace, then
// sets, changes and clears its shaping, reading back what the kernel holds.
func TestVethPairAndShaping(t *testing.T) {
	peerNS, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	defer peerNS.Close()
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := AddVethPair(h, "vtest", "ptest", peerNS); err != nil {
		t.Fatal(err)
	}
	// Deleted here, not left to the peer namespace's end: the kernel
	// removes a veth with its namespace asynchronously, so a next run of
	// this test (-count) would find vtest still there.
	defer func() {
		if err := DeleteLink(h, "vtest"); err != nil {
			t.Errorf("delete vtest: %v", err)
		}
	}()
	if up, ok, err := LinkUp(h, "vtest"); !ok || up || err != nil {
		t.Fatalf("vtest: exists %v, up %v, %v; want it down", ok, up, err)
	}
	if err := AddrUp(h, "vtest", netip.MustParsePrefix("10.9.0.1/30")); err != nil {
		t.Fatal(err)
	}
	yes, err1 := HasAddr(h, "vtest", netip.MustParsePrefix("10.9.0.1/30"))
	no, err2 := HasAddr(h, "vtest", netip.MustParsePrefix("10.9.0.2/30"))
	if !yes || no || err1 != nil || err2 != nil {
		t.Errorf("HasAddr does not tell vtest's address from another: %v %v %v %v", yes, no, err1, err2)
	}
	link, err := h.LinkByName("vtest")
	if err != nil || link.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("vtest: %v, flags %v", err, link)
	}
	if _, err := h.LinkByName("ptest"); err == nil {
		t.Error("the peer is in this namespace too")
	}
	ph, err := Handle(peerNS)
	if err != nil {
		t.Fatal(err)
	}
	defer ph.Close()
	if _, err := ph.LinkByName("ptest"); err != nil {
		t.Errorf("the peer is not in its namespace: %v", err)
	}
	if err := AddVethPair(h, "vtest", "ptest2", peerNS); err == nil {
		t.Error("a second vtest was created")
	}

	root := func() netlink.Qdisc {
		qs, err := h.QdiscList(link)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			if q.Attrs().Parent == netlink.HANDLE_ROOT {
				return q
			}
		}
		return nil
	}
	if err := SetShaping(h, "vtest", Shaping{Rate: 8e6}); err != nil {
		t.Fatal(err)
	}
	tbf, ok := root().(*netlink.Tbf)
	if !ok || tbf.Rate != 1e6 {
		t.Fatalf("rate 8 Mbit/s: root qdisc %+v, want tbf at 1e6 bytes/s", root())
	}
	if err := SetShaping(h, "vtest", Shaping{Rate: 8e5}); err != nil {
		t.Fatal(err)
	}
	if tbf, ok := root().(*netlink.Tbf); !ok || tbf.Rate != 1e5 {
		t.Fatalf("rate changed: root qdisc %+v", root())
	}
	err = SetShaping(h, "vtest", Shaping{Delay: 10 * time.Millisecond, Jitter: time.Millisecond})
	switch {
	case errors.Is(err, ErrNoNetem):
		t.Logf("this kernel has no netem: %v", err)
	case err != nil:
		t.Fatal(err)
	default:
		if nq, ok := root().(*netlink.Netem); !ok || nq.Latency == 0 {
			t.Errorf("delay: root qdisc %+v", root())
		}
	}
	if err := SetShaping(h, "vtest", Shaping{}); err != nil {
		t.Fatal(err)
	}
	if q := root(); q != nil && (q.Type() == "tbf" || q.Type() == "netem") {
		t.Errorf("cleared: root qdisc %+v", q)
	}
	if err := SetShaping(h, "nosuch", Shaping{Rate: 1e6}); err == nil {
		t.Error("shaping of a missing link")
	}
}
