// Package runnet applies the network part of a run's plan
// (plan.Plan's Bridges, Forward, Uplink and each node's Links) to the
// kernel: the bridge namespace with one bridge per subnet, one network
// namespace per node wired to its bridges, and the uplink to
// nsrun-helper's gateway. All netlink goes through package netsetup and
// every namespace is entered through package nsfd; runnet knows nothing
// of processes, control verbs or partitions.
//
// Build returns once the bridges and the uplink are up; the nodes are
// wired in the background, several at a time, and each node's channel
// (Wired) closes as soon as its own links are ready, so a node can start
// while the others are still being wired.
package runnet

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/nsrun/nsrun/internal/netsetup"
	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/internal/plan"
	"github.com/nsrun/nsrun/internal/runlog"
	"github.com/nsrun/nsrun/ipam"
	"github.com/nsrun/nsrun/nft"
)

// wireWorkers bounds how many nodes are wired at once.
const wireWorkers = 8

// privateSysctlsAbove is the number of nodes above which the wiring
// workers write sysctls through procfs instances of their own.
const privateSysctlsAbove = 64

// Network is what a run's network namespaces are made of. Its methods
// may be called from any goroutine.
type Network struct {
	bridgeNS *os.File
	bridges  []*netsetup.Bridge
	nodeNS   []*os.File // by node index; set before wired[i] is closed
	uplink   *uplink
	log      *slog.Logger
	// wired[i] is closed once node i is wired to its bridge, or failed to
	// be (wireErr[i]); allWired once every node is. Nodes start as soon as
	// their own link is ready, while the others are still being wired.
	wired    []chan struct{}
	wireErr  []error
	allWired chan struct{}
	wiring   sync.WaitGroup
	// quiet is closed once the MLD table is in place (or failed to be,
	// or none is needed): no node is reported wired before it.
	quiet chan struct{}
	// bridgeMu guards making deferred bridges (EnsureBridges); ports
	// names the one port of each deferred bridge, by index.
	bridgeMu sync.Mutex
	ports    map[int]string

	closeOnce sync.Once
}

// Build applies the network part of the plan p in this process's
// network namespace, which becomes the bridge namespace: one bridge per
// subnet, forwarding and the uplink; and it starts wiring one namespace
// per node to its bridges in the background (WaitWired, WaitAllWired).
// onWired(i, ns) is called with node i's namespace once the node is wired
// (or failed to be), before Wired(i) closes. Close the Network, also
// after an error.
func Build(p *plan.Plan, log *slog.Logger, onWired func(i int, ns *os.File)) (*Network, error) {
	n := &Network{
		nodeNS:   make([]*os.File, len(p.Nodes)),
		ports:    make(map[int]string),
		log:      log,
		wired:    make([]chan struct{}, len(p.Nodes)),
		wireErr:  make([]error, len(p.Nodes)),
		allWired: make(chan struct{}),
		quiet:    make(chan struct{}),
	}
	for i := range n.wired {
		n.wired[i] = make(chan struct{})
	}
	for _, node := range p.Nodes {
		for _, l := range node.Links {
			if p.Bridges[l.Bridge].Deferred {
				n.ports[l.Bridge] = l.Port
			}
		}
	}
	var err error
	// The launcher gave the supervisor a network namespace of its own: it
	// is the bridge namespace. (A thread that runs unlocked code is never
	// in another one: package nsfd locks the threads it moves.)
	if n.bridgeNS, err = nsfd.Open("/proc/thread-self/ns/net"); err != nil {
		n.failWiring(err)
		return n, fmt.Errorf("bridge namespace: %w", err)
	}
	// The nodes' namespaces are created while the bridges are.
	nodeNS := n.newNodeNamespaces(len(p.Nodes))
	wiring := false
	defer func() { // after an early failure: keep them for close
		if !wiring {
			for r := range nodeNS {
				n.nodeNS[r.i] = r.ns
			}
			n.failWiring(err)
		}
	}()
	bh, err := netsetup.Handle(n.bridgeNS)
	if err != nil {
		return n, err
	}
	defer bh.Close()
	// No router advertisements, SLAAC or duplicate address detection on
	// any interface of the bridge namespace.
	if err = netsetup.PrepareNamespace(n.bridgeNS, true); err != nil {
		return n, err
	}
	n.quietMLD(!slices.ContainsFunc(p.Bridges, func(b plan.Bridge) bool { return !b.Deferred }))
	for _, b := range p.Bridges {
		sub := ipam.Subnet{Prefix: b.Prefix, Bridge: b.Router, Prefix6: b.Prefix6, Bridge6: b.Router6}
		var br *netsetup.Bridge
		if b.Deferred {
			// Its one node's port holds the router addresses
			// (EnsureBridges makes the bridge when it is needed).
			br, err = netsetup.DeferBridge(bh, n.bridgeNS, b.Name, sub)
			n.bridges = append(n.bridges, br)
			if err != nil {
				return n, err
			}
			continue
		}
		done := runlog.Step(log, "create bridge", "name", b.Name, "addr", b.Prefix, "router", b.Router, "addr6", b.Prefix6, "router6", b.Router6)
		br, err = netsetup.AddBridge(bh, b.Name, sub)
		done(err)
		if err != nil {
			return n, err
		}
		n.bridges = append(n.bridges, br)
	}
	// The bridges' ports (and the uplink) need no IPv6 of their own.
	if err = netsetup.NoIPv6ForNewLinks(n.bridgeNS); err != nil {
		return n, err
	}
	if p.Forward && p.Uplink == nil {
		// Route between the subnets (the uplink turns it on anyway).
		if err = netsetup.EnableForwarding(n.bridgeNS); err != nil {
			return n, err
		}
	}
	wiring = true
	n.wireNodes(p.Nodes, nodeNS, onWired)
	if p.Uplink != nil {
		done := runlog.Step(log, "add uplink to the gateway", "port", p.Uplink.Port, "gateway_port", p.Uplink.GatewayPort)
		n.uplink, err = addUplink(p, n.bridgeNS)
		done(err)
		if err != nil {
			return n, fmt.Errorf("uplink: %w", err)
		}
	}
	return n, nil
}

