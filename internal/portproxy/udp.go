package portproxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/nsfd"
)

// UDPIdleTimeout ends a UDP flow (the socket serving one client address)
// that has carried nothing either way for this long, as docker's
// userland proxy does; the client's next datagram opens a new one.
const UDPIdleTimeout = 90 * time.Second

// MaxUDPFlows bounds the client addresses one published UDP port serves
// at once (each holds a socket); datagrams from more are dropped until a
// flow ends.
const MaxUDPFlows = 1024

// maxDatagram is the largest UDP payload.
const maxDatagram = 65535

// StartUDP serves the bound UDP socket pc in the background until it is
// closed: the datagrams of each client address go to target from a
// socket of that client's own, made in the network namespace ns and
// connected to target, which carries mark (SO_MARK; 0: none) as Start's
// connections do; what the node sends back on it goes to the client from
// pc, so the reply comes from the address the client wrote to. A flow
// ends after UDPIdleTimeout without traffic. StartUDP holds a namespace
// fd of its own until pc is closed and every flow has ended.
func StartUDP(pc *net.UDPConn, ns *os.File, target netip.AddrPort, mark uint32) error {
	fd, err := unix.FcntlInt(ns.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("publish %s/udp: hold the namespace: %w", target, err)
	}
	u := &udpProxy{host: pc, ns: os.NewFile(uintptr(fd), ns.Name()), target: target, mark: mark, idle: UDPIdleTimeout, flows: map[netip.AddrPort]*udpFlow{}}
	go u.serve()
	return nil
}

// udpProxy is one published UDP port.
type udpProxy struct {
	host   *net.UDPConn // bound on the host
	ns     *os.File     // where flows' sockets are made
	target netip.AddrPort
	mark   uint32
	idle   time.Duration

	mu    sync.Mutex
	flows map[netip.AddrPort]*udpFlow // by client address
	wg    sync.WaitGroup
}

// udpFlow is one client's socket to the node.
type udpFlow struct {
	conn *net.UDPConn
	last atomic.Int64 // unix nanoseconds of the last datagram either way
}

func (u *udpProxy) serve() {
	defer u.ns.Close()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := u.host.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			break
		}
		if err != nil {
			continue // an ICMP error of an earlier reply, say
		}
		f := u.flow(from)
		if f == nil {
			continue
		}
		f.last.Store(time.Now().UnixNano())
		_, _ = f.conn.Write(buf[:n]) // lost like any datagram when it fails
	}
	u.mu.Lock()
	for _, f := range u.flows {
		f.conn.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

// flow is client's flow, made if it has none; nil when it cannot be
// made or MaxUDPFlows are open.
func (u *udpProxy) flow(client netip.AddrPort) *udpFlow {
	u.mu.Lock()
	defer u.mu.Unlock()
	if f := u.flows[client]; f != nil {
		return f
	}
	if len(u.flows) >= MaxUDPFlows {
		return nil
	}
	var c net.Conn
	d := markedDialer(u.mark, u.target)
	if err := nsfd.Do(u.ns, func() error {
		var err error
		c, err = d.Dial("udp", u.target.String())
		return err
	}); err != nil {
		return nil
	}
	f := &udpFlow{conn: c.(*net.UDPConn)}
	f.last.Store(time.Now().UnixNano())
	u.flows[client] = f
	u.wg.Add(1)
	go u.reply(client, f)
	return f
}

// reply sends what the node sends on f to client, until f has been idle
// for u.idle or is closed.
func (u *udpProxy) reply(client netip.AddrPort, f *udpFlow) {
	defer u.wg.Done()
	defer func() {
		u.mu.Lock()
		if u.flows[client] == f {
			delete(u.flows, client)
		}
		u.mu.Unlock()
		f.conn.Close()
	}()
	buf := make([]byte, maxDatagram)
	for {
		_ = f.conn.SetReadDeadline(time.Unix(0, f.last.Load()).Add(u.idle))
		n, err := f.conn.Read(buf)
		var ne net.Error
		switch {
		case err == nil:
			f.last.Store(time.Now().UnixNano())
			_, _ = u.host.WriteToUDPAddrPort(buf[:n], client)
		case errors.As(err, &ne) && ne.Timeout():
			if time.Since(time.Unix(0, f.last.Load())) >= u.idle {
				return
			}
			// the client sent since the deadline was set: wait on
		case errors.Is(err, syscall.ECONNREFUSED):
			// nothing listens on the node's port (yet): the client may
			// send again
		default:
			return
		}
	}
}

// markedDialer is a dialer whose sockets carry mark (SO_MARK), if it is
// not 0.
func markedDialer(mark uint32, target netip.AddrPort) *net.Dialer {
	d := &net.Dialer{Timeout: DialTimeout}
	if mark == 0 {
		return d
	}
	d.Control = func(_, _ string, raw syscall.RawConn) error {
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("mark the socket to %s: %w", target, serr)
		}
		return nil
	}
	return d
}
