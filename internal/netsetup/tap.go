package netsetup

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/nsfd"
)

// TunDevice is where tap devices come from.
const TunDevice = "/dev/net/tun"

// TapLink names a tap link's devices.
type TapLink struct {
	Tap    string // the tap device, in the node
	Port   string // the veth's end on the run's bridge
	Peer   string // the veth's end in the node
	Bridge string // the bridge in the node that joins Tap and Peer
}

// AddTapLink gives the namespace node a persistent tap device named t.Tap,
// owned by this process's uid and gid (the user, however the run maps it), so
// that a VM started in node (QEMU -netdev tap,ifname=TAP) attaches to it;
// and wires it to the bridge br through a bridge inside node (t.Bridge) and
// a veth from t.Peer to the bridge port t.Port. It returns once both ends
// of the veth are operationally up (the tap is, once a VM attaches). The
// tap dies with the node namespace.
func AddTapLink(bh *netlink.Handle, br *Bridge, node *os.File, t TapLink) error {
	tap, port, inner, nodeBridge := t.Tap, t.Port, t.Peer, t.Bridge
	if f, err := os.OpenFile(TunDevice, os.O_RDWR, 0); err != nil {
		return fmt.Errorf("tap %s: cannot open %s (%w): an unprivileged user needs it mode 0666, as most distributions ship it (sudo chmod 0666 %s)", tap, TunDevice, err, TunDevice)
	} else {
		f.Close()
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: port, Flags: net.FlagUp, MasterIndex: br.Index},
		PeerName:      inner,
		PeerNamespace: netlink.NsFd(int(node.Fd())),
	}
	if err := bh.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s for tap %s: %w", port, tap, err)
	}
	// Tap devices are created in the namespace of the thread that opens
	// /dev/net/tun: do it all from inside the node.
	err := nsfd.Do(node, func() error {
		if err := allowPing(nil); err != nil {
			return err
		}
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		if err := loUp(h); err != nil {
			return err
		}
		tt := &netlink.Tuntap{
			LinkAttrs: netlink.LinkAttrs{Name: tap},
			Mode:      netlink.TUNTAP_MODE_TAP,
			Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
			Owner:     uint32(os.Getuid()),
			Group:     uint32(os.Getgid()),
		}
		if err := h.LinkAdd(tt); err != nil {
			return fmt.Errorf("create tap %s: %w", tap, err)
		}
		b := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: nodeBridge, Flags: net.FlagUp}}
		if err := h.LinkAdd(b); err != nil {
			return fmt.Errorf("create bridge %s for tap %s: %w", nodeBridge, tap, err)
		}
		for _, name := range []string{tap, inner} {
			l, err := h.LinkByName(name)
			if err != nil {
				return fmt.Errorf("find %s: %w", name, err)
			}
			if err := h.LinkSetMaster(l, b); err != nil {
				return fmt.Errorf("enslave %s to %s: %w", name, nodeBridge, err)
			}
			if err := h.LinkSetUp(l); err != nil && !errors.Is(err, unix.EIO) {
				return fmt.Errorf("bring %s up: %w", name, err)
			}
		}
		if err := h.LinkSetUp(b); err != nil {
			return fmt.Errorf("bring %s up: %w", nodeBridge, err)
		}
		// As for a node's eth0 (AddNode): frames sent before the kernel
		// has activated the veth's queue are dropped.
		return waitOperUp(h, inner)
	})
	if err != nil {
		return err
	}
	return waitOperUp(bh, port)
}