// quietMLD puts the table that drops the nodes' MLD reports
// (nft.QuietMLD) into the bridge namespace, in the background, unless
// none is needed (every subnet has one link and no bridge: no one to
// flood them to), and closes quiet when it is done. Each report, flooded to every port, costs a run
// of n nodes n² frame copies at its start; the table's transaction, the
// first in the namespace, takes milliseconds, so it is written while the
// bridges and the first links are made, and a node counts as wired only
// once it is in place. A failure only costs the floods: it is logged.
func (n *Network) quietMLD(none bool) {
	if none {
		close(n.quiet)
		return
	}
	go func() {
		defer close(n.quiet)
		done := runlog.Step(n.log, "drop MLD reports on the bridges", "table", nft.QuietMLDTable)
		done(nft.Create(n.bridgeNS, nft.QuietMLD()))
	}()
}

// failWiring marks every node as failed to wire, when wiring never began.
func (n *Network) failWiring(err error) {
	if err == nil {
		err = errors.New("the run's network was not built")
	}
	for i := range n.wired {
		n.wireErr[i] = err
		close(n.wired[i])
	}
	close(n.allWired)
}

// Wired returns the channel that closes once node i is wired (or failed
// to be: WaitWired says which).
func (n *Network) Wired(i int) <-chan struct{} { return n.wired[i] }

// WaitWired waits until node i is wired and says whether that failed.
func (n *Network) WaitWired(i int) error {
	<-n.wired[i]
	return n.wireErr[i]
}

// WaitAllWired waits until every node is wired; it returns every
// failure, if any.
func (n *Network) WaitAllWired() error {
	<-n.allWired
	return errors.Join(n.wireErr...)
}

// nsResult is a node namespace created ahead of its wiring.
type nsResult struct {
	i   int
	ns  *os.File
	err error
}

// newNodeNamespaces creates count network namespaces, several at a time,
// and delivers them on the channel it returns (closed after the last).
func (n *Network) newNodeNamespaces(count int) <-chan nsResult {
	out := make(chan nsResult, count)
	next := make(chan int, count)
	for i := 0; i < count; i++ {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for w := 0; w < min(wireWorkers, count); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				ns, err := nsfd.NewNet()
				out <- nsResult{i: i, ns: ns, err: err}
			}
		}()
	}
	go func() { wg.Wait(); close(out) }()
	return out
}

// wireNodes wires each node namespace, as it arrives, to its bridges,
// several at a time, in the background: wired[i] is closed as node i is
// done, and allWired after the last.
func (n *Network) wireNodes(nodes []plan.Node, nodeNS <-chan nsResult, onWired func(i int, ns *os.File)) {
	workers := min(wireWorkers, len(nodes))
	n.wiring.Add(workers)
	for w := 0; w < workers; w++ {
		go func() {
			defer n.wiring.Done()
			var bh *netlink.Handle
			// In a large run, a worker's sysctls go through a procfs
			// instance of its own (nsfd.Sysctls: through /proc, they
			// cost O(n²)); a small one saves mounting it.
			var sys *nsfd.Sysctls
			if len(nodes) > privateSysctlsAbove {
				sys = nsfd.NewSysctls()
			}
			defer func() {
				if bh != nil {
					bh.Close()
				}
				sys.Close()
			}()
			for r := range nodeNS {
				node := &nodes[r.i]
				n.nodeNS[r.i] = r.ns
				err := r.err
				if err != nil {
					err = fmt.Errorf("create namespace: %w", err)
				} else if bh == nil {
					bh, err = netsetup.Handle(n.bridgeNS)
				}
				if err == nil {
					err = n.wireNode(bh, node, r.ns, sys)
				}
				if err != nil {
					n.wireErr[r.i] = fmt.Errorf("node %q: %w", node.Name, err)
				}
				<-n.quiet
				onWired(r.i, r.ns)
				close(n.wired[r.i])
			}
		}()
	}
	go func() { n.wiring.Wait(); close(n.allWired) }()
}

