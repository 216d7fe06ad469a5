package netsetup

import (
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
)

// AddVethPair creates a veth pair: name in the namespace of h, and its
// peer peerName created directly in the namespace held by peerNS (not
// moved there afterwards: moves serialise on a kernel lock). Both ends
// are left down, so that their owners can set an interface's sysctls
// (no router advertisements, no IPv6) before it is up, then address it
// and bring it up (AddrUp).
func AddVethPair(h *netlink.Handle, name, peerName string, peerNS *os.File) error {
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name},
		PeerName:      peerName,
		PeerNamespace: netlink.NsFd(int(peerNS.Fd())),
	}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s (peer %s): %w", name, peerName, err)
	}
	return nil
}

// NoLinkLocal stops the kernel from making ifname (in h's namespace) a
// link-local address from its MAC address when it comes up
// (IN6_ADDR_GEN_MODE_NONE), so that its owner can give it one of its own.
func NoLinkLocal(h *netlink.Handle, ifname string) error {
	l, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("find %s: %w", ifname, err)
	}
	if err := h.LinkSetIP6AddrGenMode(l, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		return fmt.Errorf("%s: no link-local address: %w", ifname, err)
	}
	return nil
}
