// Package dnsrelay answers DNS on an address of one family by asking a
// server of the other: the run's bridge namespace relays what the nodes
// of an IPv6-only subnet ask their bridge's IPv6 address to the host's
// resolver, which is an IPv4 address. NAT cannot do this (it never changes
// a packet's family), so a run with such a subnet and an uplink runs one
// relay per IPv6-only bridge, in the supervisor, on UDP and TCP port 53.
//
// A relay holds no state beyond the queries in flight: each UDP query
// gets a socket of its own to the upstream (the reply finds its way back
// by that socket) and ends after a timeout; each TCP connection is joined
// to one upstream connection the way published ports are (package
// portproxy).
package dnsrelay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/internal/portproxy"
)

// udpTimeout bounds one UDP query.
const udpTimeout = 5 * time.Second

// maxInFlight bounds the UDP queries relayed at once; more are dropped
// (the client asks again).
const maxInFlight = 64

// Relay is a running relay. Close stops it.
type Relay struct {
	ns       *os.File
	upstream netip.AddrPort
	udp      net.PacketConn
	tcp      net.Listener
	slots    chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]bool // UDP queries in flight; closed by Close
	closed   bool
}

// Start listens on listen (UDP and TCP) in the network namespace ns and
// relays every query to upstream, dialled from ns too. The address need
// not be there yet (IP_FREEBIND): a subnet of one node gets its router
// address on the node's link as that link is wired, and later on its
// bridge (runnet.EnsureBridges); the sockets serve it wherever it is.
func Start(ns *os.File, listen, upstream netip.AddrPort) (*Relay, error) {
	r := &Relay{ns: ns, upstream: upstream, slots: make(chan struct{}, maxInFlight), conns: map[net.Conn]bool{}}
	lc := net.ListenConfig{Control: freebind}
	err := nsfd.Do(ns, func() error {
		var err error
		if r.udp, err = lc.ListenPacket(context.Background(), "udp", listen.String()); err != nil {
			return err
		}
		r.tcp, err = lc.Listen(context.Background(), "tcp", listen.String())
		return err
	})
	if err == nil {
		err = portproxy.Start(r.tcp, ns, upstream, 0)
	}
	if err != nil {
		if r.udp != nil {
			r.udp.Close()
		}
		if r.tcp != nil {
			r.tcp.Close()
		}
		return nil, fmt.Errorf("DNS relay on %s: %w", listen, err)
	}
	r.wg.Add(1)
	go r.serveUDP()
	return r, nil
}

// Close stops listening and ends the UDP queries in flight, waiting for
// them; a TCP connection already joined ends with its client, as one to a
// published port does.
func (r *Relay) Close() {
	if r == nil {
		return
	}
	r.udp.Close()
	r.tcp.Close()
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// track adds c to the connections Close ends; false if Close came first.
func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
		return false
	}
	r.conns[c] = true
	return true
}

func (r *Relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

// dial opens a connection to the upstream from the relay's namespace.
func (r *Relay) dial(network string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := nsfd.Do(r.ns, func() error {
		var err error
		c, err = net.DialTimeout(network, r.upstream.String(), timeout)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !r.track(c) {
		return nil, net.ErrClosed
	}
	return c, c.SetDeadline(time.Now().Add(timeout))
}

func (r *Relay) serveUDP() {
	defer r.wg.Done()
	for {
		buf := make([]byte, 65535)
		n, from, err := r.udp.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		select {
		case r.slots <- struct{}{}:
		default:
			continue // too many in flight: dropped, the client retries
		}
		r.wg.Add(1)
		go func() {
			defer func() { <-r.slots; r.wg.Done() }()
			r.relayUDP(buf[:n], from)
		}()
	}
}

func (r *Relay) relayUDP(query []byte, from net.Addr) {
	c, err := r.dial("udp", udpTimeout)
	if err != nil {
		return
	}
	defer r.untrack(c)
	if _, err := c.Write(query); err != nil {
		return
	}
	answer := make([]byte, 65535)
	n, err := c.Read(answer)
	if err != nil {
		return
	}
	_, _ = r.udp.WriteTo(answer[:n], from)
}

// freebind lets a socket bind an address its namespace does not have yet.
func freebind(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