// wireNode creates node's links, from bridge ports in the bridge
// namespace of bh into the node's namespace ns, writing its sysctls
// through sys (nil: through /proc).
func (n *Network) wireNode(bh *netlink.Handle, node *plan.Node, ns *os.File, sys *nsfd.Sysctls) error {
	for _, l := range node.Links {
		done := runlog.Step(n.log, "wire node", "node", node.Name, "link", l.Kind, "inside", l.Inside, "addr", l.Addr, "addr6", l.Addr6, "port", l.Port)
		var err error
		switch l.Kind {
		case plan.Veth:
			err = netsetup.AddNode(bh, n.bridges[l.Bridge], ns, netsetup.Node{PortName: l.Port, Addr: l.Addr.Addr(), Addr6: l.Addr6.Addr(), NoIPv6: !l.Addr6.IsValid(), Splice: netsetup.Splice{Port: l.Port, NodeEnd: l.NodeEnd, EngineEnd: l.EngineEnd}}, sys)
		case plan.Tap:
			err = netsetup.AddTapLink(bh, n.bridges[l.Bridge], ns, netsetup.TapLink{Tap: l.Inside, Port: l.Port, Peer: l.TapPeer, Bridge: l.TapBridge})
		}
		done(err)
		if err != nil {
			return err
		}
	}
	return nil
}

// Close releases the namespaces, once wiring has ended; the kernel
// removes their interfaces. The uplink's lease is released. It may be
// called more than once, and on a nil Network.
func (n *Network) Close() {
	if n == nil {
		return
	}
	n.closeOnce.Do(n.close)
}

func (n *Network) close() {
	<-n.allWired
	<-n.quiet // it uses bridgeNS
	n.uplink.release()
	for _, ns := range n.nodeNS {
		if ns != nil {
			ns.Close()
		}
	}
	if n.bridgeNS != nil {
		n.bridgeNS.Close()
	}
}

// BridgeNS is the bridge namespace (this process's own when Build ran);
// it stays open until Close.
func (n *Network) BridgeNS() *os.File { return n.bridgeNS }

// Bridges are the run's bridges, in the plan's order.
func (n *Network) Bridges() []*netsetup.Bridge { return n.bridges }

// UplinkBlock is the /30 the run's uplink leased from the user's pool;
// false without an uplink.
func (n *Network) UplinkBlock() (netip.Prefix, bool) {
	if n.uplink == nil {
		return netip.Prefix{}, false
	}
	return n.uplink.block, true
}

// Wire creates node's links (a node plugged in after Build, as `nsrun
// attach` does) in its namespace ns, which stays the caller's.
func (n *Network) Wire(node *plan.Node, ns *os.File) error {
	if err := n.EnsureBridges(); err != nil {
		return err
	}
	bh, err := netsetup.Handle(n.bridgeNS)
	if err != nil {
		return err
	}
	defer bh.Close()
	return n.wireNode(bh, node, ns, nil)
}

// EnsureBridges makes the bridges the plan deferred (plan.Bridge's
// Deferred: a subnet with one link), once the wiring has ended: before a
// second link joins, or a net verb writes rules, splices a link or
// shapes it, all of which expect a bridge. The node's port joins its new
// bridge, which takes over the router addresses; nothing else changes for
// the node. It does nothing the second time.
func (n *Network) EnsureBridges() error {
	<-n.allWired
	n.bridgeMu.Lock()
	defer n.bridgeMu.Unlock()
	var errs []error
	var bh *netlink.Handle
	defer func() {
		if bh != nil {
			bh.Close()
		}
	}()
	for i, br := range n.bridges {
		if !br.Direct {
			continue
		}
		if bh == nil {
			var err error
			if bh, err = netsetup.Handle(n.bridgeNS); err != nil {
				return err
			}
		}
		done := runlog.Step(n.log, "create bridge", "name", br.Name, "port", n.ports[i], "deferred", true)
		err := netsetup.MakeBridge(bh, br, n.ports[i])
		done(err)
		errs = append(errs, err) // each bridge on its own; a later call finishes a failed one
	}
	return errors.Join(errs...)
}

// Shape sets the shaping (rate, delay, jitter) of what leaves the bridge
// port port, which is what its node receives.
func (n *Network) Shape(port string, sh netsetup.Shaping) error {
	h, err := netsetup.Handle(n.bridgeNS)
	if err != nil {
		return err
	}
	defer h.Close()
	return netsetup.SetShaping(h, port, sh)
}
