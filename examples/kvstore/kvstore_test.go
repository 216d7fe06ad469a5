package kvstore_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/examples/kvstore"
	"github.com/nsrun/nsrun/nstest"
)

// TestMain makes this test binary the replica too: each node of the
// network runs it with KVSTORE_REPLICA set, as a real process of its own.
func TestMain(m *testing.M) {
	if os.Getenv("KVSTORE_REPLICA") != "" {
		os.Exit(replica(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// replica is the store's own main: kvstore -id a -listen :7000 -peers b:7000,c:7000.
func replica(args []string) int {
	fs := flag.NewFlagSet("kvstore", flag.ContinueOnError)
	id := fs.String("id", "", "this replica's name")
	listen := fs.String("listen", ":7000", "address to serve on")
	peers := fs.String("peers", "", "the other replicas, host:port,...")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("replica %s serving on %s, peers %s\n", *id, *listen, *peers)
	s := &kvstore.Server{ID: *id, Peers: strings.Split(*peers, ",")}
	fmt.Fprintln(os.Stderr, s.Serve(l))
	return 1
}

// cluster is three replicas, each a process in a node of its own that
// finds the others by name (the run's /etc/hosts), and a client node.
func cluster(t *testing.T) *nstest.Net {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	node := func(name, ip, peers string) string {
		return fmt.Sprintf("  %s: {ip: %s, command: [%q, -id, %s, -peers, %q], environment: {KVSTORE_REPLICA: \"1\"}, ready: \"tcp:7000\"}\n",
			name, ip, exe, name, peers)
	}
	return nstest.Start(t, "nodes:\n"+
		node("a", "172.18.0.21", "b:7000,c:7000")+
		node("b", "172.18.0.22", "a:7000,c:7000")+
		node("c", "172.18.0.23", "a:7000,b:7000")+
		"  client: {ip: 172.18.0.30}\n")
}

// ask sends one request from the client node to a replica.
func ask(t *testing.T, n *nstest.Net, replica, line string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := n.Node("client").DialContext(ctx, "tcp", replica+":7000")
	if err != nil {
		t.Fatalf("%s to %s: %v", line, replica, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintln(c, line)
	a, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("%s to %s: %v", line, replica, err)
	}
	return strings.TrimSpace(a)
}

func want(t *testing.T, got, wantPrefix, what string) {
	t.Helper()
	if !strings.HasPrefix(got, wantPrefix) {
		t.Errorf("%s: got %q, want %q", what, got, wantPrefix)
	}
}

// TestMinorityRefusesMajorityGoesOn: a replica cut off from the others
// refuses reads and writes, the majority goes on, and once healed the cut
// replica reads what the majority wrote, never its own refused write.
func TestMinorityRefusesMajorityGoesOn(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil || exec.Command("unshare", "-Urn", "true").Run() != nil {
		t.Skip("skipped: needs unprivileged user namespaces")
	}
	t.Parallel()
	n := cluster(t)
	want(t, ask(t, n, "a", "PUT x 1"), "OK", "PUT via a")
	want(t, ask(t, n, "c", "GET x"), "VALUE 1", "GET via c")

	// c is cut from a and b; the client still reaches everyone.
	if err := n.Split([]string{"a", "b", "client"}, []string{"c", "client"}); err != nil {
		t.Fatal(err)
	}
	want(t, ask(t, n, "c", "PUT x 2"), "ERR no quorum", "PUT via the cut c")
	want(t, ask(t, n, "c", "GET x"), "ERR no quorum", "GET via the cut c")
	want(t, ask(t, n, "a", "PUT x 3"), "OK", "PUT via a, in the majority")
	want(t, ask(t, n, "b", "GET x"), "VALUE 3", "GET via b")

	if err := n.Heal(); err != nil {
		t.Fatal(err)
	}
	want(t, ask(t, n, "c", "GET x"), "VALUE 3", "GET via c after healing")
}

// TestReplicaCrash: with one replica stopped the others still have a
// majority; restarted empty, it serves the majority's value.
func TestReplicaCrash(t *testing.T) {
	if exec.Command("unshare", "-Urn", "true").Run() != nil {
		t.Skip("skipped: needs unprivileged user namespaces")
	}
	t.Parallel()
	n := cluster(t)
	want(t, ask(t, n, "a", "PUT k before"), "OK", "PUT via a")
	if err := n.Node("b").Stop(); err != nil {
		t.Fatal(err)
	}
	want(t, ask(t, n, "c", "PUT k during"), "OK", "PUT via c with b stopped")
	if err := n.Node("a").Stop(); err != nil {
		t.Fatal(err)
	}
	want(t, ask(t, n, "c", "GET k"), "ERR no quorum", "GET via c alone")
	for _, r := range []string{"a", "b"} {
		if err := n.Node(r).Start(); err != nil {
			t.Fatal(err)
		}
	}
	// Start waited for each one's ready port. The restarted replicas lost
	// their memory; the quorum did not.
	want(t, ask(t, n, "b", "GET k"), "VALUE during", "GET via the restarted b")
}
