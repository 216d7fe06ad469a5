// Package netsetup wires a run's network with netlink: a Linux bridge in the
// run's bridge namespace and one veth per node whose peer is created directly
// inside the node's namespace as eth0.
//
// IPv6: addresses are static and usable at once. Every namespace nsrun
// wires gets, before any of its interfaces exists, default interface
// settings with no router advertisements (accept_ra=0), no SLAAC
// (autoconf=0) and no duplicate address detection (accept_dad=0), so
// every interface nsrun creates inherits them; addresses are added with
// IFA_F_NODAD as well. Bridge ports carry no IPv6 of their own.
package netsetup

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/ipam"
)

// GuestIfName is the name of a node's interface inside its namespace.
const GuestIfName = "eth0"

// Here opens a route netlink handle on the calling thread's network
// namespace (the helper's: the host's).
func Here() (*netlink.Handle, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return h, nil
}

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

// Bridge is a Linux bridge of one subnet inside a bridge namespace, or,
// while Direct, the place of one: the subnet's only node is wired to a
// port that holds the router addresses itself (AddNode), until MakeBridge
// makes the bridge.
type Bridge struct {
	Name   string
	Index  int // 0 while Direct
	Subnet ipam.Subnet
	// Direct: no bridge device yet. NS is then the bridge namespace,
	// for the sysctls of the port and of the bridge to come.
	Direct bool
	NS     *os.File
}

// DeferBridge is the place of the bridge name of subnet in the namespace
// ns (of h), where no bridge is made yet: AddNode wires the subnet's one
// node directly, MakeBridge makes the bridge when it is needed. It brings
// lo up, as AddBridge does.
func DeferBridge(h *netlink.Handle, ns *os.File, name string, subnet ipam.Subnet) (*Bridge, error) {
	if err := loUp(h); err != nil {
		return nil, err
	}
	return &Bridge{Name: name, Subnet: subnet, Direct: true, NS: ns}, nil
}

// routerAddrs adds the subnet's router addresses (IPv4, IPv6 or both)
// to link.
func routerAddrs(h *netlink.Handle, link netlink.Link, subnet ipam.Subnet) error {
	if subnet.HasIPv4() {
		if err := addAddr(h, link, subnet.Bridge, subnet.Prefix.Bits()); err != nil {
			return err
		}
	}
	if subnet.HasIPv6() {
		if err := addAddr(h, link, subnet.Bridge6, subnet.Prefix6.Bits()); err != nil {
			return err
		}
	}
	return nil
}

// setIPv6 turns IPv6 on or off on the interface ifname of the namespace
// ns (the bridge namespace turns it off for new links:
// NoIPv6ForNewLinks).
func setIPv6(ns *os.File, ifname string, on bool) error {
	v := "1"
	if on {
		v = "0"
	}
	if err := nsfd.WriteSysctl(ns, "net/ipv6/conf/"+ifname+"/disable_ipv6", v); err != nil && !readOnlySysctls(err) {
		return fmt.Errorf("%s: IPv6 %s: %w", ifname, map[bool]string{true: "on", false: "off"}[on], err)
	}
	return nil
}

