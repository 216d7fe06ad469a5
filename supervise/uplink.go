package supervise

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"

	"github.com/nsrun/nsrun/ipam"
	"github.com/nsrun/nsrun/netsetup"
	"github.com/nsrun/nsrun/nft"
	"github.com/nsrun/nsrun/nsfd"
	"github.com/nsrun/nsrun/runconfig"
	"github.com/nsrun/nsrun/runstate"
)

// UplinkName is the bridge namespace's end of the run's uplink veth.
const UplinkName = "uplink"

// uplink is a run's way out: a /30 leased from the user's pool, a veth from
// the gateway (nsrun-helper's network namespace) into the bridge
// namespace, a default route and NAT there. The veth dies with the bridge
// namespace; the lease is released by tearDown, or reclaimed once the run
// is dead.
type uplink struct {
	leases *ipam.Leases
	block  netip.Prefix
	owner  string
}

func addUplink(cfg runconfig.Config, bridgeNS *os.File, bridgeAddrs []netip.Addr) (*uplink, error) {
	var pool netip.Prefix
	gwNS, err := nsfd.Open(cfg.GatewayNS)
	if err != nil {
		return nil, fmt.Errorf("the gateway of nsrun-helper: %w", err)
	}
	defer gwNS.Close()
	pool, err = netip.ParsePrefix(cfg.RunsCIDR)
	if err != nil {
		return nil, fmt.Errorf("runs CIDR %q: %w", cfg.RunsCIDR, err)
	}
	up := &uplink{
		leases: &ipam.Leases{
			Dir:   filepath.Join(cfg.RuntimeDir, "leases"),
			Pool:  pool,
			Alive: func(id string) bool { return runstate.Alive(cfg.RuntimeDir, id) },
		},
		owner: cfg.RunID,
	}
	if up.block, err = up.leases.Acquire(cfg.RunID); err != nil {
		return nil, err
	}
	gwAddr := up.block.Addr().Next()
	brAddr := gwAddr.Next()

	gh, err := netsetup.Handle(gwNS)
	if err != nil {
		return up, err
	}
	defer gh.Close()
	name := "nr" + cfg.RunID
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name, Flags: net.FlagUp},
		PeerName:      UplinkName,
		PeerNamespace: netlink.NsFd(int(bridgeNS.Fd())),
	}
	if err := gh.LinkAdd(veth); err != nil {
		return up, fmt.Errorf("create uplink veth %s in the gateway: %w", name, err)
	}
	if err := netsetup.AddrUp(gh, name, netip.PrefixFrom(gwAddr, 30)); err != nil {
		return up, fmt.Errorf("gateway side of the uplink: %w", err)
	}
	bh, err := netsetup.Handle(bridgeNS)
	if err != nil {
		return up, err
	}
	defer bh.Close()
	if err := netsetup.AddrUp(bh, UplinkName, netip.PrefixFrom(brAddr, 30)); err != nil {
		return up, fmt.Errorf("bridge side of the uplink: %w", err)
	}
	if err := netsetup.DefaultRoute(bh, UplinkName, gwAddr); err != nil {
		return up, err
	}
	if err := netsetup.EnableForwarding(bridgeNS); err != nil {
		return up, err
	}
	var dns netip.AddrPort
	if cfg.HostDNS != "" {
		if dns, err = netip.ParseAddrPort(cfg.HostDNS); err != nil {
			return up, fmt.Errorf("host DNS %q: %w", cfg.HostDNS, err)
		}
	}
	if err := nft.Apply(bridgeNS, nft.UplinkNAT(UplinkName, bridgeAddrs, dns)); err != nil {
		return up, err
	}
	return up, nil
}

func (u *uplink) release() {
	if u != nil && u.block.IsValid() {
		_ = u.leases.Release(u.block, u.owner)
	}
}
