// Package netsetup wires a run's network with netlink: a Linux bridge in the
// run's bridge namespace and one veth per node whose peer is created directly
// inside the node's namespace as eth0.
package netsetup

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/ipam"
	"github.com/nsrun/nsrun/nsfd"
)

// GuestIfName is the name of a node's interface inside its namespace.
const GuestIfName = "eth0"

// Handle opens a route netlink handle on the network namespace held by ns.
func Handle(ns *os.File) (*netlink.Handle, error) {
	// Not netlink.NewHandleAt: it ignores a failed return to the original
	// namespace and hands the thread back to the scheduler.
	var h *netlink.Handle
	err := nsfd.Do(ns, func() error {
		var err error
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open netlink in namespace: %w", err)
	}
	return h, nil
}

// Bridge is a Linux bridge of one subnet inside a bridge namespace.
type Bridge struct {
	Name   string
	Index  int
	Subnet ipam.Subnet
}

// AddBridge creates a bridge named name in the namespace of h, up, with
// the subnet's bridge address, and brings lo up.
func AddBridge(h *netlink.Handle, name string, subnet ipam.Subnet) (*Bridge, error) {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, Flags: net.FlagUp}}
	if err := h.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("create bridge %q: %w", name, err)
	}
	if err := addAddr(h, br, subnet.Bridge, subnet.Prefix.Bits()); err != nil {
		return nil, fmt.Errorf("bridge %q: %w", name, err)
	}
	if err := loUp(h); err != nil {
		return nil, err
	}
	return &Bridge{Name: name, Index: br.Index, Subnet: subnet}, nil
}

// Node describes one guest to plug into a bridge.
type Node struct {
	PortName string     // the veth end on the bridge, in the bridge namespace
	Addr     netip.Addr // the guest's address on eth0
}

// AddNode creates a veth pair with one end (n.PortName) enslaved to br in the
// bridge namespace of bh and the other end created directly as eth0 in the
// guest namespace guest, then configures the guest: lo and eth0 up, the
// address, and a default route via the bridge.
func AddNode(bh *netlink.Handle, br *Bridge, guest *os.File, n Node) error {
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: n.PortName, Flags: net.FlagUp, MasterIndex: br.Index},
		PeerName:      GuestIfName,
		PeerNamespace: netlink.NsFd(int(guest.Fd())),
	}
	if err := bh.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %q for %s: %w", n.PortName, n.Addr, err)
	}
	gh, err := Handle(guest)
	if err != nil {
		return err
	}
	defer gh.Close()
	if err := loUp(gh); err != nil {
		return err
	}
	eth, err := gh.LinkByName(GuestIfName)
	if err != nil {
		return fmt.Errorf("find %s in guest namespace: %w", GuestIfName, err)
	}
	if err := addAddr(gh, eth, n.Addr, br.Subnet.Prefix.Bits()); err != nil {
		return fmt.Errorf("guest %s: %w", n.Addr, err)
	}
	if err := gh.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bring guest %s up: %w", GuestIfName, err)
	}
	route := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IP(br.Subnet.Bridge.AsSlice())}
	if err := gh.RouteAdd(route); err != nil {
		return fmt.Errorf("add default route via %s in guest: %w", br.Subnet.Bridge, err)
	}
	return nil
}

// EnableForwarding turns on IPv4 forwarding in the namespace held by ns.
func EnableForwarding(ns *os.File) error {
	return nsfd.WriteSysctl(ns, "net/ipv4/ip_forward", "1")
}

func addAddr(h *netlink.Handle, link netlink.Link, addr netip.Addr, bits int) error {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(addr.AsSlice()), Mask: net.CIDRMask(bits, 32)}}
	if err := h.AddrAdd(link, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address %s/%d: %w", addr, bits, err)
	}
	return nil
}

// loUp brings up lo, which is interface 1 in every network namespace.
func loUp(h *netlink.Handle) error {
	lo := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1, Name: "lo"}}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	return nil
}

// AddrUp sets the address p on the link ifname in h's namespace and brings
// the link up.
func AddrUp(h *netlink.Handle, ifname string, p netip.Prefix) error {
	l, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("find %s: %w", ifname, err)
	}
	if err := addAddr(h, l, p.Addr(), p.Bits()); err != nil {
		return fmt.Errorf("%s: %w", ifname, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring %s up: %w", ifname, err)
	}
	return nil
}

// DefaultRoute adds a default route via gw on ifname in h's namespace.
func DefaultRoute(h *netlink.Handle, ifname string, gw netip.Addr) error {
	l, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("find %s: %w", ifname, err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.IP(gw.AsSlice())}); err != nil {
		return fmt.Errorf("add default route via %s: %w", gw, err)
	}
	return nil
}
