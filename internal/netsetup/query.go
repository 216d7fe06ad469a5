package netsetup

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LinkUp says whether the link name exists in h's namespace (ok) and
// whether it is administratively up. A missing link is no error; any
// other failure to ask is.
func LinkUp(h *netlink.Handle, name string) (up, ok bool, err error) {
	l, ok, err := linkByName(h, name)
	if err != nil || !ok {
		return false, false, err
	}
	return l.Attrs().Flags&net.FlagUp != 0, true, nil
}

// linkByName looks up the link name in h's namespace; ok is false (and
// err nil) when there is none.
func linkByName(h *netlink.Handle, name string) (l netlink.Link, ok bool, err error) {
	l, err = h.LinkByName(name)
	var missing netlink.LinkNotFoundError
	switch {
	case errors.As(err, &missing):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("look up link %s: %w", name, err)
	}
	return l, true, nil
}

// maxDumpTries bounds how often a dump is asked for again when a change
// of what it lists interrupted it (NLM_F_DUMP_INTR, which
// vishvananda/netlink reports as ErrDumpInterrupted with a list that may
// miss entries or hold stale ones).
const maxDumpTries = 10

// retryDump returns what dump lists once a dump ran whole: it calls dump
// again, at most maxDumpTries times in all, while a change interrupts it,
// waiting a little longer before each (a burst of changes passes).
// A list an interruption may have spoiled is never returned: after the
// last try it is an error naming what (a busy host: try again), which
// callers pass up rather than read as "not there".
func retryDump[T any](what string, dump func() (T, error)) (T, error) {
	for try := 1; ; try++ {
		out, err := dump()
		switch {
		case err == nil:
			return out, nil
		case !errors.Is(err, netlink.ErrDumpInterrupted):
			var zero T
			return zero, fmt.Errorf("list %s: %w", what, err)
		case try == maxDumpTries:
			var zero T
			return zero, fmt.Errorf("list %s: changes interrupted the dump %d times in a row (%w); try again", what, try, err)
		}
		time.Sleep(time.Duration(try) * time.Millisecond)
	}
}

// DeleteLink deletes the link name from h's namespace, if it is there
// (a veth takes its peer with it).
func DeleteLink(h *netlink.Handle, name string) error {
	l, ok, err := linkByName(h, name)
	if err != nil || !ok {
		return err
	}
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// HasAddr says whether the link ifname in h's namespace is up with the
// address p (in either family). A missing link is false; a failure to
// ask (a dump interrupted again and again included) is an error, never
// false: a caller that reads it as "not there" would undo and redo what
// is in place.
func HasAddr(h *netlink.Handle, ifname string, p netip.Prefix) (bool, error) {
	l, ok, err := linkByName(h, ifname)
	if err != nil || !ok || l.Attrs().Flags&net.FlagUp == 0 {
		return false, err
	}
	addrs, err := retryDump("addresses of "+ifname, func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return false, err
	}
	for _, a := range addrs {
		if a.IP.Equal(net.IP(p.Addr().AsSlice())) {
			return true, nil
		}
	}
	return false, nil
}

// DefaultGateways are the gateways of the default routes of h's
// namespace, IPv4 and IPv6.
func DefaultGateways(h *netlink.Handle) ([]netip.Addr, error) {
	routes, err := retryDump("routes", func() ([]netlink.Route, error) { return h.RouteList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, r := range routes {
		if r.Dst != nil && !r.Dst.IP.IsUnspecified() {
			continue
		}
		if ones, _ := maskSize(r.Dst); ones != 0 {
			continue
		}
		if a, ok := netip.AddrFromSlice(r.Gw); ok {
			out = append(out, a.Unmap())
		}
	}
	return out, nil
}

func maskSize(n *net.IPNet) (int, int) {
	if n == nil {
		return 0, 0
	}
	return n.Mask.Size()
}

// Route is a route of a namespace: where to, and through which link.
type Route struct {
	Dst netip.Prefix
	Dev string // "" when the link is unknown
}

// Routes lists the routes of h's namespace in every table, IPv6 ones
// when v6, else IPv4 ones: all but default routes and those through the
// link except ("" for none).
func Routes(h *netlink.Handle, v6 bool, except string) ([]Route, error) {
	family := netlink.FAMILY_V4
	if v6 {
		family = netlink.FAMILY_V6
	}
	own := -1
	if except != "" {
		l, ok, err := linkByName(h, except)
		if err != nil {
			return nil, err
		}
		if ok {
			own = l.Attrs().Index
		}
	}
	routes, err := everyTable(h, family)
	if err != nil {
		return nil, err
	}
	var out []Route
	for _, r := range routes {
		if r.Dst == nil || r.LinkIndex == own {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		ip := r.Dst.IP
		if !v6 {
			ip = ip.To4()
		}
		a, ok := netip.AddrFromSlice(ip)
		if !ok || ones == 0 {
			continue
		}
		rt := Route{Dst: netip.PrefixFrom(a, ones).Masked()}
		if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
			rt.Dev = l.Attrs().Name
		}
		out = append(out, rt)
	}
	return out, nil
}

// RALinks names the links of h's namespace that have IPv6 routes learned
// from router advertisements (protocol ra): the kernel renews those only
// while it accepts advertisements there.
func RALinks(h *netlink.Handle) ([]string, error) {
	routes, err := everyTable(h, netlink.FAMILY_V6)
	if err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	var names []string
	for _, r := range routes {
		if r.Protocol != unix.RTPROT_RA || seen[r.LinkIndex] {
			continue
		}
		seen[r.LinkIndex] = true
		if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
			names = append(names, l.Attrs().Name)
		}
	}
	return names, nil
}

// everyTable lists the routes of family in every routing table of h's
// namespace.
func everyTable(h *netlink.Handle, family int) ([]netlink.Route, error) {
	filter := &netlink.Route{Table: unix.RT_TABLE_UNSPEC}
	return retryDump("routes", func() ([]netlink.Route, error) {
		return h.RouteListFiltered(family, filter, netlink.RT_FILTER_TABLE)
	})
}
