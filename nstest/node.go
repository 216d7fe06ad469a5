package nstest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/control"
)

// Node is one node of a Net.
type Node struct {
	net   *Net
	name  string
	addr  netip.Addr
	addr6 netip.Addr
	// ready is the node's ready port (0: none), waited for after Start.
	ready uint16
	err   error // not a node of the network (Net.Node of New's)
}

// Name is the node's name in the file.
func (n *Node) Name() string { return n.name }

// Addr is the node's IPv4 address (invalid for a node of an IPv6-only
// subnet).
func (n *Node) Addr() netip.Addr { return n.addr }

// Addr6 is the node's IPv6 address as the file gives it (`ip6:`, or the
// default pairing with its IPv4 address; invalid for a node without one).
// Dials to a node by name use it for networks "tcp6" and "udp6".
func (n *Node) Addr6() netip.Addr { return n.addr6 }

// DialContext connects to address as this node does: the socket is made in
// the node's network namespace (by the run, and handed to the test
// process), so the connection leaves from the node's address, crosses the
// run's bridge and partitions, and is an ordinary net.Conn of the test
// process. Host names in address are the run's node names and hostnames
// (as in the run's /etc/hosts), or IP addresses; network is "tcp", "tcp4",
// "tcp6", "udp", "udp4" or "udp6".
func (n *Node) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if n.err != nil {
		return nil, n.err
	}
	addr, err := n.net.resolve(network, address)
	if err != nil {
		return nil, fmt.Errorf("nstest: dial %s from node %s: %w", address, n.name, err)
	}
	d := net.Dialer{Control: n.control}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("nstest: from node %s: %w", n.name, err)
	}
	return c, nil
}

// Dial is DialContext without a context.
func (n *Node) Dial(network, address string) (net.Conn, error) {
	return n.DialContext(context.Background(), network, address)
}

// Listen listens on address inside the node ("tcp", ":9000"): other nodes
// reach the listener at the node's address, and it is an ordinary
// net.Listener of the test process.
func (n *Node) Listen(network, address string) (net.Listener, error) {
	return listenIn(n, network, address, (*net.ListenConfig).Listen)
}

// ListenPacket is Listen for datagrams ("udp", ":5353").
func (n *Node) ListenPacket(network, address string) (net.PacketConn, error) {
	return listenIn(n, network, address, (*net.ListenConfig).ListenPacket)
}

// listenIn resolves address through the run's hosts and calls listen with
// a ListenConfig whose sockets are made inside node n.
func listenIn[T any](n *Node, network, address string, listen func(*net.ListenConfig, context.Context, string, string) (T, error)) (T, error) {
	var zero T
	if n.err != nil {
		return zero, n.err
	}
	addr, err := n.net.resolve(network, address)
	if err != nil {
		return zero, fmt.Errorf("nstest: listen on %s in node %s: %w", address, n.name, err)
	}
	l, err := listen(&net.ListenConfig{Control: n.control}, context.Background(), network, addr)
	if err != nil {
		return zero, fmt.Errorf("nstest: in node %s: %w", n.name, err)
	}
	return l, nil
}

// control swaps the socket package net made (in the test's own network
// namespace) for one of the same kind made in the node's, before net binds
// or connects it.
func (n *Node) control(_, _ string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) { err = n.replace(int(fd)) }); cerr != nil {
		return cerr
	}
	return err
}

// copiedOptions are the options package net sets before Control, carried
// over to the node's socket.
var copiedOptions = [][2]int{
	{unix.SOL_SOCKET, unix.SO_REUSEADDR},
	{unix.SOL_SOCKET, unix.SO_REUSEPORT},
	{unix.SOL_SOCKET, unix.SO_BROADCAST},
	{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY},
}

