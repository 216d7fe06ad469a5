package supervise

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/nsrun/nsrun/internal/plan"
	"github.com/nsrun/nsrun/internal/portproxy"
	"github.com/nsrun/nsrun/internal/topology"
	"github.com/nsrun/nsrun/nft"
)

// publishPorts serves every published port (package portproxy): nsrun
// bound the listening sockets on the host's 127.0.0.1 before the run
// started, and each accepted connection (each UDP client) is joined to
// one made from the bridge namespace to the node, marked (nft.ProxyMark)
// so that an uplink cut of the node stops it.
func (s *supervisor) publishPorts() error {
	for _, n := range s.plan.Nodes {
		for _, p := range n.Publish {
			f := s.handles.Listeners[p]
			if f == nil {
				return fmt.Errorf("node %q: published port %s: no socket was bound for it", n.Name, p.HostString())
			}
			if err := serve(f, p, s.net.BridgeNS()); err != nil {
				return fmt.Errorf("node %q: published port %s: %w", n.Name, p.HostString(), err)
			}
		}
	}
	return nil
}

// serve proxies the host socket f (closed here) of p to the node from
// the bridge namespace ns.
func serve(f *os.File, p plan.Publish, ns *os.File) error {
	defer f.Close()
	if p.Proto == topology.UDP {
		pc, err := net.FilePacketConn(f)
		if err != nil {
			return err
		}
		uc, ok := pc.(*net.UDPConn)
		if !ok {
			pc.Close()
			return errors.New("the socket bound for it is no UDP socket")
		}
		if err := portproxy.StartUDP(uc, ns, p.Target, nft.ProxyMark); err != nil {
			uc.Close()
			return err
		}
		return nil
	}
	l, err := net.FileListener(f)
	if err != nil {
		return err
	}
	if err := portproxy.Start(l, ns, p.Target, nft.ProxyMark); err != nil {
		l.Close()
		return err
	}
	return nil
}
