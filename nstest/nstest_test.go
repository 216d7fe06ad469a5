package nstest_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/nstest"
)

const three = `
nodes:
  a: {ip: 172.18.0.11}
  b: {ip: 172.18.0.12}
  c: {ip: 172.18.0.13}
`

// echo serves l, echoing every line back with the server's prefix.
func echo(l net.Listener, prefix string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				fmt.Fprintf(c, "%s %s %s\n", prefix, c.RemoteAddr().(*net.TCPAddr).IP, sc.Text())
			}
		}()
	}
}

// TestDialListenByName: the test listens inside c and dials from a, by
// node name; the server sees a's address.
func TestDialListenByName(t *testing.T) {
	t.Parallel()
	n := nstest.Start(t, three)
	l, err := n.Node("c").Listen("tcp", ":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go echo(l, "c")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := n.Node("a").DialContext(ctx, "tcp", "c:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.RemoteAddr().String(); got != "172.18.0.13:9000" {
		t.Errorf("remote address %s, want 172.18.0.13:9000", got)
	}
	fmt.Fprintln(conn, "hello")
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if want := "c 172.18.0.11 hello\n"; line != want {
		t.Errorf("got %q, want %q", line, want)
	}
	_ = io.Discard
	_ = strings.TrimSpace
}
