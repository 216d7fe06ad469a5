package nstest_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/runstate"
	"github.com/nsrun/nsrun/nstest"
)

const three = `
nodes:
  a: {ip: 172.18.0.11}
  b: {ip: 172.18.0.12}
  c: {ip: 172.18.0.13, hostname: sea}
`

// needUserNS skips (or, with CI=true, fails) where this user cannot create
// user namespaces, which every network needs.
func needUserNS(t testing.TB) {
	t.Helper()
	if err := userNSErr(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot run in CI: unprivileged user namespaces are unavailable: %v", err)
		}
		t.Skipf("skipped: unprivileged user namespaces are unavailable: %v", err)
	}
}

// userNSErr starts `true` in a new user namespace, once per test binary.
// A user namespace alone says enough (its root may make network
// namespaces) and costs no network namespace: the kernel tears one down
// asynchronously, holding RTNL for part of it, and the first network of
// the test would wait for that (as BenchmarkStartDialClose did, behind
// `unshare -Urn true`).
var userNSErr = sync.OnceValue(func() error {
	cmd := exec.Command("true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
	return cmd.Run()
})

// echo serves l: every line comes back prefixed with the server's name
// and the client's address.
func echo(l net.Listener, name string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				ip, _, _ := net.SplitHostPort(c.RemoteAddr().String())
				fmt.Fprintf(c, "%s %s %s\n", name, ip, sc.Text())
			}
		}()
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// roundTrip sends line on c and reads the answer, within d.
func roundTrip(c net.Conn, r *bufio.Reader, line string, d time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(d))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintln(c, line); err != nil {
		return "", err
	}
	return r.ReadString('\n')
}

// TestDialListenByName: the test listens inside c and dials from a, by
// node name and by hostname; the server sees a's address. UDP too.
func TestDialListenByName(t *testing.T) {
	needUserNS(t)
	t.Parallel()
	n := nstest.Start(t, three)
	if got := n.Node("c").Addr().String(); got != "172.18.0.13" {
		t.Errorf("c.Addr() = %s", got)
	}
	l, err := n.Node("c").Listen("tcp", ":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go echo(l, "c")
	for _, target := range []string{"c:9000", "sea:9000", "172.18.0.13:9000"} {
		conn, err := n.Node("a").DialContext(ctxFor(t, 10*time.Second), "tcp", target)
		if err != nil {
			t.Fatal(err)
		}
		if got := conn.RemoteAddr().String(); got != "172.18.0.13:9000" {
			t.Errorf("%s: remote address %s, want 172.18.0.13:9000", target, got)
		}
		line, err := roundTrip(conn, bufio.NewReader(conn), "hello", 5*time.Second)
		conn.Close()
		if want := "c 172.18.0.11 hello\n"; err != nil || line != want {
			t.Errorf("%s: got %q (%v), want %q", target, line, err, want)
		}
	}
	// The listener is in c's network namespace only: c's loopback has
	// it, b's does not.
	if c, err := n.Node("c").Dial("tcp", "127.0.0.1:9000"); err != nil {
		t.Errorf("c's own loopback: %v", err)
	} else {
		c.Close()
	}
	if c, err := n.Node("b").Dial("tcp", "127.0.0.1:9000"); err == nil {
		c.Close()
		t.Error("the listener in c is on b's loopback too")
	}
	if _, err := n.Node("a").Dial("tcp", "nosuch:80"); err == nil || !strings.Contains(err.Error(), `no node or hostname "nosuch"`) {
		t.Errorf("dial to an unknown name: %v", err)
	}

	pc, err := n.Node("b").ListenPacket("udp", ":5353")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	uc, err := n.Node("a").Dial("udp", "b:5353")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if _, err := uc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	nr, from, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:nr]) != "ping" || !strings.HasPrefix(from.String(), "172.18.0.11:") {
		t.Errorf("udp: got %q from %v (%v)", buf[:nr], from, err)
	}
}

