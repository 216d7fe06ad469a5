package runnet

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/nsrun/nsrun/ipam"
	"github.com/nsrun/nsrun/netsetup"
	"github.com/nsrun/nsrun/nft"
	"github.com/nsrun/nsrun/nsfd"
	"github.com/nsrun/nsrun/plan"
	"github.com/nsrun/nsrun/runstate"
)

// uplink is a run's way out: a /30 leased from the user's pool, a veth from
// the gateway (nsrun-helper's network namespace) into the bridge
// namespace, a default route and NAT there. The veth dies with the bridge
// namespace; the lease is released by Close, or reclaimed once the run
// is dead.
type uplink struct {
	leases *ipam.Leases
	block  netip.Prefix
	owner  string
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
	// The uplink carries IPv4 only: its gateway end has no IPv6 (the
	// bridge end inherits the bridge namespace's no-IPv6 default).
	if err := nsfd.WriteSysctl(gwNS, "net/ipv6/conf/"+u.GatewayPort+"/disable_ipv6", "1"); err != nil {
		return up, fmt.Errorf("gateway side of the uplink: %w", err)
	}
	if err := netsetup.AddrUp(gh, u.GatewayPort, netip.PrefixFrom(gwAddr, 30)); err != nil {
		return up, fmt.Errorf("gateway side of the uplink: %w", err)
	}
	bh, err := netsetup.Handle(bridgeNS)
	if err != nil {
		return up, err
	}
	defer bh.Close()
	if err := netsetup.AddrUp(bh, u.Port, netip.PrefixFrom(brAddr, 30)); err != nil {
		return up, fmt.Errorf("bridge side of the uplink: %w", err)
	}
	if err := netsetup.DefaultRoute(bh, u.Port, gwAddr); err != nil {
		return up, err
	}
	if err := netsetup.EnableForwarding(bridgeNS); err != nil {
		return up, err
	}
	var routers []netip.Addr
	for _, br := range p.Bridges {
		routers = append(routers, br.Router)
	}
	if err := nft.Apply(bridgeNS, nft.UplinkNAT(u.Port, routers, u.HostDNS)); err != nil {
		return up, err
	}
	return up, nil
}

func (u *uplink) release() {
	if u != nil && u.block.IsValid() {
		_ = u.leases.Release(u.block, u.owner)
	}
}
