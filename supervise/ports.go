package supervise

import (
	"fmt"
	"io"
	"net"
	"time"

	"github.com/nsrun/nsrun/nsfd"
)

// publishPorts serves every published port: nsrun bound the listening
// sockets on the host's 127.0.0.1 before the run started (so they belong
// to the host's network namespace); each accepted
// connection is joined to a connection made from the bridge namespace to
// the node.
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
			go s.forward(l, p.Target.String())
		}
	}
	return nil
}

func (s *supervisor) forward(l net.Listener, target string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			var up net.Conn
			// The socket is made in the bridge namespace, and stays there.
			err := nsfd.Do(s.net.BridgeNS(), func() error {
				var err error
				up, err = net.DialTimeout("tcp", target, 5*time.Second)
				return err
			})
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(up, c)
			go pipe(c, up)
			<-done
			<-done
		}()
	}
}
