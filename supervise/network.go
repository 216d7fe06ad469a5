package supervise

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/nsrun/nsrun/ipam"
	"github.com/nsrun/nsrun/netsetup"
	"github.com/nsrun/nsrun/nsfd"
	"github.com/nsrun/nsrun/runconfig"
)

// wireWorkers bounds how many nodes are wired at once.
const wireWorkers = 8

// network is what the run's network namespaces are made of.
type network struct {
	bridgeNS *os.File
	bridges  []*netsetup.Bridge
	nodeNS   []*os.File // by node index
	uplink   *uplink
	log      *slog.Logger
}

// bridgeName names the bridge of subnet i.
func bridgeName(i int) string { return "br" + strconv.Itoa(i) }

// buildNetwork creates the bridge namespace with one bridge per subnet,
// one namespace per node wired to its subnet's bridge, and the uplink.
func buildNetwork(cfg runconfig.Config, log *slog.Logger) (*network, error) {
	n := &network{nodeNS: make([]*os.File, len(cfg.Nodes)), log: log}
	var err error
	// The launcher gave the supervisor a network namespace of its own: it
	// is the bridge namespace. (A thread that runs unlocked code is never
	// in another one: package nsfd locks the threads it moves.)
	if n.bridgeNS, err = nsfd.Open("/proc/thread-self/ns/net"); err != nil {
		return n, fmt.Errorf("bridge namespace: %w", err)
	}
	bh, err := netsetup.Handle(n.bridgeNS)
	if err != nil {
		return n, err
	}
	defer bh.Close()
	var bridgeAddrs []netip.Addr
	for i, s := range cfg.Subnets {
		subnet, err := ipam.NewSubnet("subnets."+s.Name, s.CIDR)
		if err != nil {
			return n, err
		}
		done := step(log, "create bridge", "name", bridgeName(i), "addr", fmt.Sprintf("%s/%d", subnet.Bridge, subnet.Prefix.Bits()))
		br, err := netsetup.AddBridge(bh, bridgeName(i), subnet)
		done(err)
		if err != nil {
			return n, err
		}
		n.bridges = append(n.bridges, br)
		bridgeAddrs = append(bridgeAddrs, subnet.Bridge)
	}
	if len(cfg.Subnets) > 1 && !cfg.Uplink {
		// Route between the subnets (the uplink turns it on anyway).
		if err := netsetup.EnableForwarding(n.bridgeNS); err != nil {
			return n, err
		}
	}
	if err := n.wireNodes(cfg); err != nil {
		return n, err
	}
	if cfg.Uplink {
		done := step(log, "add uplink to the gateway")
		n.uplink, err = addUplink(cfg, n.bridgeNS, bridgeAddrs)
		done(err)
		if err != nil {
			return n, fmt.Errorf("uplink: %w", err)
		}
	}
	return n, nil
}

// wireNodes creates and wires the node namespaces, several at a time.
func (n *network) wireNodes(cfg runconfig.Config) error {
	jobs := make(chan int)
	errs := make(chan error, len(cfg.Nodes))
	var wg sync.WaitGroup
	workers := min(wireWorkers, len(cfg.Nodes))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bh, err := netsetup.Handle(n.bridgeNS)
			if err != nil {
				errs <- err
				for range jobs {
				}
				return
			}
			defer bh.Close()
			for i := range jobs {
				if err := n.wireNode(bh, cfg.Nodes[i], i); err != nil {
					errs <- fmt.Errorf("node %q: %w", cfg.Nodes[i].Name, err)
				}
			}
		}()
	}
	for i := range cfg.Nodes {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	return <-errs // nil when there was none
}

func (n *network) wireNode(bh *netlink.Handle, node runconfig.Node, i int) (err error) {
	done := step(n.log, "wire node", "node", node.Name, "addr", node.Addr, "port", ipam.IfName("v", node.Name))
	defer func() { done(err) }()
	ns, err := nsfd.NewNet()
	if err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}
	n.nodeNS[i] = ns
	if len(node.Taps) > 0 {
		for _, tp := range node.Taps {
			port := ipam.IfName("t", node.Name+"."+tp.Name)
			if err := netsetup.AddTapLink(bh, n.bridges[tp.Subnet], ns, tp.Name, port); err != nil {
				return err
			}
		}
		return nil
	}
	addr, err := netip.ParseAddr(node.Addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", node.Addr, err)
	}
	return netsetup.AddNode(bh, n.bridges[node.Subnet], ns, netsetup.Node{PortName: ipam.IfName("v", node.Name), Addr: addr})
}

// close releases the namespaces; the kernel removes their interfaces.
func (n *network) close() {
	if n == nil {
		return
	}
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
