package nstest_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/nsrun/nsrun/nstest"
)

// A test listens inside one node and dials it from another, by name.
// (In a test, write nstest.Start(t, ...) instead of New and Close.)
func Example() {
	n, err := nstest.New(`
nodes:
  server: {ip: 172.18.0.2}
  client: {ip: 172.18.0.3}
`)
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()

	l, err := n.Node("server").Listen("tcp", ":8080")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(c, "hello %s\n", c.RemoteAddr().(*net.TCPAddr).IP)
	}()

	c, err := n.Node("client").Dial("tcp", "server:8080")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	line, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Print(line)
	// Output: hello 172.18.0.3
}

// Isolating a node cuts its connections until the network heals.
func ExampleNet_Isolate() {
	n, err := nstest.New(`
nodes:
  a: {ip: 172.18.0.2}
  b: {ip: 172.18.0.3}
`)
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()
	l, _ := n.Node("b").Listen("tcp", ":7000")
	defer l.Close()

	if err := n.Isolate("b"); err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = n.Node("a").DialContext(ctx, "tcp", "b:7000")
	fmt.Println("while isolated:", err != nil)

	if err := n.Heal(); err != nil {
		log.Fatal(err)
	}
	c, err := n.Node("a").Dial("tcp", "b:7000")
	fmt.Println("healed:", err == nil)
	if c != nil {
		c.Close()
	}
	st, _ := n.Show()
	fmt.Println("state:", st.Verb)
	// Output:
	// while isolated: true
	// healed: true
	// state: fullmesh
}

// Exec runs a command in a node's namespaces; its exit code comes back as
// an *ExitError.
func ExampleNode_Exec() {
	n, err := nstest.New(`
nodes:
  db: {ip: 172.18.0.5}
`)
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()
	out, err := n.Node("db").Exec(context.Background(), "sh", "-c", "hostname; exit 3")
	fmt.Printf("%s%v\n", out, err)
	// Output:
	// db
	// nstest: sh -c hostname; exit 3 in node db: exit code 3
}
