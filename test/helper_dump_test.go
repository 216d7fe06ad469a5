package test

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/nsrun/nsrun/internal/install"
)

// churnAddresses gives the namespace at path 1500 addresses on lo, so
// that an address or route dump there takes several messages, and adds
// and removes one more every millisecond or so until the test ends: a
// busy host, where dumps are interrupted (NLM_F_DUMP_INTR).
func churnAddresses(t *testing.T, path string) {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(ns)
	ns.Close()
	if err != nil {
		t.Fatal(err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	for i := range 1500 {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 97, byte(i/250), byte(i%250+1)), Mask: net.CIDRMask(32, 32)}}
		if err := h.AddrAdd(lo, a); err != nil {
			h.Close()
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	t.Cleanup(func() { close(stop); wg.Wait(); h.Close() })
	go func() {
		defer wg.Done()
		a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 97, 99, 1), Mask: net.CIDRMask(32, 32)}}
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = h.AddrAdd(lo, a)
			_ = h.AddrDel(lo, a)
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
}

// TestHelperInstallIdempotentUnderChurn: issue 22. On a host whose
// addresses change all the time, the dumps install reads are
// interrupted; the helper's checks read an interrupted dump as "not
// there" and install, run again, deleted and re-created the user's veth
// (cutting the uplink of their live runs). Run again five times under
// churn, install changes nothing: the veth keeps its index, and install
// says "nothing to change".
func TestHelperInstallIdempotentUnderChurn(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	h.install(t, u)
	ifname := install.InterfaceName(u.UID)
	index := func() string {
		return strings.Fields(h.sh(t, "cat /sys/class/net/"+ifname+"/ifindex") + " none")[0]
	}
	before := index()
	churnAddresses(t, "/run/netns/"+h.Name)
	for i := range 5 {
		r := h.helper(t, "install", "--user", u.Name, "--resolver", "127.0.0.1:15399")
		if r.Code != 0 || !strings.Contains(r.Stdout, "nothing to change") {
			t.Errorf("install %d again under churn: exit %d\n%s\n%s", i+1, r.Code, r.Stdout, r.Stderr)
		}
		if got := index(); got != before {
			t.Fatalf("install %d again under churn re-created %s (index %s, was %s)", i+1, ifname, got, before)
		}
	}
}
