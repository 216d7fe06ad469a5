package portproxy

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/nsfd"
)

// loUp brings lo up in the current thread's network namespace.
func loUp() error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	return h.LinkSetUp(lo)
}

// loopbackNS brings this namespace's loopback up and makes a network
// namespace (closed when t ends) whose loopback is up too.
func loopbackNS(t *testing.T) *os.File {
	t.Helper()
	if err := loUp(); err != nil {
		t.Fatal(err)
	}
	ns, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	if err := nsfd.Do(ns, loUp); err != nil {
		t.Fatal(err)
	}
	return ns
}

// TestStart publishes a port of a server in another network namespace
// on this one's loopback: bytes cross both ways, the client's half-close
// reaches the server (which answers only then), and the proxy keeps its
// own hold on the namespace, so closing the caller's fd changes nothing.
func TestStart(t *testing.T) {
	ns := loopbackNS(t)
	var srv net.Listener
	if err := nsfd.Do(ns, func() error {
		var err error
		srv, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c) // until the client's half-close
				_, _ = c.Write([]byte(strings.ToUpper(string(b))))
			}()
		}
	}()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := Start(l, ns, netip.MustParseAddrPort(srv.Addr().String()), 0x6e737270); err != nil {
		t.Fatal(err)
	}
	ns.Close() // the proxy holds its own

	for range 2 {
		c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("hello through the proxy")); err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "HELLO THROUGH THE PROXY" {
			t.Fatalf("through the proxy: %q, %v", got, err)
		}
	}
}

// TestStartBadNamespace: a namespace fd that cannot be held is an error
// at once.
func TestStartBadNamespace(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := Start(nil, f, netip.MustParseAddrPort("127.0.0.1:1"), 0); err == nil {
		t.Error("Start with a closed fd")
	}
}

// TestStartUDP publishes a UDP port of a server in another network
// namespace: each client's datagrams reach the server, its replies come
// back from the published address, two clients get their own answers,
// and a client the node does not answer gets nothing; a flow idle for
// the timeout ends, and the client's next datagram opens another.
func TestStartUDP(t *testing.T) {
	ns := loopbackNS(t)
	var srv *net.UDPConn
	if err := nsfd.Do(ns, func() error {
		var err error
		srv, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() { // answers each datagram in capitals, but "quiet"
		buf := make([]byte, 65535)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if string(buf[:n]) != "quiet" {
				_, _ = srv.WriteToUDPAddrPort([]byte(strings.ToUpper(string(buf[:n]))), from)
			}
		}
	}()
	host, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.FcntlInt(ns.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	u := &udpProxy{host: host, ns: os.NewFile(uintptr(fd), "ns"), target: netip.MustParseAddrPort(srv.LocalAddr().String()), mark: 0x6e737270, idle: 300 * time.Millisecond, flows: map[netip.AddrPort]*udpFlow{}}
	served := make(chan struct{})
	go func() { u.serve(); close(served) }()
	flows := func() int {
		u.mu.Lock()
		defer u.mu.Unlock()
		return len(u.flows)
	}

	ask := func(c *net.UDPConn, q string) (string, error) {
		if _, err := c.Write([]byte(q)); err != nil {
			return "", err
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 100)
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err == nil && from.String() != host.LocalAddr().String() {
			return "", fmt.Errorf("the answer came from %s, not the published %s", from, host.LocalAddr())
		}
		return string(buf[:n]), err
	}
	var clients []*net.UDPConn
	for range 2 {
		c, err := net.DialUDP("udp", nil, host.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	for i, c := range clients {
		for j := range 3 {
			q := fmt.Sprintf("client %d datagram %d", i, j)
			if got, err := ask(c, q); err != nil || got != strings.ToUpper(q) {
				t.Fatalf("%s: %q, %v", q, got, err)
			}
		}
	}
	if n := flows(); n != 2 {
		t.Errorf("%d flows for two clients", n)
	}
	if got, err := ask(clients[0], "quiet"); err == nil {
		t.Errorf("an answer the node never sent: %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for flows() != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := flows(); n != 0 {
		t.Fatalf("%d flows left after the idle timeout", n)
	}
	if got, err := ask(clients[1], "again"); err != nil || got != "AGAIN" {
		t.Fatalf("after the idle timeout: %q, %v", got, err)
	}
	host.Close()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy did not end once its socket was closed")
	}
	if n := flows(); n != 0 {
		t.Errorf("%d flows left after the proxy ended", n)
	}
}
