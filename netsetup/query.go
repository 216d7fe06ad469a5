package netsetup

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LinkUp says whether the link name exists in h's namespace (ok) and
// whether it is administratively up.
func LinkUp(h *netlink.Handle, name string) (up, ok bool) {
	l, err := h.LinkByName(name)
	if err != nil {
		return false, false
	}
	return l.Attrs().Flags&net.FlagUp != 0, true
}

// DeleteLink deletes the link name from h's namespace, if it is there
// (a veth takes its peer with it).
func DeleteLink(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return nil
	}
	if err := h.LinkDel(l); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// HasAddr says whether the link ifname in h's namespace is up with the
// address p (in either family).
func HasAddr(h *netlink.Handle, ifname string, p netip.Prefix) bool {
	l, err := h.LinkByName(ifname)
	if err != nil || l.Attrs().Flags&net.FlagUp == 0 {
		return false
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.IP.Equal(net.IP(p.Addr().AsSlice())) {
			return true
		}
	}
	return false
}

// DefaultGateways are the gateways of the default routes of h's
// namespace, IPv4 and IPv6.
func DefaultGateways(h *netlink.Handle) ([]netip.Addr, error) {
	routes, err := h.RouteList(nil, netlink.FAMILY_ALL)
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		routes, err = h.RouteList(nil, netlink.FAMILY_ALL)
	}
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
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
	if l, err := h.LinkByName(except); except != "" && err == nil {
		own = l.Attrs().Index
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
// namespace, once more if a change interrupted the dump.
func everyTable(h *netlink.Handle, family int) ([]netlink.Route, error) {
	filter := &netlink.Route{Table: unix.RT_TABLE_UNSPEC}
	routes, err := h.RouteListFiltered(family, filter, netlink.RT_FILTER_TABLE)
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		routes, err = h.RouteListFiltered(family, filter, netlink.RT_FILTER_TABLE)
	}
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return routes, nil
}