func (n *Node) replace(fd int) error {
	family, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("read the socket's family: %w", err)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("read the socket's type: %w", err)
	}
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return fmt.Errorf("read the socket's protocol: %w", err)
	}
	f, err := n.net.client.Socket(n.name, family, typ, proto)
	if err != nil {
		return err
	}
	defer f.Close()
	nfd := int(f.Fd())
	for _, o := range copiedOptions {
		if o[0] == unix.IPPROTO_IPV6 && family != unix.AF_INET6 {
			continue
		}
		if v, err := unix.GetsockoptInt(fd, o[0], o[1]); err == nil {
			if err := unix.SetsockoptInt(nfd, o[0], o[1], v); err != nil {
				return fmt.Errorf("set socket option %d/%d: %w", o[0], o[1], err)
			}
		}
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		return err
	}
	if err := unix.Dup3(nfd, fd, unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("take the node's socket: %w", err)
	}
	return nil
}

// resolve replaces a node name or hostname in host:port by its address:
// IPv6 for a network that ends in 6 or a node with no IPv4, else IPv4.
func (n *Net) resolve(network, address string) (string, error) {
	host, port, err := splitHostPort(address)
	if err != nil {
		return "", err
	}
	if host == "" || host == "localhost" {
		return address, nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return address, nil
	}
	nd, ok := n.names[host]
	if !ok {
		return "", fmt.Errorf("no node or hostname %q in this network (its nodes: %s); use a node's name or an address", host, strings.Join(n.nodeNames(), ", "))
	}
	a := nd.addr
	if strings.HasSuffix(network, "6") || !a.IsValid() {
		a = nd.addr6
	}
	if !a.IsValid() {
		return "", fmt.Errorf("node %s has no address for %s", host, network)
	}
	return net.JoinHostPort(a.String(), port), nil
}

func splitHostPort(address string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(address)
	if err != nil {
		return "", "", fmt.Errorf("address %q: write host:port, such as e2:2379 or :9000", address)
	}
	return strings.Trim(host, "[]"), port, nil
}

// Stop ends the node's command (SIGTERM, SIGKILL after the stop timeout);
// the node keeps its namespace and address, and its exit is not reported
// as a failure.
func (n *Node) Stop() error { return n.ending("stop") }

// Start starts the node's command again after Stop, at the same address,
// and waits for its ready check, as Start of the network does.
func (n *Node) Start() error { return n.verb("start") }

// Restart is Stop, then Start.
func (n *Node) Restart() error { return n.ending("restart") }

// readyTimeout bounds the wait for a node's ready port, as nsrun's.
const readyTimeout = 60 * time.Second

// waitReady waits until the node's ready port accepts, tried from inside
// the node.
func (n *Node) waitReady(crashes int) error {
	if n.ready == 0 {
		return nil
	}
	a := n.addr
	if !a.IsValid() {
		a = n.addr6
	}
	addr := netip.AddrPortFrom(a, n.ready).String()
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := (&net.Dialer{Control: n.control}).DialContext(ctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nstest: node %s: tcp:%d did not accept within %s of its start: %w", n.name, n.ready, readyTimeout, err)
		}
		n.net.mu.Lock()
		crashed := n.net.crashes[n.name] != crashes
		n.net.mu.Unlock()
		if crashed {
			return fmt.Errorf("nstest: node %s exited before tcp:%d accepted", n.name, n.ready)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ending runs a verb that ends the node's command, whose exit is then
// expected.
func (n *Node) ending(verb string) error {
	n.net.mu.Lock()
	if n.net.running[n.name] {
		n.net.expected[n.name]++
		n.net.running[n.name] = false
	}
	n.net.mu.Unlock()
	return n.verb(verb)
}

// Pause freezes the node's processes (SIGSTOP to its process group).
func (n *Node) Pause() error { return n.verb("pause") }

// Resume thaws them (SIGCONT).
func (n *Node) Resume() error { return n.verb("resume") }

func (n *Node) verb(v string) error {
	if n.err != nil {
		return n.err
	}
	n.net.mu.Lock()
	crashes := n.net.crashes[n.name]
	n.net.mu.Unlock()
	if err := n.net.client.Node(control.NodeCall{Action: v, Node: n.name}); err != nil {
		return fmt.Errorf("nstest: node %s %s: %w", v, n.name, err)
	}
	n.net.out.log("nstest: %s: %s done", n.name, v)
	if v == "start" || v == "restart" {
		n.net.mu.Lock()
		n.net.running[n.name] = true
		n.net.mu.Unlock()
		return n.waitReady(crashes)
	}
	return nil
}
