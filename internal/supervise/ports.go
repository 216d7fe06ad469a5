package supervise

import (
	"fmt"
	"net"

	"github.com/nsrun/nsrun/internal/portproxy"
	"github.com/nsrun/nsrun/nft"
)

// publishPorts serves every published port (package portproxy): nsrun
// bound the listening sockets on the host's 127.0.0.1 before the run
// started, and each accepted connection is joined to one made from the
// bridge namespace to the node, marked (nft.ProxyMark) so that an uplink
// cut of the node stops it.
func (s *supervisor) publishPorts() error {
	for _, n := range s.plan.Nodes {
		for _, p := range n.Publish {
			f := s.handles.Listeners[p.Host]
			if f == nil {
				return fmt.Errorf("node %q: published port %s: no socket was bound for it", n.Name, p.Host)
			}
			l, err := net.FileListener(f)
			f.Close()
			if err != nil {
				return fmt.Errorf("node %q: published port %s: %w", n.Name, p.Host, err)
			}
			if err := portproxy.Start(l, s.net.BridgeNS(), p.Target, nft.ProxyMark); err != nil {
				l.Close()
				return fmt.Errorf("node %q: %w", n.Name, err)
			}
		}
	}
	return nil
}
