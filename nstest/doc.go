// Package nstest gives each Go test a network of its own: the nodes of an
// nsrun.yaml, each in its own network namespace with a fixed address,
// started by nsrun as an unprivileged user, with no root, no helper and no
// separate binary: importing the package is enough.
//
//	func TestReplicas(t *testing.T) {
//		t.Parallel()
//		n := nstest.Start(t, `
//	nodes:
//	  e1: {ip: 172.18.0.21, command: [etcd, ...], ready: "tcp:2379"}
//	  e2: {ip: 172.18.0.22, command: [etcd, ...], ready: "tcp:2379"}
//	`)
//		conn, err := n.Node("e1").DialContext(ctx, "tcp", "e2:2379") // a socket made inside e1
//		ln, err := n.Node("e2").Listen("tcp", ":9000")                // the test serves from inside e2
//		out, err := n.Node("e1").Exec(ctx, "etcdctl", "put", "k", "v")
//		err = n.Isolate("e2")                                        // and Disjoint, Split, Drop, Halves, ...
//		err = n.Heal()
//	}
//
// Start waits until every node is up (its `ready` check), and stops the
// network when the test ends. Tests that call t.Parallel each get a run of
// their own, on the same addresses, that never see each other.
//
// # Sockets inside nodes
//
// Node.DialContext, Listen and ListenPacket return ordinary net.Conn,
// net.Listener and net.PacketConn of the test process, whose sockets belong
// to the node's network namespace: the run's supervisor creates each
// socket inside the node and passes it to the test over the run's control
// socket (SCM_RIGHTS), and package net then binds or connects it as usual
// (the swap happens in net.Dialer's Control hook, before the bind or
// connect). Traffic therefore leaves from the node's address and is cut by
// partitions like the node's own. Names in addresses are the run's node
// names and hostnames. A dial costs one round trip to the supervisor on a
// unix socket on top of the connect. Anything that takes a dial function
// can speak as a node, an HTTP client for one:
//
//	client := &http.Client{Transport: &http.Transport{DialContext: n.Node("a").DialContext}}
//
// # How the test binary runs the network
//
// The test binary itself is nsrun: Start runs it again (os.Executable) as
// `nsrun up -f FILE`, with NSRUN_AS_NSRUN=1 in its environment. Its C
// constructor (package userns/launch, runc's nsenter pattern) then creates
// the run's user, pid and mount namespaces before the Go runtime starts,
// and this package's init function starts the run as `nsrun up` does
// (nsrun's internal/start) before any test or other init function of the
// importing package runs. Start chooses the run's id and follows the run's
// events from its start (Net.Events): every node up, nodes that exit; the
// verbs go to the run's control socket as typed calls, as nsrun's own do. Without that variable the test binary is a test binary:
// the launcher stays out of the way. So it does in a binary started
// setuid, setgid or with file capabilities (AT_SECURE), whose environment
// is its caller's.
//
// The process Start runs (the launcher) has the test binary's thread as
// its parent with a parent-death signal of SIGKILL; the run's supervisor
// ends the run when the launcher dies. So when the test binary dies, even
// by SIGKILL or go test's -timeout, every process of the network ends, its
// namespaces and links vanish with them, and its state folder is removed.
//
// # Output and failures
//
// Each node's output goes to the test's log, prefixed with the node's name
// (the first LogLines lines; the rest to a file, named in the log and kept
// when the test fails). A node whose command exits with a code other than
// 0 while the test runs, without the test asking for it (Node.Stop), fails
// the test naming the node and the code; OnExit changes that. A network
// that cannot start fails the test with nsrun's message, with the file,
// line and column of an error in the YAML and the test line that called
// Start.
//
// Topology writes the network in Go rather than YAML.
//
// New is Start outside a test (TestMain, to share one network between the
// tests of a package; benchmarks; programs), stopped by Close.
//
// With nsrun-helper installed (see nsrun's docs/helper.md), networks get their
// uplink to the host, unless Isolated.
package nstest
