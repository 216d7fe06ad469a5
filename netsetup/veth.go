package netsetup

import (
	"fmt"
	"net"
	"os"

	"github.com/vishvananda/netlink"
)

// AddVethPair creates a veth pair: name, up, in the namespace of h, and
// its peer peerName created directly in the namespace held by peerNS (not
// moved there afterwards: moves serialise on a kernel lock). The peer is
// left down, for its owner to address and bring up.
func AddVethPair(h *netlink.Handle, name, peerName string, peerNS *os.File) error {
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name, Flags: net.FlagUp},
		PeerName:      peerName,
		PeerNamespace: netlink.NsFd(int(peerNS.Fd())),
	}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s (peer %s): %w", name, peerName, err)
	}
	return nil
}
