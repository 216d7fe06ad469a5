package nstest_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/nsrun/nsrun/nstest"
)

// idle is the network of the benchmarks: three nodes without a command.
const idle = `
nodes:
  a: {ip: 172.18.0.11}
  b: {ip: 172.18.0.12}
  c: {ip: 172.18.0.13}
`

// BenchmarkStartDialClose: a whole network's life as a test sees it:
// start three command-less nodes, listen in c, dial c from a, one round
// trip, stop. bench/run.sh sets it beside `nsrun up` of the same nodes.
func BenchmarkStartDialClose(b *testing.B) {
	needUserNS(b)
	for b.Loop() {
		n, err := nstest.New(idle, nstest.LogLines(0))
		if err != nil {
			b.Fatal(err)
		}
		roundTripOnce(b, n)
		if err := n.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEmpty is BenchmarkStartDialClose with nothing in its loop:
// what the test binary, the benchmark framework and the user-namespace
// check cost, which bench/run.sh subtracts from a run of
// BenchmarkStartDialClose to give what Start, the dial and Close cost.
func BenchmarkEmpty(b *testing.B) {
	needUserNS(b)
	for b.Loop() {
	}
}

// BenchmarkDial: DialContext from a node to a listener in another, with
// one round trip, in a network that runs throughout.
func BenchmarkDial(b *testing.B) {
	needUserNS(b)
	n := nstest.Start(b, idle)
	l, err := n.Node("c").Listen("tcp", ":9000")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go serveOneByte(l)
	for b.Loop() {
		c, err := n.Node("a").DialContext(context.Background(), "tcp", "c:9000")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write([]byte{1}); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// serveOneByte echoes one byte on every connection.
func serveOneByte(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			b := make([]byte, 1)
			if _, err := io.ReadFull(c, b); err == nil {
				_, _ = c.Write(b)
			}
		}()
	}
}

func roundTripOnce(b *testing.B, n *nstest.Net) {
	l, err := n.Node("c").Listen("tcp", ":9000")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go serveOneByte(l)
	c, err := n.Node("a").DialContext(context.Background(), "tcp", "c:9000")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{7}); err != nil {
		b.Fatal(err)
	}
	if _, err := bufio.NewReader(c).ReadByte(); err != nil {
		b.Fatal(fmt.Errorf("round trip: %w", err))
	}
}