// TestIsolateStallsThenHeals: a connection dialled from a node stalls
// while that node is isolated, and carries on once healed.
func TestIsolateStallsThenHeals(t *testing.T) {
	needUserNS(t)
	t.Parallel()
	n := nstest.Start(t, three)
	l, err := n.Node("b").Listen("tcp", ":7000")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go echo(l, "b")
	conn, err := n.Node("a").DialContext(ctxFor(t, 10*time.Second), "tcp", "b:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	if line, err := roundTrip(conn, r, "before", 5*time.Second); err != nil || line != "b 172.18.0.11 before\n" {
		t.Fatalf("before the cut: %q %v", line, err)
	}
	if err := n.Isolate("a"); err != nil {
		t.Fatal(err)
	}
	st, err := n.Show()
	if err != nil {
		t.Fatal(err)
	}
	if st.Verb != "isolate" || !contains(st.Blocked, [2]string{"a", "b"}) || !contains(st.Blocked, [2]string{"b", "a"}) {
		t.Errorf("Show after Isolate(a): %+v", st)
	}
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprintln(conn, "during")
	if line, err := r.ReadString('\n'); !isTimeout(err) {
		t.Fatalf("while a is isolated the connection answered: %q %v", line, err)
	}
	// A new connection cannot be made either.
	if c, err := n.Node("a").DialContext(ctxFor(t, 500*time.Millisecond), "tcp", "b:7000"); err == nil {
		c.Close()
		t.Error("dialled b from an isolated a")
	}
	if err := n.Heal(); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	line, err := r.ReadString('\n')
	if err != nil || line != "b 172.18.0.11 during\n" {
		t.Fatalf("after healing: %q %v", line, err)
	}
	if st, err := n.Show(); err != nil || st.Verb != "fullmesh" || len(st.Blocked) != 0 {
		t.Errorf("Show after Heal: %+v %v", st, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func contains(pairs [][2]string, p [2]string) bool {
	for _, q := range pairs {
		if q == p {
			return true
		}
	}
	return false
}

// TestPartitionShapes: Drop, Disjoint, Split and Flaky are applied and
// shown; bad specs are refused with nsrun's message.
func TestPartitionShapes(t *testing.T) {
	needUserNS(t)
	t.Parallel()
	n := nstest.Start(t, three)
	pc, err := n.Node("b").ListenPacket("udp", ":6000")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := n.Drop("a", "b"); err != nil {
		t.Fatal(err)
	}
	uc, err := n.Node("a").Dial("udp", "b:6000")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	_, _ = uc.Write([]byte("dropped"))
	_ = pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, _, err := pc.ReadFrom(make([]byte, 64)); !isTimeout(err) {
		t.Errorf("a datagram crossed drop a b: %v", err)
	}
	if err := n.Disjoint([]string{"a"}, []string{"b", "c"}); err != nil {
		t.Fatal(err)
	}
	if st, _ := n.Show(); st.Verb != "disjoint" || !contains(st.Blocked, [2]string{"c", "a"}) || contains(st.Blocked, [2]string{"b", "c"}) {
		t.Errorf("Show after Disjoint: %+v", st)
	}
	if err := n.Split([]string{"a", "b"}, []string{"b", "c"}); err != nil {
		t.Fatal(err)
	}
	if st, _ := n.Show(); st.Verb != "split" || !contains(st.Blocked, [2]string{"a", "c"}) || contains(st.Blocked, [2]string{"a", "b"}) {
		t.Errorf("Show after Split: %+v", st)
	}
	if err := n.Halves(7); err != nil {
		t.Fatal(err)
	}
	if err := n.Disjoint([]string{"a"}, []string{"b"}); err == nil || !strings.Contains(err.Error(), "c") {
		t.Errorf("Disjoint without c: %v", err)
	}
	if err := n.Isolate("zz"); err == nil || !strings.Contains(err.Error(), "zz") {
		t.Errorf("Isolate(zz): %v", err)
	}
	if err := n.Flaky("c", nstest.Loss(0.25), nstest.Rate(2_000_000)); err != nil {
		t.Fatal(err)
	}
	st, err := n.Show()
	if err != nil {
		t.Fatal(err)
	}
	if f := st.Faults["c"]; f.Loss != 0.25 || f.Rate != 2_000_000 {
		t.Errorf("Show after Flaky: %+v", st.Faults)
	}
	// Delay is nsrun's link engine's, on every kernel.
	if err := n.Flaky("c", nstest.Delay(50*time.Millisecond), nstest.Jitter(5*time.Millisecond), nstest.Duplicate(0.01)); err != nil {
		t.Errorf("Flaky Delay: %v", err)
	} else if st, _ := n.Show(); st.Faults["c"].Delay != 50*time.Millisecond || st.Faults["c"].Jitter != 5*time.Millisecond {
		t.Errorf("Show after Flaky Delay: %+v", st.Faults)
	}
	// A latency between a and b, each way: a's handshake with b waits
	// for both directions; cleared, it does not.
	if err := n.Heal(); err != nil { // (Halves above may have cut a from b)
		t.Fatal(err)
	}
	l, err := n.Node("b").Listen("tcp", ":6001")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	handshake := func() time.Duration {
		t.Helper()
		start := time.Now()
		c, err := n.Node("a").Dial("tcp", "b:6001")
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		return time.Since(start)
	}
	if err := n.Latency("a", "b", 20*time.Millisecond, nstest.LatencyJitter(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	handshake() // (ARP)
	if d := handshake(); d < 38*time.Millisecond {
		t.Errorf("handshake a -> b with 20ms each way took %s, want 40ms", d)
	}
	if err := n.ClearLatency(); err != nil {
		t.Fatal(err)
	}
	handshake()
	if d := handshake(); d > 20*time.Millisecond {
		t.Errorf("handshake a -> b after ClearLatency took %s", d)
	}
	if err := n.Flaky("c"); err != nil {
		t.Fatal(err)
	}
	if st, _ := n.Show(); len(st.Faults) != 0 {
		t.Errorf("faults after clearing: %+v", st.Faults)
	}
}

// TestExec: exit codes, output, stdin, the node's hostname and address,
// and a context that kills the command.
func TestExec(t *testing.T) {
	needUserNS(t)
	t.Parallel()
	n := nstest.Start(t, three)
	c := n.Node("c")
	out, err := c.Exec(ctxFor(t, 10*time.Second), "sh", "-c", "hostname; echo to-stderr >&2; exit 3")
	var ee *nstest.ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || ee.Node != "c" {
		t.Errorf("exit 3: err %v", err)
	}
	if got := string(out); got != "sea\nto-stderr\n" {
		t.Errorf("output %q", got)
	}
	out, err = c.Exec(ctxFor(t, 10*time.Second), "cat", "/etc/hosts")
	if err != nil || !strings.Contains(string(out), "172.18.0.13\tsea c") {
		t.Errorf("the run's hosts file in the node: %q %v", out, err)
	}
	if _, err := c.Exec(ctxFor(t, 10*time.Second), "no-such-command-here"); err == nil || !strings.Contains(err.Error(), "no-such-command-here") {
		t.Errorf("a missing command: %v", err)
	}
	root := c.Command(ctxFor(t, 10*time.Second), "sh", "-c", "grep CapEff /proc/self/status")
	root.Root = true
	if out, err := root.Output(); err != nil || strings.Contains(string(out), "0000000000000000") {
		t.Errorf("Root: %q %v", out, err)
	}
	cmd := c.Command(ctxFor(t, 10*time.Second), "sh", "-c", "read x; echo got $x; exit 0")
	cmd.Stdin = strings.NewReader("line\n")
	if out, err := cmd.Output(); err != nil || string(out) != "got line\n" {
		t.Errorf("stdin: %q %v", out, err)
	}
	pipe := c.Command(ctxFor(t, 10*time.Second), "cat")
	w, _ := pipe.StdinPipe()
	r, _ := pipe.StdoutPipe()
	if err := pipe.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(w, "through")
	w.Close()
	if line, err := bufio.NewReader(r).ReadString('\n'); err != nil || line != "through\n" {
		t.Errorf("StdinPipe/StdoutPipe: %q %v", line, err)
	}
	if err := pipe.Wait(); err != nil {
		t.Errorf("cat: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sleep := c.Command(ctx, "sleep", "100")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cancel()
	err = sleep.Wait()
	if err == nil || sleep.ExitCode() != 128+int(syscall.SIGKILL) || time.Since(start) > 5*time.Second {
		t.Errorf("cancelled sleep: %v, code %d after %s", err, sleep.ExitCode(), time.Since(start))
	}
}

// TestStopStartKeepsAddress: a node's server stopped and started again
// answers at the same address; its exit is not reported as a failure;
// paused, it does not answer until resumed.
func TestStopStartKeepsAddress(t *testing.T) {
	needUserNS(t)
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("cannot run in CI: python3 is not installed")
		}
		t.Skip("skipped: needs python3")
	}
	t.Parallel()
	n := nstest.Start(t, `
nodes:
  web: {ip: 172.18.0.30, command: python3 -m http.server 8000, ready: "tcp:8000"}
  client: {ip: 172.18.0.31}
`)
	get := func(d time.Duration) error {
		c, err := n.Node("client").DialContext(ctxFor(t, d), "tcp", "web:8000")
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(d))
		fmt.Fprint(c, "GET / HTTP/1.0\r\n\r\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil && !strings.HasPrefix(line, "HTTP/1.0 200") {
			err = fmt.Errorf("answer %q", line)
		}
		return err
	}
	if err := get(5 * time.Second); err != nil {
		t.Fatalf("before stop: %v", err)
	}
	if err := n.Node("web").Stop(); err != nil {
		t.Fatal(err)
	}
	if err := get(time.Second); err == nil {
		t.Error("web answers while stopped")
	}
	if err := n.Node("web").Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for get(time.Second) != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := get(5 * time.Second); err != nil {
		t.Fatalf("after start: %v", err)
	}
	if out, err := n.Node("web").Exec(ctxFor(t, 10*time.Second), "cat", "/proc/net/fib_trie"); err != nil || !strings.Contains(string(out), "172.18.0.30") {
		t.Errorf("web's address after start: %v\n%s", err, out)
	}
	if err := n.Node("web").Pause(); err != nil {
		t.Fatal(err)
	}
	if err := get(500 * time.Millisecond); err == nil {
		t.Error("a paused web answered")
	}
	if err := n.Node("web").Resume(); err != nil {
		t.Fatal(err)
	}
	if err := get(5 * time.Second); err != nil {
		t.Errorf("after resume: %v", err)
	}
	if err := n.Node("web").Restart(); err != nil {
		t.Fatal(err)
	}
	// Every verb's event is there when the verb returns: web's life in
	// order, from its first start to its restart.
	evs, err := n.Events()
	if err != nil {
		t.Fatal(err)
	}
	var web []string
	for _, e := range evs {
		if e.Node == "web" {
			web = append(web, string(e.Kind))
		}
		if e.Seq == 0 || e.Time.IsZero() {
			t.Errorf("event without its stamps: %+v", e)
		}
	}
	want := "node-started node-ready node-exited node-stopped node-started node-paused node-resumed node-exited node-started"
	if strings.Join(web, " ") != want {
		t.Errorf("web's events: %s\nwant: %s", strings.Join(web, " "), want)
	}
}

// TestNodeExitReported: a node that exits on its own is reported with its
// name and code.
func TestNodeExitReported(t *testing.T) {
	needUserNS(t)
	t.Parallel()
	type exit struct {
		node string
		code int
	}
	exits := make(chan exit, 4)
	nstest.Start(t, `
nodes:
  crash: {ip: 172.18.0.40, command: "sh -c 'echo going; sleep 0.2; exit 7'"}
  idle: {ip: 172.18.0.41}
`, nstest.OnExit(func(node string, code int) { exits <- exit{node, code} }))
	select {
	case e := <-exits:
		if e != (exit{"crash", 7}) {
			t.Errorf("exit reported: %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Error("the node's exit was not reported")
	}
	// Without OnExit, the test fails naming the node and code.
	rec := &recorder{TB: t}
	rec.wg.Add(1)
	go func() {
		defer rec.wg.Done()
		nstest.Start(rec, `
nodes:
  crash: {ip: 172.18.0.42, command: "sh -c 'sleep 0.2; exit 9'"}
  idle: {ip: 172.18.0.43}
`)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && !strings.Contains(rec.errors(), "exited") {
			time.Sleep(20 * time.Millisecond)
		}
	}()
	rec.wg.Wait()
	if got := rec.errors(); !strings.Contains(got, "node crash exited with code 9") {
		t.Errorf("reported: %q", got)
	}
}

// recorder is a test that records its errors and fatal messages instead of
// failing (Fatal ends the goroutine, as it does a test).
type recorder struct {
	testing.TB
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []string
	logs []string
}

func (r *recorder) Log(args ...any) {
	r.mu.Lock()
	r.logs = append(r.logs, fmt.Sprint(args...))
	r.mu.Unlock()
	r.TB.Log(args...)
}

func (r *recorder) Logf(format string, args ...any) { r.Log(fmt.Sprintf(format, args...)) }

func (r *recorder) logged() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.logs...)
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatal(args ...any) {
	r.Errorf("%s", fmt.Sprint(args...))
	runtime.Goexit()
}

func (r *recorder) Failed() bool { return r.errors() != "" }

func (r *recorder) errors() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errs, "\n")
}

// TestNodeOutput: node output reaches the test's log prefixed by node, up
// to LogLines lines; then all of it goes to a file, named in the log.
func TestNodeOutput(t *testing.T) {
	needUserNS(t)
	t.Parallel()
	rec := &recorder{TB: t}
	nstest.Start(rec, `
nodes:
  talk: {ip: 172.18.0.60, command: "sh -c 'for i in 1 2 3 4 5; do echo line $$i; done; echo oops >&2; exec sleep 1000'"}
`, nstest.LogLines(4)) // nsrun's "talk started" and "every node is up", then talk's
	var file string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && file == "" {
		for _, l := range rec.logged() {
			if _, f, ok := strings.Cut(l, "all of it goes to "); ok {
				file = f
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	logs := strings.Join(rec.logged(), "\n")
	if file == "" {
		t.Fatalf("no file named in the log:\n%s", logs)
	}
	for _, want := range []string{"talk | line 1", "talk | line 2"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "talk | line 5") {
		t.Errorf("the log took more than 4 lines:\n%s", logs)
	}
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(file); strings.Contains(string(b), "talk | oops") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, err := os.ReadFile(file)
	for _, want := range []string{"talk | line 1", "talk | line 5", "talk | oops"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q (%v):\n%s", file, want, err, b)
		}
	}
}

// TestCapture: Capture writes a pcap file per node, whole once the network
// has stopped.
func TestCapture(t *testing.T) {
	needUserNS(t)
	if _, err := exec.LookPath("nsrun-capture"); err != nil {
		if msg := fatal(t, three, nstest.Capture(t.TempDir())); !strings.Contains(msg, "go install github.com/nsrun/nsrun/cmd/nsrun-capture") {
			t.Errorf("Capture without nsrun-capture: %q", msg)
		}
		if os.Getenv("CI") == "true" {
			t.Fatal("cannot run in CI: nsrun-capture is not on PATH")
		}
		t.Skip("skipped: Capture needs nsrun-capture on PATH")
	}
	t.Parallel()
	dir := t.TempDir()
	n, err := nstest.New(three, nstest.Capture(dir))
	if err != nil {
		t.Fatal(err)
	}
	l, err := n.Node("b").Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	go echo(l, "b")
	c, err := n.Node("a").Dial("tcp", "b:80")
	if err != nil {
		t.Fatal(err)
	}
	if line, err := roundTrip(c, bufio.NewReader(c), "captured", 5*time.Second); err != nil {
		t.Fatalf("%q %v", line, err)
	}
	c.Close()
	l.Close()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"a", "b"} {
		b, err := os.ReadFile(filepath.Join(dir, node+".pcap"))
		if err != nil || len(b) < 24+16 || !strings.Contains(string(b), "captured") {
			t.Errorf("%s.pcap: %d bytes, %v", node, len(b), err)
		}
	}
}

// fatal runs Start with a recorder and returns what it failed with.
func fatal(t *testing.T, yaml string, opts ...nstest.Option) string {
	msg, _ := fatalAt(t, yaml, opts...)
	return msg
}

// fatalAt is fatal, also returning the line that called Start.
func fatalAt(t *testing.T, yaml string, opts ...nstest.Option) (msg string, line int) {
	rec := &recorder{TB: t}
	rec.wg.Add(1)
	go func() {
		defer rec.wg.Done()
		_, _, line, _ = runtime.Caller(0)
		nstest.Start(rec, yaml, opts...)
		rec.Errorf("Start returned")
	}()
	rec.wg.Wait()
	return rec.errors(), line + 1
}

// TestBadYAMLFails: a bad file fails the test with the file position of
// the error and the test line that started it; a node that cannot start
// fails it with nsrun's message.
func TestBadYAMLFails(t *testing.T) {
	msg, line := fatalAt(t, "nodes:\n  a:\n    ip: 172.18.0.300\n")
	for _, want := range []string{"nsrun.yaml:3:9", "nodes.a.ip", fmt.Sprintf("(nstest_test.go:%d)", line)} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if msg := fatal(t, "nodes:\n  a: {ip: 172.18.0.1, comand: true}\n"); !strings.Contains(msg, "nsrun.yaml:2:") || !strings.Contains(msg, "comand") {
		t.Errorf("unknown key: %q", msg)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "cluster.yaml")
	_ = os.WriteFile(path, []byte("nodes:\n  a: {ip: 172.18.0.1}\n  b: {ip: 172.18.0.1}\n"), 0o644)
	if msg := fatal(t, "", nstest.File(path)); !strings.Contains(msg, "cluster.yaml:3:") || !strings.Contains(msg, "already node a's address") {
		t.Errorf("duplicate address in a file: %q", msg)
	}
	needUserNS(t)
	if msg := fatal(t, "nodes:\n  a: {ip: 172.18.0.1, command: no-such-program-anywhere}\n"); !strings.Contains(msg, "no-such-program-anywhere") {
		t.Errorf("missing program: %q", msg)
	}
}

// TestParallelNetworks: 20 tests at once, each with a network of 3 nodes
// on the same addresses, never see each other.
func TestParallelNetworks(t *testing.T) {
	needUserNS(t)
	for i := range 20 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			n := nstest.Start(t, three)
			l, err := n.Node("c").Listen("tcp", ":9000")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go echo(l, fmt.Sprint("c", i))
			start := time.Now()
			conn, err := n.Node("a").DialContext(ctxFor(t, 20*time.Second), "tcp", "c:9000")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// A lost first ARP request or SYN is retried after a second:
			// a link that was not yet up when Start returned.
			if d := time.Since(start); d > 900*time.Millisecond {
				t.Errorf("the first dial after Start took %s", d)
			}
			line, err := roundTrip(conn, bufio.NewReader(conn), "hi", 10*time.Second)
			if want := fmt.Sprintf("c%d 172.18.0.11 hi\n", i); err != nil || line != want {
				t.Errorf("got %q (%v), want %q", line, err, want)
			}
			if err := n.Isolate("c"); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestKilledTestLeavesNothing runs this test binary again, as a test that
// starts a network and waits; that binary killed mid-test, by SIGKILL or by
// its -test.timeout running out, must leave no process, no mount and no
// run folder of the network.
func TestKilledTestLeavesNothing(t *testing.T) {
	if os.Getenv("NSTEST_VICTIM") != "" {
		victim(t)
		return
	}
	needUserNS(t)
	t.Parallel()
	for _, how := range []string{"SIGKILL", "timeout"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			killedTest(t, how == "timeout")
		})
	}
}

// victimTimeout is the victim's -test.timeout in the timeout case.
const victimTimeout = 15 * time.Second

func killedTest(t *testing.T, timeout bool) {
	marker := fmt.Sprintf("%d", 500000+time.Now().UnixNano()%100000)
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-test.run", "^TestKilledTestLeavesNothing$", "-test.v")
	if timeout {
		// The timeout counts from the victim binary's start, its
		// network's start included: on a busy machine (this test runs
		// beside TestParallelNetworks' 20 networks) that took more than
		// 3 s. It must run out after the network is up, whatever the
		// load, so it is longer than any start the other checks allow.
		cmd.Args = append(cmd.Args, fmt.Sprintf("-test.timeout=%s", victimTimeout))
	}
	cmd.Env = append(os.Environ(), "NSTEST_VICTIM="+marker)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var runID string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if up, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "victim up: "); ok {
			var tmp string
			runID, tmp, _ = strings.Cut(up, " ")
			// The victim's temporary folders: killed, it cannot remove them.
			if strings.HasPrefix(tmp, filepath.Join(os.TempDir(), "TestKilledTestLeavesNothing")) {
				t.Cleanup(func() { os.RemoveAll(tmp) })
			}
			break
		}
	}
	if runID == "" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("the victim test did not start its network")
	}
	runDir := filepath.Join(runstate.RunsDir(runtimeDir(t)), runID)
	if !exists(runDir) {
		t.Errorf("no run folder %s while the victim runs", runDir)
	}
	if p := processes(marker); len(p) != 3 {
		t.Errorf("want the victim's nodes' sh and two sleeps, found %v", psArgs(p))
	}
	go func() { _, _ = bufioDrain(sc) }()
	if !timeout {
		_ = cmd.Process.Signal(syscall.SIGKILL)
	}
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(victimTimeout + 10*time.Second):
		_ = cmd.Process.Kill()
		<-waited
		t.Fatal("the victim test binary did not end")
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && (len(processes(marker)) > 0 || exists(runDir)) {
		time.Sleep(50 * time.Millisecond)
	}
	if p := processes(marker); len(p) > 0 {
		t.Errorf("node processes survived the test binary: %v", psArgs(p))
	}
	for _, pid := range processes(" up -f ") {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); strings.Contains(string(b), "NSTEST_VICTIM="+marker) {
			t.Errorf("the victim's launcher or supervisor survived: pid %d", pid)
		}
	}
	if exists(runDir) {
		t.Errorf("the run folder %s survived", runDir)
	}
	if b, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(b), runID) {
		t.Errorf("mounts mention the run:\n%s", b)
	}
}

