package helper

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/nsrun/nsrun/internal/install"
	"github.com/nsrun/nsrun/internal/netsetup"
)

// chooseAddresses fills in the record: the user's host /30 is the earlier
// install's if still free, else the first one of the pool that neither a
// host route nor another user's install overlaps.
func (in *installer) chooseAddresses() error {
	o := in.o
	ifname := install.InterfaceName(o.UID)
	routes, names, err := hostRoutes(in.host, ifname, false)
	if err != nil {
		return err
	}
	if r, ok := clash(o.RunsCIDR, routes, names); ok {
		return fmt.Errorf("--runs-cidr %s overlaps the host route %s; pick a free range with --runs-cidr", o.RunsCIDR, r)
	}
	others, err := in.st.others(o.UID)
	if err != nil {
		return err
	}
	for _, r := range others {
		routes = append(routes, r.HostAddr.Masked())
		names = append(names, fmt.Sprintf("%s (%s's nsrun install)", r.HostAddr.Masked(), r.User))
	}
	hostNet, err := chooseHostNet(o.HostPool, in.prev, routes, names)
	if err != nil {
		return err
	}
	hostAddr := netip.PrefixFrom(hostNet.Addr().Next(), 30)
	in.rec = install.Record{
		User: o.User, UID: o.UID, GID: o.GID,
		Interface:   ifname,
		HostAddr:    hostAddr,
		Gateway:     netip.PrefixFrom(hostAddr.Addr().Next(), 30),
		RunsCIDR:    o.RunsCIDR,
		HostPool:    o.HostPool,
		Resolver:    o.Resolver,
		Table:       install.TableName(o.UID),
		MadeDir:     in.prev.MadeDir,
		NetNS:       in.ns.Ino,
		NetNSCookie: in.ns.Cookie,
	}
	if !o.HostPool6.IsValid() || !hostHasIPv6() {
		return nil // runs stay dual-stack inside; nsrun says so
	}
	if in.no6, err = raDependence(in.host); err != nil || in.no6 != "" {
		return err // as without IPv6 on the host
	}
	link6, err := hostLink6(o.HostPool6, o.HostPool, hostNet)
	if err != nil {
		return err
	}
	routes6, names6, err := hostRoutes(in.host, ifname, true)
	if err != nil {
		return err
	}
	for _, r := range others {
		if r.HostAddr6.IsValid() {
			routes6 = append(routes6, r.HostAddr6.Masked())
			names6 = append(names6, fmt.Sprintf("%s (%s's nsrun install)", r.HostAddr6.Masked(), r.User))
		}
	}
	if r, ok := clash(link6, routes6, names6); ok {
		return fmt.Errorf("host-cidr6 %s: the /64 for host /30 %s, %s, overlaps %s; the admin picks another host-cidr6 in %s", o.HostPool6, hostNet, link6, r, "/etc/nsrun/helper.conf")
	}
	in.rec.HostAddr6 = netip.PrefixFrom(link6.Addr().Next(), 64)
	in.rec.Gateway6 = netip.PrefixFrom(link6.Addr().Next().Next(), 64)
	in.rec.HostPool6 = o.HostPool6
	return nil
}

// hostHasIPv6 reports whether the helper's network namespace has IPv6 on
// (no net.ipv6 at all, or net.ipv6.conf.all.disable_ipv6=1: none).
func hostHasIPv6() bool { return sysctl("net/ipv6/conf/all/disable_ipv6") == "0" }

