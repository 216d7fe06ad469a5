package portproxy

import (
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

// TestStart publishes a port of a server in another network namespace
// on this one's loopback: bytes cross both ways, the client's half-close
// reaches the server (which answers only then), and the proxy keeps its
// own hold on the namespace, so closing the caller's fd changes nothing.
func TestStart(t *testing.T) {
	if err := loUp(); err != nil {
		t.Fatal(err)
	}
	ns, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	var srv net.Listener
	if err := nsfd.Do(ns, func() error {
		if err := loUp(); err != nil {
			return err
		}
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
