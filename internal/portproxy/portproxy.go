// Package portproxy publishes a node's TCP or UDP port on the host
// without root, the way rootlesskit's builtin port driver does: the
// listening socket belongs to the host's network namespace (the launcher
// bound it on 127.0.0.1 before the run started), and each connection
// accepted on it is joined to one dialled from inside the run (the bridge
// namespace) to the node, bytes copied both ways, half-closes passed on.
// A UDP port has a flow per client address instead (StartUDP).
package portproxy

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/nsfd"
)

// DialTimeout bounds the dial to the node for one accepted connection;
// the accepted connection is closed when it fails.
const DialTimeout = 5 * time.Second

// Start serves l in the background until l is closed: each connection
// it accepts is joined to a TCP connection to target dialled from the
// network namespace ns, whose socket carries mark (SO_MARK; 0: none),
// by which the run's firewall knows the proxy's packets (the uplink cut
// stops those of a cut node: nft.ProxyMark). It holds a namespace fd of
// its own (a duplicate of ns) until l is closed and every joined
// connection has ended, so the caller may close ns at any time.
func Start(l net.Listener, ns *os.File, target netip.AddrPort, mark uint32) error {
	fd, err := unix.FcntlInt(ns.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("publish %s: hold the namespace: %w", target, err)
	}
	own := os.NewFile(uintptr(fd), ns.Name())
	go serve(l, own, target, mark)
	return nil
}

func serve(l net.Listener, ns *os.File, target netip.AddrPort, mark uint32) {
	var joins sync.WaitGroup
	defer ns.Close()
	defer joins.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		joins.Add(1)
		go func() {
			defer joins.Done()
			join(c, ns, target, mark)
		}()
	}
}

// join copies between c and a new connection to target from ns until
// both directions have ended.
func join(c net.Conn, ns *os.File, target netip.AddrPort, mark uint32) {
	defer c.Close()
	var up net.Conn
	d := markedDialer(mark, target)
	// The socket is made in ns, and stays there.
	err := nsfd.Do(ns, func() error {
		var err error
		up, err = d.Dial("tcp", target.String())
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
}