// raDependence says why turning IPv6 forwarding on would change how the
// host itself is routed, or "" if it would not: with forwarding on, the
// kernel ignores router advertisements on every link whose accept_ra is 1,
// so a link that takes its IPv6 routes from them would lose those routes
// once their lifetime ends. Forwarding already on changes nothing.
func raDependence(host *netlink.Handle) (string, error) {
	if sysctl(forward6) != "0" {
		return "", nil
	}
	links, err := netsetup.RALinks(host)
	if err != nil {
		return "", err
	}
	for _, l := range links {
		if sysctl("net/ipv6/conf/"+l+"/accept_ra") == "1" {
			return fmt.Sprintf("%[1]s takes its IPv6 routes from router advertisements (net.ipv6.conf.%[1]s.accept_ra=1), "+
				"and the kernel ignores those once IPv6 forwarding is on, which the uplink needs; to have it, "+
				"set net.ipv6.conf.%[1]s.accept_ra=2 (advertisements kept with forwarding on) and install again, "+
				"or set host-cidr6 = none in /etc/nsrun/helper.conf to say no IPv6 uplink", l), nil
		}
	}
	return "", nil
}

// hostLink6 is the user's host /64: the Nth /64 of pool6 for the Nth /30
// of the IPv4 host pool (so it follows the /30, which no two users share).
func hostLink6(pool6, pool4, hostNet netip.Prefix) (netip.Prefix, error) {
	a, b := pool4.Addr().As4(), hostNet.Addr().As4()
	n := (binary.BigEndian.Uint32(b[:]) - binary.BigEndian.Uint32(a[:])) / 4
	if uint64(n) >= 1<<(64-pool6.Bits()) {
		return netip.Prefix{}, fmt.Errorf("host-cidr6 %s has no /64 for the %s host /30 (number %d of %s); the admin picks a larger host-cidr6", pool6, hostNet, n, pool4)
	}
	x := pool6.Addr().As16()
	hi := binary.BigEndian.Uint64(x[:8]) + uint64(n)
	binary.BigEndian.PutUint64(x[:8], hi)
	return netip.PrefixFrom(netip.AddrFrom16(x), 64), nil
}

// chooseHostNet picks the user's host /30: the previous one if still in the
// pool, else the first one that nothing overlaps.
func chooseHostNet(pool netip.Prefix, prev install.Record, routes []netip.Prefix, names []string) (netip.Prefix, error) {
	if p := prev.HostAddr.Masked(); prev.HostAddr.IsValid() && pool.Contains(p.Addr()) {
		if _, ok := clash(p, routes, names); !ok {
			return p, nil
		}
	}
	var first string
	for a := pool.Addr(); pool.Contains(a); a = a.Next().Next().Next().Next() {
		p := netip.PrefixFrom(a, 30)
		r, ok := clash(p, routes, names)
		if !ok {
			return p, nil
		}
		if first == "" {
			first = r
		}
	}
	return netip.Prefix{}, fmt.Errorf("--host-cidr %s: no free /30 left (it overlaps %s, or every /30 is taken by other users); pick a free range with --host-cidr", pool, first)
}

// vias names the gateway's default routes.
func vias(rec install.Record) string {
	if rec.HostAddr6.IsValid() {
		return rec.HostAddr.Addr().String() + " and " + rec.HostAddr6.Addr().String()
	}
	return rec.HostAddr.Addr().String()
}

// addrs writes an IPv4 address and, if valid, an IPv6 one.
func addrs(p4, p6 netip.Prefix) string {
	if p6.IsValid() {
		return p4.String() + " and " + p6.String() + ", without duplicate address detection"
	}
	return p4.String()
}

// gatewayAddrs are the addresses of the gateway's end, as install shows
// them.
func gatewayAddrs(rec install.Record) string {
	if !rec.Gateway6.IsValid() {
		return addrs(rec.Gateway, rec.Gateway6)
	}
	return addrs(rec.Gateway, rec.Gateway6) + ", and no link-local address but " + install.GatewayLinkLocal.String()
}

// gatewayLinkLocal is the gateway end's link-local address where the host
// has IPv6 (none where it has not).
func gatewayLinkLocal(rec install.Record) netip.Prefix {
	if !rec.Gateway6.IsValid() {
		return netip.Prefix{}
	}
	return install.GatewayLinkLocal
}