// MakeBridge makes the bridge of br, a Direct one whose only port is
// port: the bridge takes the port's MAC address (so the node's neighbour
// entry for its router stays right), the router addresses move from the
// port to it, and the port joins it. Traffic between the node and the
// bridge namespace pauses for the moment the addresses move; established
// connections survive. br is then a bridge like AddBridge's. Each step
// can be taken again, so a call after a failure half-way finishes the
// job; a port that is gone (its node deleted its eth0) leaves a bridge
// with the router addresses and no port.
func MakeBridge(h *netlink.Handle, br *Bridge, port string) error {
	if !br.Direct {
		return nil
	}
	p, err := h.LinkByName(port)
	var notFound netlink.LinkNotFoundError
	if err != nil && !errors.As(err, &notFound) {
		return fmt.Errorf("make bridge %q: find port %s: %w", br.Name, port, err)
	}
	b, err := h.LinkByName(br.Name)
	if err != nil {
		attrs := netlink.LinkAttrs{Name: br.Name, Flags: net.FlagUp}
		if p != nil {
			attrs.HardwareAddr = p.Attrs().HardwareAddr
		}
		nb := &netlink.Bridge{LinkAttrs: attrs, MulticastSnooping: &noSnooping}
		if err := h.LinkAdd(nb); err != nil {
			return fmt.Errorf("create bridge %q: %w", br.Name, err)
		}
		b = nb
	}
	if br.Subnet.HasIPv6() {
		if err := setIPv6(br.NS, br.Name, true); err != nil {
			return fmt.Errorf("bridge %q: %w", br.Name, err)
		}
	}
	if p != nil {
		for _, a := range []netip.Prefix{br.Subnet.Prefix, br.Subnet.Prefix6} {
			if !a.IsValid() {
				continue
			}
			router := br.Subnet.Bridge
			if a.Addr().Is6() {
				router = br.Subnet.Bridge6
			}
			addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(router.AsSlice()), Mask: net.CIDRMask(a.Bits(), router.BitLen())}}
			if err := h.AddrDel(p, addr); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return fmt.Errorf("make bridge %q: take %s off %s: %w", br.Name, router, port, err)
			}
		}
	}
	if err := routerAddrs(h, b, br.Subnet); err != nil {
		return fmt.Errorf("bridge %q: %w", br.Name, err)
	}
	if p != nil {
		if err := h.LinkSetMasterByIndex(p, b.Attrs().Index); err != nil {
			return fmt.Errorf("make bridge %q: add port %s: %w", br.Name, port, err)
		}
		if br.Subnet.HasIPv6() {
			// A bridge port needs no IPv6 of its own (its link-local goes).
			if err := setIPv6(br.NS, port, false); err != nil {
				return err
			}
		}
	}
	br.Index, br.Direct = b.Attrs().Index, false
	return nil
}

// noSnooping turns a bridge's multicast snooping off: it floods every
// multicast frame to every port, as a bridge without a querier does. A
// run drops the nodes' MLD reports before the bridge (nft.QuietMLD); a
// snooping bridge that met a querier (a node running a multicast router,
// a VM on a tap) would then send IPv6 multicast, neighbour solicitations
// included, to the querier's port only, and neighbour discovery between
// the other nodes would fail.
var noSnooping = false

// AddBridge creates a bridge named name in the namespace of h, up, with
// the subnet's bridge addresses (IPv4, IPv6 or both), and brings lo up.
// Call PrepareNamespace on the namespace first.
func AddBridge(h *netlink.Handle, name string, subnet ipam.Subnet) (*Bridge, error) {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, Flags: net.FlagUp}, MulticastSnooping: &noSnooping}
	if err := h.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("create bridge %q: %w", name, err)
	}
	if err := routerAddrs(h, br, subnet); err != nil {
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
	Addr     netip.Addr // the guest's IPv4 address on eth0; invalid for none
	Addr6    netip.Addr // the guest's IPv6 address on eth0; invalid for none
	// Splice, when its NodeEnd is set, wires the link already spliced into
	// the link engine (SpliceLink's result): PortName is the bridge port
	// of a veth to Splice.EngineEnd, and eth0's peer is Splice.NodeEnd.
	Splice Splice
	// NoIPv6 turns IPv6 off on eth0 altogether (`ipv6: false`): no
	// link-local address either. Without it, eth0 has its link-local
	// address, without duplicate address detection.
	NoIPv6 bool
}

// String names the node by its addresses, for errors.
func (n Node) String() string {
	switch {
	case n.Addr.IsValid() && n.Addr6.IsValid():
		return n.Addr.String() + " " + n.Addr6.String()
	case n.Addr.IsValid():
		return n.Addr.String()
	}
	return n.Addr6.String()
}

