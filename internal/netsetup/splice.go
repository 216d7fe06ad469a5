package netsetup

import (
	"fmt"
	"net"
	"os"

	"github.com/vishvananda/netlink"
)

// Splice names the interfaces of a bridge port spliced for nsrun's link
// engine (package linkengine): frames between a node and its bridge then
// pass through user space.
//
//	node eth0 ══ NodeEnd (loose)   engine   EngineEnd (loose) ══ Port (on the bridge)
//
// NodeEnd is the old bridge port, renamed and taken off the bridge; Port
// is a new veth end on the bridge under the old port's name, so that the
// rules, qdiscs and captures that name the port keep working; EngineEnd
// is its peer, where the engine writes what goes to the bridge.
type Splice struct {
	Port      string
	NodeEnd   string
	EngineEnd string
}

// SpliceLink splices s.Port (a veth end enslaved to a bridge in the
// namespace of h) for the link engine. The node's own end is untouched:
// its link is down for the few milliseconds the swap takes, and
// established connections survive it. The bridge keeps its MAC address.
func SpliceLink(h *netlink.Handle, s Splice) error {
	old, err := h.LinkByName(s.Port)
	if err != nil {
		return fmt.Errorf("find bridge port %s: %w", s.Port, err)
	}
	master := old.Attrs().MasterIndex
	if master == 0 {
		return fmt.Errorf("splice %s: it is on no bridge", s.Port)
	}
	if err := pinBridgeMAC(h, master); err != nil {
		return err
	}
	if err := h.LinkSetDown(old); err != nil {
		return fmt.Errorf("splice %s: set down: %w", s.Port, err)
	}
	if err := h.LinkSetName(old, s.NodeEnd); err != nil {
		return fmt.Errorf("splice %s: rename to %s: %w", s.Port, s.NodeEnd, err)
	}
	if err := h.LinkSetNoMaster(old); err != nil {
		return fmt.Errorf("splice %s: leave the bridge: %w", s.NodeEnd, err)
	}
	if err := looseEnd(h, old, s.NodeEnd); err != nil {
		return err
	}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: s.Port, Flags: net.FlagUp, MasterIndex: master, MTU: old.Attrs().MTU},
		PeerName:  s.EngineEnd,
	}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("splice %s: create veth %s (peer %s): %w", s.Port, s.Port, s.EngineEnd, err)
	}
	eng, err := h.LinkByName(s.EngineEnd)
	if err != nil {
		return fmt.Errorf("find %s: %w", s.EngineEnd, err)
	}
	if err := looseEnd(h, eng, s.EngineEnd); err != nil {
		return err
	}
	for _, name := range []string{s.NodeEnd, s.EngineEnd, s.Port} {
		if err := waitOperUp(h, name); err != nil {
			return fmt.Errorf("splice: %w", err)
		}
	}
	return nil
}

// looseEnd makes l, a veth end outside any bridge whose frames the engine
// reads and writes, answer nothing itself (no ARP) and brings it up.
// (IPv6 is off for the bridge namespace's new links: NoIPv6ForNewLinks.)
func looseEnd(h *netlink.Handle, l netlink.Link, name string) error {
	if err := h.LinkSetARPOff(l); err != nil {
		return fmt.Errorf("%s: no ARP: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring %s up: %w", name, err)
	}
	return nil
}

// pinBridgeMAC sets the bridge's MAC address to the one it has, so that
// it no longer follows its ports' (the kernel picks the lowest port MAC
// of a bridge whose address was never set): a port swap must not change
// the router address's MAC under the nodes' ARP caches.
func pinBridgeMAC(h *netlink.Handle, index int) error {
	br, err := h.LinkByIndex(index)
	if err != nil {
		return fmt.Errorf("find bridge %d: %w", index, err)
	}
	if err := h.LinkSetHardwareAddr(br, br.Attrs().HardwareAddr); err != nil {
		return fmt.Errorf("bridge %s: keep MAC address: %w", br.Attrs().Name, err)
	}
	return nil
}

// WaitGuestUp waits until the node's eth0 in its namespace ns is
// operationally up again after a splice or unsplice took its link down:
// until then it drops what it sends, and the node's first ARP request
// after the swap would be lost (a second's wait for the retry).
func WaitGuestUp(ns *os.File) error {
	h, err := Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	return waitOperUp(h, GuestIfName)
}

// addEngineEnds completes a node's link wired spliced (Node.Splice): the
// node's end, just created, answers no ARP and comes up, and the bridge
// port is a new veth whose peer is the engine's end.
func addEngineEnds(bh *netlink.Handle, br *Bridge, n Node) error {
	nodeEnd, err := bh.LinkByName(n.Splice.NodeEnd)
	if err != nil {
		return fmt.Errorf("find %s: %w", n.Splice.NodeEnd, err)
	}
	if err := looseEnd(bh, nodeEnd, n.Splice.NodeEnd); err != nil {
		return err
	}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: n.PortName, Flags: net.FlagUp, MasterIndex: br.Index},
		PeerName:  n.Splice.EngineEnd,
	}
	if err := bh.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %q (peer %s) for %s: %w", n.PortName, n.Splice.EngineEnd, n, err)
	}
	eng, err := bh.LinkByName(n.Splice.EngineEnd)
	if err != nil {
		return fmt.Errorf("find %s: %w", n.Splice.EngineEnd, err)
	}
	return looseEnd(bh, eng, n.Splice.EngineEnd)
}

// IsSpliced reports whether port is spliced already (the node's end
// s.NodeEnd exists in the namespace of h).
func IsSpliced(h *netlink.Handle, s Splice) bool {
	_, err := h.LinkByName(s.NodeEnd)
	return err == nil
}

// UnspliceLink undoes SpliceLink: the engine's veth is removed and the
// node's end is the bridge port again, under its old name.
func UnspliceLink(h *netlink.Handle, s Splice) error {
	port, err := h.LinkByName(s.Port)
	if err != nil {
		return fmt.Errorf("find bridge port %s: %w", s.Port, err)
	}
	master := port.Attrs().MasterIndex
	if err := pinBridgeMAC(h, master); err != nil {
		return err
	}
	if err := h.LinkDel(port); err != nil {
		return fmt.Errorf("unsplice: delete %s: %w", s.Port, err)
	}
	old, err := h.LinkByName(s.NodeEnd)
	if err != nil {
		return fmt.Errorf("find %s: %w", s.NodeEnd, err)
	}
	if err := h.LinkSetDown(old); err != nil {
		return fmt.Errorf("unsplice: set %s down: %w", s.NodeEnd, err)
	}
	if err := h.LinkSetName(old, s.Port); err != nil {
		return fmt.Errorf("unsplice: rename %s to %s: %w", s.NodeEnd, s.Port, err)
	}
	if err := h.LinkSetARPOn(old); err != nil {
		return fmt.Errorf("%s: ARP back on: %w", s.Port, err)
	}
	if err := h.LinkSetMasterByIndex(old, master); err != nil {
		return fmt.Errorf("unsplice: %s back on its bridge: %w", s.Port, err)
	}
	if err := h.LinkSetUp(old); err != nil {
		return fmt.Errorf("bring %s up: %w", s.Port, err)
	}
	return waitOperUp(h, s.Port)
}
