package runnet

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"

	"github.com/nsrun/nsrun/internal/dnsrelay"
	"github.com/nsrun/nsrun/internal/netsetup"
	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/internal/plan"
	"github.com/nsrun/nsrun/internal/runstate"
	"github.com/nsrun/nsrun/ipam"
	"github.com/nsrun/nsrun/nft"
)

// uplink is a run's way out: a /30 leased from the user's pool (and the
// IPv6 /64 it maps to), a veth from the gateway (nsrun-helper's network
// namespace) into the bridge namespace, default routes and NAT there, and
// the DNS relays of IPv6-only subnets. The veth dies with the bridge
// namespace; the lease is released by Close, or reclaimed once the run
// is dead.
type uplink struct {
	leases *ipam.Leases
	block  netip.Prefix
	owner  string
	relays []*dnsrelay.Relay // DNS of IPv6-only subnets
}

func addUplink(p *plan.Plan, bridgeNS *os.File) (*uplink, error) {
	u := p.Uplink
	gwNS, err := nsfd.Open(u.GatewayNS)
	if err != nil {
		return nil, fmt.Errorf("the gateway of nsrun-helper: %w", err)
	}
	defer gwNS.Close()
	runtimeDir := p.Run.RuntimeDir
	up := &uplink{
		leases: &ipam.Leases{
			Dir:   u.LeaseDir,
			Pool:  u.Pool,
			Alive: func(id string) bool { return runstate.Alive(runtimeDir, id) },
		},
		owner: p.Run.ID,
	}
	if up.block, err = up.leases.Acquire(p.Run.ID); err != nil {
		return nil, err
	}
	gwAddr := up.block.Addr().Next()
	brAddr := gwAddr.Next()

	gh, err := netsetup.Handle(gwNS)
	if err != nil {
		return up, err
	}
	defer gh.Close()
	if err := netsetup.AddVethPair(gh, u.GatewayPort, u.Port, bridgeNS); err != nil {
		return up, fmt.Errorf("uplink, in the gateway: %w", err)
	}
	// With IPv6, the uplink's /64 is the one its /30 maps to (gateway end
	// ::1, bridge end ::2); without, its gateway end has no IPv6 (the
	// bridge end inherits the bridge namespace's no-IPv6 default).
	var gw6, br6 netip.Prefix
	if u.IPv6 {
		p6 := ipam.Pair6(up.block)
		gw6, br6 = netip.PrefixFrom(p6.Addr().Next(), 64), netip.PrefixFrom(p6.Addr().Next().Next(), 64)
		for _, side := range []struct {
			ns   *os.File
			port string
		}{{gwNS, u.GatewayPort}, {bridgeNS, u.Port}} {
			for _, kv := range [][2]string{{"accept_ra", "0"}, {"disable_ipv6", "0"}} {
				if err := nsfd.WriteSysctl(side.ns, "net/ipv6/conf/"+side.port+"/"+kv[0], kv[1]); err != nil {
					return up, fmt.Errorf("uplink %s: %w", side.port, err)
				}
			}
		}
	} else if err := nsfd.WriteSysctl(gwNS, "net/ipv6/conf/"+u.GatewayPort+"/disable_ipv6", "1"); err != nil {
		return up, fmt.Errorf("gateway side of the uplink: %w", err)
	}
	bh, err := netsetup.Handle(bridgeNS)
	if err != nil {
		return up, err
	}
	defer bh.Close()
	for _, a := range []struct {
		h    *netlink.Handle
		port string
		addr netip.Prefix
		gw   netip.Addr // the default route, from the bridge namespace
		what string
	}{
		{gh, u.GatewayPort, gw6, netip.Addr{}, "gateway"}, {gh, u.GatewayPort, netip.PrefixFrom(gwAddr, 30), netip.Addr{}, "gateway"},
		{bh, u.Port, br6, gw6.Addr(), "bridge"}, {bh, u.Port, netip.PrefixFrom(brAddr, 30), gwAddr, "bridge"},
	} {
		if !a.addr.IsValid() {
			continue
		}
		if err := netsetup.AddrUp(a.h, a.port, a.addr); err != nil {
			return up, fmt.Errorf("%s side of the uplink: %w", a.what, err)
		}
		if a.gw.IsValid() {
			if err := netsetup.DefaultRoute(a.h, a.port, a.gw); err != nil {
				return up, err
			}
		}
	}
	if err := netsetup.EnableForwarding(bridgeNS); err != nil {
		return up, err
	}
	var routers []netip.Addr
	for _, br := range p.Bridges {
		if br.Router.IsValid() { // (an IPv6-only subnet's DNS is relayed)
			routers = append(routers, br.Router)
		}
	}
	// The bridge namespace is the run's own, new: no table to replace.
	if err := nft.Create(bridgeNS, nft.UplinkNAT(u.Port, routers, u.HostDNS)); err != nil {
		return up, err
	}
	for _, listen := range u.DNSRelays {
		r, err := dnsrelay.Start(bridgeNS, listen, u.HostDNS)
		if err != nil {
			return up, err
		}
		up.relays = append(up.relays, r)
	}
	return up, nil
}

func (u *uplink) release() {
	if u == nil {
		return
	}
	for _, r := range u.relays {
		r.Close()
	}
	if u.block.IsValid() {
		_ = u.leases.Release(u.block, u.owner)
	}
}
