package supervise

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/nsrun/nsrun/ipam"
	"github.com/nsrun/nsrun/netsetup"
	"github.com/nsrun/nsrun/nsfd"
	"github.com/nsrun/nsrun/plan"
)

// wireWorkers bounds how many nodes are wired at once.
const wireWorkers = 8

// network is what the run's network namespaces are made of.
type network struct {
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
}

// buildNetwork applies the network part of the plan: the bridge
// namespace with one bridge per subnet, forwarding and the uplink; and it
// starts wiring one namespace per node to its bridges in the background
// (waitWired, waitAllWired).
func buildNetwork(p *plan.Plan, log *slog.Logger, onWired func(i int, ns *os.File)) (*network, error) {
	n := &network{
		nodeNS:   make([]*os.File, len(p.Nodes)),
		log:      log,
		wired:    make([]chan struct{}, len(p.Nodes)),
		wireErr:  make([]error, len(p.Nodes)),
		allWired: make(chan struct{}),
	}
	for i := range n.wired {
		n.wired[i] = make(chan struct{})
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
	for _, b := range p.Bridges {
		done := step(log, "create bridge", "name", b.Name, "addr", b.Prefix, "router", b.Router, "addr6", b.Prefix6, "router6", b.Router6)
		var br *netsetup.Bridge
		br, err = netsetup.AddBridge(bh, b.Name, ipam.Subnet{Prefix: b.Prefix, Bridge: b.Router, Prefix6: b.Prefix6, Bridge6: b.Router6})
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
		done := step(log, "add uplink to the gateway", "port", p.Uplink.Port, "gateway_port", p.Uplink.GatewayPort)
		n.uplink, err = addUplink(p, n.bridgeNS)
		done(err)
		if err != nil {
			return n, fmt.Errorf("uplink: %w", err)
		}
	}
	return n, nil
}

// failWiring marks every node as failed to wire, when wiring never began.
func (n *network) failWiring(err error) {
	if err == nil {
		err = errors.New("the run's network was not built")
	}
	for i := range n.wired {
		n.wireErr[i] = err
		close(n.wired[i])
	}
	close(n.allWired)
}

// waitWired waits until node i is wired and says whether that failed.
func (n *network) waitWired(i int) error {
	<-n.wired[i]
	return n.wireErr[i]
}

// waitAllWired waits until every node is wired; it returns the first
// failure, if any.
func (n *network) waitAllWired() error {
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
func (n *network) newNodeNamespaces(count int) <-chan nsResult {
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
func (n *network) wireNodes(nodes []plan.Node, nodeNS <-chan nsResult, onWired func(i int, ns *os.File)) {
	workers := min(wireWorkers, len(nodes))
	n.wiring.Add(workers)
	for w := 0; w < workers; w++ {
		go func() {
			defer n.wiring.Done()
			var bh *netlink.Handle
			defer func() {
				if bh != nil {
					bh.Close()
				}
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
					err = n.wireNode(bh, node, r.ns)
				}
				if err != nil {
					n.wireErr[r.i] = fmt.Errorf("node %q: %w", node.Name, err)
				}
				onWired(r.i, r.ns)
				close(n.wired[r.i])
			}
		}()
	}
	go func() { n.wiring.Wait(); close(n.allWired) }()
}

// wireNode creates node's links, from bridge ports in the bridge
// namespace of bh into the node's namespace ns.
func (n *network) wireNode(bh *netlink.Handle, node *plan.Node, ns *os.File) error {
	for _, l := range node.Links {
		done := step(n.log, "wire node", "node", node.Name, "link", l.Kind, "inside", l.Inside, "addr", l.Addr, "addr6", l.Addr6, "port", l.Port)
		var err error
		switch l.Kind {
		case plan.Veth:
			err = netsetup.AddNode(bh, n.bridges[l.Bridge], ns, netsetup.Node{PortName: l.Port, Addr: l.Addr.Addr(), Addr6: l.Addr6.Addr(), NoIPv6: !l.Addr6.IsValid()})
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

// close releases the namespaces, once wiring has ended; the kernel
// removes their interfaces.
func (n *network) close() {
	if n == nil {
		return
	}
	<-n.allWired
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