// AddNode creates a veth pair with one end (n.PortName) enslaved to br in the
// bridge namespace of bh and the other end created directly as eth0 in the
// guest namespace guest, then configures the guest: lo and eth0 up, the
// addresses, and default routes via the bridge in each family. The guest
// namespace is prepared (PrepareNamespace) before eth0 exists in it,
// its sysctls written through sys (nil: through /proc).
func AddNode(bh *netlink.Handle, br *Bridge, guest *os.File, n Node, sys *nsfd.Sysctls) error {
	// Open the guest's handle and set its defaults in one visit, before
	// eth0 arrives there.
	var gh *netlink.Handle
	err := nsfd.Do(guest, func() error {
		if err := writeDefaults(sys, !n.NoIPv6); err != nil {
			return err
		}
		var err error
		gh, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return fmt.Errorf("guest namespace: %w", err)
	}
	defer gh.Close()
	if br.Direct && n.Splice.NodeEnd != "" {
		return fmt.Errorf("wire %s: a link spliced into the link engine needs a bridge", n)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: n.PortName, Flags: net.FlagUp, MasterIndex: br.Index},
		PeerName:      GuestIfName,
		PeerNamespace: netlink.NsFd(int(guest.Fd())),
	}
	if n.Splice.NodeEnd != "" {
		veth.LinkAttrs = netlink.LinkAttrs{Name: n.Splice.NodeEnd}
	}
	if err := bh.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %q for %s: %w", veth.Name, n, err)
	}
	if n.Splice.NodeEnd != "" {
		if err := addEngineEnds(bh, br, n); err != nil {
			return err
		}
	}
	if br.Direct {
		// No bridge: the port is the node's router.
		port, err := bh.LinkByName(n.PortName)
		if err != nil {
			return fmt.Errorf("find %s: %w", n.PortName, err)
		}
		if br.Subnet.HasIPv6() {
			if err := setIPv6(br.NS, n.PortName, true); err != nil {
				return err
			}
		}
		if err := routerAddrs(bh, port, br.Subnet); err != nil {
			return fmt.Errorf("port %s: %w", n.PortName, err)
		}
	}
	if err := loUp(gh); err != nil {
		return err
	}
	eth, err := gh.LinkByName(GuestIfName)
	if err != nil {
		return fmt.Errorf("find %s in guest namespace: %w", GuestIfName, err)
	}
	if n.Addr.IsValid() {
		if err := addAddr(gh, eth, n.Addr, br.Subnet.Prefix.Bits()); err != nil {
			return fmt.Errorf("guest %s: %w", n.Addr, err)
		}
	}
	if n.Addr6.IsValid() {
		if err := addAddr(gh, eth, n.Addr6, br.Subnet.Prefix6.Bits()); err != nil {
			return fmt.Errorf("guest %s: %w", n.Addr6, err)
		}
	}
	if err := gh.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bring guest %s up: %w", GuestIfName, err)
	}
	if n.Addr.IsValid() {
		route := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IP(br.Subnet.Bridge.AsSlice())}
		if err := gh.RouteAdd(route); err != nil {
			return fmt.Errorf("add default route via %s in guest: %w", br.Subnet.Bridge, err)
		}
	}
	if n.Addr6.IsValid() {
		route := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IP(br.Subnet.Bridge6.AsSlice()), Family: unix.AF_INET6}
		if err := gh.RouteAdd(route); err != nil {
			return fmt.Errorf("add IPv6 default route via %s in guest: %w", br.Subnet.Bridge6, err)
		}
	}
	if err := waitOperUp(gh, GuestIfName); err != nil {
		return fmt.Errorf("guest %s: %w", n, err)
	}
	if n.Splice.NodeEnd != "" {
		for _, name := range []string{n.Splice.NodeEnd, n.Splice.EngineEnd} {
			if err := waitOperUp(bh, name); err != nil {
				return err
			}
		}
	}
	return waitOperUp(bh, n.PortName)
}

// operUpTimeout bounds the wait for a new link to be operationally up.
const operUpTimeout = 5 * time.Second