func runtimeDir(t *testing.T) string {
	rt, err := runstate.RuntimeDir(os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func bufioDrain(sc *bufio.Scanner) (int, error) {
	n := 0
	for sc.Scan() {
		n++
	}
	return n, sc.Err()
}

// victim is the test TestKilledTestLeavesNothing kills.
func victim(t *testing.T) {
	marker := os.Getenv("NSTEST_VICTIM")
	n := nstest.Start(t, `
nodes:
  a: {ip: 172.18.0.50, command: "sleep `+marker+`"}
  b: {ip: 172.18.0.51, command: "sh -c 'sleep `+marker+`; true'"}
`)
	for len(processes(marker)) < 3 {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("victim up:", n.RunID(), filepath.Dir(t.TempDir()))
	time.Sleep(time.Minute)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// processes lists this user's live processes whose command line contains s.
func processes(s string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil || pid == os.Getpid() {
			continue
		}
		st, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		if f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:])); len(f) == 0 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func psArgs(pids []int) []string {
	var out []string
	for _, p := range pids {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		out = append(out, strings.ReplaceAll(string(b), "\x00", " "))
	}
	return out
}

// TestTopologyBuilder: a network written in Go starts as its YAML would,
// and its mistakes are nsrun's, naming the field.
func TestTopologyBuilder(t *testing.T) {
	needUserNS(t)
	t.Parallel()
	n := nstest.Start(t, nstest.Topology{Nodes: []nstest.NodeSpec{
		{Name: "srv", IP: "172.18.0.70", Hostname: "server", Command: []string{"sh", "-c", "echo up; exec sleep 1000"}},
		{Name: "cli", IP: "172.18.0.71", DependsOn: []string{"srv"}, Control: true},
	}}.YAML())
	// Only the control node has the run's control socket.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := n.Node("cli").Exec(ctx, "sh", "-c", `test -S "$NSRUN_CONTROL" && echo control`); err != nil || strings.TrimSpace(string(out)) != "control" {
		t.Errorf("cli (control: true) has no control socket: %q %v", out, err)
	}
	if out, err := n.Node("srv").Exec(ctx, "sh", "-c", `test -z "$NSRUN_CONTROL" && echo none`); err != nil || strings.TrimSpace(string(out)) != "none" {
		t.Errorf("srv has NSRUN_CONTROL: %q %v", out, err)
	}
	if got := n.Node("srv").Addr().String(); got != "172.18.0.70" {
		t.Errorf("srv.Addr() = %s", got)
	}
	l, err := n.Node("srv").Listen("tcp", ":1234")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go echo(l, "srv")
	c, err := n.Node("cli").Dial("tcp", "server:1234")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if line, err := roundTrip(c, bufio.NewReader(c), "built", 5*time.Second); err != nil || line != "srv 172.18.0.71 built\n" {
		t.Errorf("%q %v", line, err)
	}
	bad := nstest.Topology{Nodes: []nstest.NodeSpec{{Name: "x", IP: "10.0.0.1"}}}.YAML()
	if msg := fatal(t, bad); !strings.Contains(msg, "nodes.x.ip") {
		t.Errorf("an address outside the subnet: %q", msg)
	}
}

// TestUplink: with nsrun-helper installed, a node reaches the host through
// the run's uplink, and an Isolated network does not. The server is
// started by test/nstest_test.go (NSTEST_HOST_SERVER), on the host's nsrun
// address.
func TestUplink(t *testing.T) {
	server := os.Getenv("NSTEST_HOST_SERVER")
	if server == "" {
		t.Skip("skipped: needs nsrun-helper installed and a server on the host (run by test/nstest_test.go)")
	}
	t.Parallel()
	n := nstest.Start(t, three)
	c, err := n.Node("a").DialContext(ctxFor(t, 5*time.Second), "tcp", server)
	if err != nil {
		t.Fatalf("node a to the host's %s: %v", server, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line == "" {
		t.Errorf("the host's server said %q (%v)", line, err)
	}
	// Cut with the uplink, a can reach neither; healed, it can again.
	n.CutUplink(true)
	if err := n.Isolate("a"); err != nil {
		t.Fatal(err)
	}
	if c, err := n.Node("a").DialContext(ctxFor(t, 500*time.Millisecond), "tcp", server); err == nil {
		c.Close()
		t.Error("node a reached the host while isolated with its uplink")
	}
	if c, err := n.Node("b").DialContext(ctxFor(t, 5*time.Second), "tcp", server); err != nil {
		t.Errorf("node b, not cut, to the host: %v", err)
	} else {
		c.Close()
	}
	if st, err := n.Show(); err != nil || len(st.UplinkCut) != 1 || st.UplinkCut[0] != "a" {
		t.Errorf("Show: uplink cut %v (%v)", st.UplinkCut, err)
	}
	if err := n.Heal(); err != nil {
		t.Fatal(err)
	}
	if c, err := n.Node("a").DialContext(ctxFor(t, 5*time.Second), "tcp", server); err != nil {
		t.Errorf("node a to the host after Heal: %v", err)
	} else {
		c.Close()
	}
	iso := nstest.Start(t, three, nstest.Isolated())
	if c, err := iso.Node("a").DialContext(ctxFor(t, 500*time.Millisecond), "tcp", server); err == nil {
		c.Close()
		t.Error("an Isolated network reached the host")
	}
}

// TestUnknownNode: Node of a name the network lacks fails the test naming
// the nodes it has; in a network made by New, the node's methods fail.
func TestUnknownNode(t *testing.T) {
	needUserNS(t)
	t.Parallel()
	rec := &recorder{TB: t}
	var names []string
	rec.wg.Add(1)
	go func() {
		defer rec.wg.Done()
		n := nstest.Start(rec, three)
		for _, nd := range n.Nodes() {
			names = append(names, nd.Name())
		}
		n.Node("zz")
		rec.Errorf("Node(zz) returned")
	}()
	rec.wg.Wait()
	if got := rec.errors(); !strings.Contains(got, `no node "zz"`) || !strings.Contains(got, "a, b, c") {
		t.Errorf("Node(zz): %q", got)
	}
	if strings.Join(names, " ") != "a b c" {
		t.Errorf("Nodes(): %v", names)
	}
	n, err := nstest.New(three)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := n.Node("zz").Exec(context.Background(), "true"); err == nil || !strings.Contains(err.Error(), `no node "zz"`) {
		t.Errorf("Exec in an unknown node of New's: %v", err)
	}
}

// TestHTTPAsNode: an HTTP client dials as node a and a server listens in
// node c, by name; the server sees a's address.
func TestHTTPAsNode(t *testing.T) {
	needUserNS(t)
	t.Parallel()
	n := nstest.Start(t, three)
	l, err := n.Node("c").Listen("tcp", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.RemoteAddr)
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DialContext: n.Node("a").DialContext}, Timeout: 10 * time.Second}
	resp, err := client.Get("http://c:8080/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.HasPrefix(string(body), "hello 172.18.0.11:") {
		t.Errorf("body %q", body)
	}
}