// waitOperUp waits until the link name, just set up with its carrier on,
// is operationally up. The kernel activates a link's queue after its
// carrier comes on, asynchronously (linkwatch); until then it drops what is
// sent through the link, so the first ARP request of a node that talks at
// once is lost and its first connection waits a second for the retry.
func waitOperUp(h *netlink.Handle, name string) error {
	deadline := time.Now().Add(operUpTimeout)
	for {
		l, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("find %s: %w", name, err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("link %s not up within %s (operational state %s)", name, operUpTimeout, l.Attrs().OperState)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// PrepareNamespace sets the default interface settings of the namespace
// held by ns before nsrun creates interfaces in it: no router
// advertisements, no SLAAC, no duplicate address detection, and, when
// ipv6 is false, IPv6 off (no addresses at all, link-local included);
// ping and every port open to unprivileged programs. Interfaces created
// afterwards inherit them.
func PrepareNamespace(ns *os.File, ipv6 bool) error {
	return nsfd.Do(ns, func() error { return writeDefaults(nil, ipv6) })
}

// NoIPv6ForNewLinks turns IPv6 off for interfaces created from now on in
// the namespace held by ns: in the bridge namespace, after the bridges
// and before their ports, which need none.
func NoIPv6ForNewLinks(ns *os.File) error {
	if err := nsfd.WriteSysctl(ns, "net/ipv6/conf/default/disable_ipv6", "1"); err != nil && !readOnlySysctls(err) {
		return err
	}
	return nil
}

// writeDefaults writes the defaults of the current thread's network
// namespace (see PrepareNamespace) through sys.
func writeDefaults(sys *nsfd.Sysctls, ipv6 bool) error {
	settings := [][2]string{{"accept_ra", "0"}, {"autoconf", "0"}, {"accept_dad", "0"}}
	if !ipv6 {
		settings = append(settings, [2]string{"disable_ipv6", "1"})
	}
	for _, kv := range settings {
		if err := sys.Write("net/ipv6/conf/default/"+kv[0], kv[1]); err != nil && !readOnlySysctls(err) {
			return err
		}
	}
	if err := allowPing(sys); err != nil && !readOnlySysctls(err) {
		return err
	}
	if err := sys.Write(unprivilegedPortStart, "0"); err != nil && !readOnlySysctls(err) {
		return err
	}
	return nil
}

// unprivilegedPortStart is the sysctl (under /proc/sys) below which
// binding a port takes CAP_NET_BIND_SERVICE. nsrun sets it to 0 in each
// of its namespaces, as docker does in each container: a node's program
// runs as the user, without capabilities, and a DNS server on 53 or a
// web server on 80 must still start. It is the node's own namespace; the
// host's ports are another matter (start.checkPrivilegedPorts).
const unprivilegedPortStart = "net/ipv4/ip_unprivileged_port_start"

// readOnlySysctls says whether err is a write refused because /proc/sys
// is read-only, as a container mounts it (and no fresh /proc can be
// mounted there: the supervisor says so once). The namespace then keeps
// the kernel's defaults: router advertisements and duplicate address
// detection on (nothing in a run sends advertisements; nsrun's addresses
// skip detection), IPv6 on, and ping for CAP_NET_RAW only.
func readOnlySysctls(err error) bool {
	return errors.Is(err, unix.EROFS)
}

// pingGroupRange is the sysctl (under /proc/sys) that lets groups open ICMP
// echo sockets (SOCK_DGRAM, IPPROTO_ICMP and IPPROTO_ICMPV6) without
// CAP_NET_RAW.
const pingGroupRange = "net/ipv4/ping_group_range"

// maxPingGroup is the highest gid ping_group_range takes.
const maxPingGroup = 1<<31 - 1

// allowPing lets every group of the current user namespace open ICMP
// echo sockets in the current thread's network namespace, as
// distributions set it on the host (systemd: 0 2147483647): ping and
// other unprivileged echo clients work in every node, whether or not
// they get CAP_NET_RAW there (in a run joined to the helper's gateway
// they do not; a fresh namespace allows no group).
func allowPing(sys *nsfd.Sysctls) error {
	lo, hi, err := mappedGroups("/proc/self/gid_map")
	if err != nil {
		return err
	}
	return sys.Write(pingGroupRange, fmt.Sprintf("%d %d", lo, hi))
}

// mappedGroups returns the lowest and highest gid that the gid map at
// path maps (the kernel refuses a ping_group_range bound that is not
// mapped in the writer's user namespace), capped at maxPingGroup.
func mappedGroups(path string) (lo, hi uint64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read the gid map: %w", err)
	}
	lo, found := uint64(maxPingGroup), false
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		inside, err1 := strconv.ParseUint(f[0], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || inside > maxPingGroup {
			continue
		}
		found = true
		lo, hi = min(lo, inside), max(hi, min(inside+count-1, maxPingGroup))
	}
	if !found {
		return 0, 0, fmt.Errorf("read the gid map: no group is mapped (%q)", b)
	}
	return lo, hi, nil
}

// EnableForwarding turns on IPv4 and IPv6 forwarding in the namespace
// held by ns.
func EnableForwarding(ns *os.File) error {
	return nsfd.Do(ns, func() error {
		for _, path := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
			if err := os.WriteFile(path, []byte("1"), 0); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
		}
		return nil
	})
}

// addAddr adds addr/bits to link; IPv6 addresses skip duplicate address
// detection (IFA_F_NODAD), so they are usable at once.
func addAddr(h *netlink.Handle, link netlink.Link, addr netip.Addr, bits int) error {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(addr.AsSlice()), Mask: net.CIDRMask(bits, addr.BitLen())}}
	if addr.Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
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

// DefaultRoute sets the default route of gw's family via gw on ifname in
// h's namespace, replacing one that is there.
func DefaultRoute(h *netlink.Handle, ifname string, gw netip.Addr) error {
	l, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("find %s: %w", ifname, err)
	}
	if err := h.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.IP(gw.AsSlice())}); err != nil {
		return fmt.Errorf("add default route via %s: %w", gw, err)
	}
	return nil
}
