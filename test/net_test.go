package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var fiveNodes = []string{"n1", "n2", "n3", "n4", "n5"}

// liveRun is a running `nsrun up` the tests act on.
type liveRun struct {
	u   testUser
	id  string
	rc  *runningCmd
	out *lineLog
}

func startRun(t *testing.T, u testUser, yaml, waitFor string, args ...string) *liveRun {
	t.Helper()
	return startRunWithin(t, u, yaml, waitFor, 10*time.Second, args...)
}

// startRunWithin is startRun allowing within for the run to show in
// nsrun ls after waitFor (a run of many nodes takes longer).
func startRunWithin(t *testing.T, u testUser, yaml, waitFor string, within time.Duration, args ...string) *liveRun {
	t.Helper()
	dir := project(t, map[string]string{"nsrun.yaml": yaml})
	type run struct {
		ID   string `json:"id"`
		File string `json:"file"`
	}
	list := func() []run {
		var runs []run
		_ = json.Unmarshal([]byte(nsrunOK(t, u, "ls", "--json")), &runs)
		return runs
	}
	// The run of an earlier test may still be ending: only a run that
	// was not there before is this one.
	before := map[string]bool{}
	for _, r := range list() {
		before[r.ID] = true
	}
	rc, out := startUp(t, u, dir, waitFor, append([]string{"--timeout", "2"}, args...)...)
	var id string
	eventually(within, func() bool {
		for _, r := range list() {
			if r.File == filepath.Join(dir, "nsrun.yaml") && !before[r.ID] {
				id = r.ID
			}
		}
		return id != ""
	})
	if id == "" {
		t.Fatalf("the run does not show in nsrun ls:\n%.3000s\n%s", out.all(), rc.stderr)
	}
	return &liveRun{u: u, id: id, rc: rc, out: out}
}

// startFive starts a run of fiveYAML (or a variant of it) and waits until
// every node's three listeners (tick, udp-listen, listen) are up: the
// nodes start in parallel, in no fixed order, so n5 listening says nothing
// of n1.
func startFive(t *testing.T, u testUser, yaml string) *liveRun {
	t.Helper()
	r := startRun(t, u, yaml, "n5    | listening")
	if !eventually(30*time.Second, func() bool {
		all := r.out.all()
		for _, n := range fiveNodes {
			if strings.Count(all, n+"    | listening") < 3 {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("not every node is listening:\n%s", r.out.all())
	}
	return r
}

// net runs `nsrun net VERB --run ID ARGS...` and returns its result.
func (r *liveRun) net(t *testing.T, verb string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return run(t, r.u.nsrun(ctx, append([]string{"net", verb, "--run", r.id}, args...)...))
}

func (r *liveRun) netOK(t *testing.T, verb string, args ...string) string {
	t.Helper()
	res := r.net(t, verb, args...)
	if res.Code != 0 {
		t.Fatalf("nsrun net %s %v: exit %d %s %s", verb, args, res.Code, res.Stdout, res.Stderr)
	}
	return res.Stdout
}

// exec runs CMD in node via net exec.
func (r *liveRun) exec(t *testing.T, node string, argv ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return run(t, r.u.nsrun(ctx, append([]string{"net", "exec", "--run", r.id, node, "--"}, argv...)...))
}

// matrix probes TCP from every node to every other node's port 9000, by
// name (IPv4).
func (r *liveRun) matrix(t *testing.T, nodes []string) map[[2]string]bool {
	t.Helper()
	return r.matrixVia(t, nodes, func(to string) string { return to + ":9000" })
}

// matrixVia probes TCP from every node to every other node at
// target(node), every node's scan at once, so that a matrix takes one
// dialTimeout however many nodes it has.
func (r *liveRun) matrixVia(t *testing.T, nodes []string, target func(node string) string) map[[2]string]bool {
	t.Helper()
	type scan struct {
		from      string
		byTarget  map[string]string
		out, errb bytes.Buffer
		err       error
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	scans := make([]*scan, len(nodes))
	var wg sync.WaitGroup
	for i, from := range nodes {
		s := &scan{from: from, byTarget: map[string]string{}}
		args := []string{"net", "exec", "--run", r.id, from, "--", "probe", "scan", dialTimeout}
		for _, to := range nodes {
			if to != from {
				args = append(args, target(to))
				s.byTarget[target(to)] = to
			}
		}
		scans[i] = s
		cmd := r.u.nsrun(ctx, args...)
		cmd.Stdout, cmd.Stderr = &s.out, &s.errb
		wg.Add(1)
		go func() { defer wg.Done(); s.err = cmd.Run() }()
	}
	wg.Wait()
	got := map[[2]string]bool{}
	for _, s := range scans {
		n := 0
		for _, line := range strings.Split(s.out.String(), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && s.byTarget[f[0]] != "" {
				got[[2]string{s.from, s.byTarget[f[0]]}] = f[1] == "ok"
				n++
			}
		}
		if s.err != nil || n != len(s.byTarget) {
			t.Fatalf("scan from %s: %v, %d of %d targets answered\n%s%s", s.from, s.err, n, len(s.byTarget), &s.out, &s.errb)
		}
	}
	return got
}

// linkLocal returns node's link-local address on eth0, as host:port for
// a dialler inside a node (zone eth0).
func (r *liveRun) linkLocal(t *testing.T, node string, port int) string {
	t.Helper()
	res := r.exec(t, node, "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link")
	f := strings.Fields(res.Stdout)
	for i, w := range f {
		if w == "inet6" && i+1 < len(f) {
			a, _, _ := strings.Cut(f[i+1], "/")
			return fmt.Sprintf("[%s%%eth0]:%d", a, port)
		}
	}
	t.Fatalf("%s has no link-local address: %s %s", node, res.Stdout, res.Stderr)
	return ""
}

// expectMatrix compares the probed matrix with allowed(from, to): a TCP
// connection needs both directions.
func expectMatrix(t *testing.T, what string, got map[[2]string]bool, nodes []string, allowed func(a, b string) bool) {
	t.Helper()
	var bad []string
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			want := allowed(a, b) && allowed(b, a)
			if got[[2]string{a, b}] != want {
				bad = append(bad, fmt.Sprintf("%s->%s got %v want %v", a, b, got[[2]string{a, b}], want))
			}
		}
	}
	if len(bad) > 0 {
		t.Errorf("%s: connectivity differs:\n  %s", what, strings.Join(bad, "\n  "))
	}
}

func in(xs ...string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return m
}

const fiveYAML = `
nodes:
  n1: {ip: 172.18.0.1, command: "sh -c 'probe tick 0.0.0.0:9001 & probe udp-listen 0.0.0.0:9002 & exec probe listen 0.0.0.0:9000'"}
  n2: {ip: 172.18.0.2, command: "sh -c 'probe tick 0.0.0.0:9001 & probe udp-listen 0.0.0.0:9002 & exec probe listen 0.0.0.0:9000'"}
  n3: {ip: 172.18.0.3, command: "sh -c 'probe tick 0.0.0.0:9001 & probe udp-listen 0.0.0.0:9002 & exec probe listen 0.0.0.0:9000'"}
  n4: {ip: 172.18.0.4, command: "sh -c 'probe tick 0.0.0.0:9001 & probe udp-listen 0.0.0.0:9002 & exec probe listen 0.0.0.0:9000'"}
  n5: {ip: 172.18.0.5, command: "sh -c 'probe tick 0.0.0.0:9001 & probe udp-listen 0.0.0.0:9002 & exec probe listen 0.0.0.0:9000'"}
`

// fiveYAMLDual is fiveYAML with servers bound to :: (both families,
// link-local included).
var fiveYAMLDual = strings.ReplaceAll(strings.ReplaceAll(fiveYAML, "0.0.0.0:9000", "[::]:9000"), "0.0.0.0:9001", "[::]:9001")

// TestPartitionMatrix probes the whole connectivity matrix with real TCP
// connections after every verb.
func TestPartitionMatrix(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	r := startFive(t, u, fiveYAML)
	partitionMatrix(t, r, r.matrix, true)
}

// TestPartitionMatrixLinkLocal repeats the matrix over the nodes'
// IPv6 link-local addresses, which every node has and which no address
// rule would match: the cut is by bridge port.
func TestPartitionMatrixLinkLocal(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	r := startFive(t, u, fiveYAMLDual)
	ll := map[string]string{}
	for _, n := range fiveNodes {
		ll[n] = r.linkLocal(t, n, 9000)
	}
	partitionMatrix(t, r, func(t *testing.T, nodes []string) map[[2]string]bool {
		return r.matrixVia(t, nodes, func(n string) string { return ll[n] })
	}, false)
	jepsenLikeIPv4(t, r, "link-local", func(n string) string { return ll[n] })
}

// partitionMatrix applies every verb to a run of fiveYAML's nodes and
// checks the matrix probe gives after each; udp also checks that drop is
// one-way with IPv4 datagrams.
func partitionMatrix(t *testing.T, r *liveRun, probe func(t *testing.T, nodes []string) map[[2]string]bool, udp bool) {
	all := func(a, b string) bool { return true }
	expectMatrix(t, "at start", probe(t, fiveNodes), fiveNodes, all)

	r.netOK(t, "isolate", "n1", "n3")
	cut := in("n1", "n3")
	expectMatrix(t, "isolate n1 n3", probe(t, fiveNodes), fiveNodes, func(a, b string) bool { return !cut[a] && !cut[b] })
	// Applying the same spec twice changes nothing.
	r.netOK(t, "isolate", "n1", "n3")
	expectMatrix(t, "isolate n1 n3 again", probe(t, fiveNodes), fiveNodes, func(a, b string) bool { return !cut[a] && !cut[b] })

	r.netOK(t, "disjoint", "n1", "n2", "--", "n3", "n4", "n5")
	left := in("n1", "n2")
	expectMatrix(t, "disjoint", probe(t, fiveNodes), fiveNodes, func(a, b string) bool { return left[a] == left[b] })

	r.netOK(t, "split", "n1", "n2", "--", "n2", "n3")
	c1, c2 := in("n1", "n2"), in("n2", "n3")
	expectMatrix(t, "split", probe(t, fiveNodes), fiveNodes, func(a, b string) bool { return c1[a] && c1[b] || c2[a] && c2[b] })

	r.netOK(t, "drop", "n1", "n2")
	expectMatrix(t, "drop n1 n2", probe(t, fiveNodes), fiveNodes, func(a, b string) bool { return !(a == "n1" && b == "n2") })
	// One way only: datagrams n2 -> n1 arrive, n1 -> n2 do not.
	if udp {
		udpOneWay(t, r)
	}

	out := r.netOK(t, "halves", "--seed", "3")
	var show struct {
		Partition struct {
			Clusters [][]string `json:"clusters"`
		} `json:"partition"`
	}
	if err := json.Unmarshal([]byte(r.netOK(t, "show", "--json")), &show); err != nil || len(show.Partition.Clusters) != 2 {
		t.Fatalf("show --json after halves: %v %+v (%s)", err, show, out)
	}
	h := in(show.Partition.Clusters[0]...)
	if len(h) != 3 {
		t.Errorf("halves of 5: first half %v", show.Partition.Clusters[0])
	}
	expectMatrix(t, "halves", probe(t, fiveNodes), fiveNodes, func(a, b string) bool { return h[a] == h[b] })

	r.netOK(t, "fullmesh")
	expectMatrix(t, "fullmesh", probe(t, fiveNodes), fiveNodes, all)
}

// udpOneWay checks, after drop n1 n2, that datagrams n2 -> n1 arrive
// and n1 -> n2 do not.
func udpOneWay(t *testing.T, r *liveRun) {
	r.exec(t, "n1", "probe", "udp-burst", "n2:9002", "20")
	r.exec(t, "n2", "probe", "udp-burst", "n1:9002", "20")
	time.Sleep(300 * time.Millisecond)
	if got := strings.Count(r.out.all(), "n2    | from 172.18.0.1:"); got != 0 {
		t.Errorf("drop n1 n2: %d datagrams from n1 reached n2", got)
	}
	if got := strings.Count(r.out.all(), "n1    | from 172.18.0.2:"); got != 20 {
		t.Errorf("drop n1 n2: %d of 20 datagrams from n2 reached n1", got)
	}

}

// TestPartitionBreaksEstablished: a TCP stream between two cut nodes stalls
// at once and resumes, on the same connection, when healed.
func TestPartitionBreaksEstablished(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	r := startFive(t, u, fiveYAML)
	s := r.follow(t, "n1", "n2:9001")
	c := s.cut(t, r, []string{"isolate", "n2"}, []string{"fullmesh"}, 1500*time.Millisecond)
	s.check(t, []cutRound{c})
}

// TestPartitionCutHealRounds: many cuts and heals of one established TCP
// stream, by every kind of verb, with a busy CPU slowing the supervisor
// down: each cut stops the stream at once (nothing sent after the verb
// returned arrives before the heal), each heal resumes it, on the same
// connection, and no tick is lost or repeated.
func TestPartitionCutHealRounds(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	r := startFive(t, u, fiveYAML)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	busy := u.nsrun(ctx, "net", "exec", "--run", r.id, "n5", "--", "sh", "-c", "while :; do :; done")
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Process.Kill(); _ = busy.Wait() }()
	s := r.follow(t, "n1", "n2:9001")
	type shape struct{ cut, heal []string }
	shapes := []shape{
		{[]string{"isolate", "n2"}, []string{"fullmesh"}},
		{[]string{"isolate", "n1", "n4"}, []string{"fullmesh"}},
		{[]string{"disjoint", "n1", "n3", "--", "n2", "n4", "n5"}, []string{"disjoint", "n1", "n2", "n3", "--", "n4", "n5"}},
		{[]string{"split", "n1", "n3", "--", "n3", "n2"}, []string{"split", "n1", "n2", "--", "n2", "n3"}},
		{[]string{"drop", "n2", "n1"}, []string{"fullmesh"}},
		{[]string{"isolate", "n2"}, []string{"isolate", "n3"}},
	}
	var rounds []cutRound
	for i := range 18 {
		sh := shapes[i%len(shapes)]
		rounds = append(rounds, s.cut(t, r, sh.cut, sh.heal, time.Duration(300+100*(i%5))*time.Millisecond))
	}
	r.netOK(t, "fullmesh")
	s.check(t, rounds)
}

// stream is a `probe follow` of a `probe tick` server, started in a node.
type stream struct {
	lines *lineLog
}

// follow starts `probe follow addr` in node and waits for its first ticks.
func (r *liveRun) follow(t *testing.T, node, addr string) *stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	cmd := r.u.nsrun(ctx, "net", "exec", "--run", r.id, node, "--", "probe", "follow", addr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); cancel() })
	s := &stream{lines: &lineLog{}}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.lines.add(sc.Text())
		}
	}()
	if !eventually(10*time.Second, func() bool { return len(s.ticks()) >= 5 }) {
		t.Fatalf("the stream did not start: %q", s.lines.all())
	}
	return s
}

// tickLine is one line `probe follow` printed: tick N, sent and received
// at these times (Unix milliseconds, one clock).
type tickLine struct {
	N              int
	Sent, Received int64
}

func (s *stream) ticks() []tickLine {
	var out []tickLine
	for _, l := range strings.Split(s.lines.all(), "\n") {
		f := strings.Fields(l) // "RECV_MS tick N SENT_MS"
		if len(f) != 4 || f[1] != "tick" {
			continue
		}
		recv, err1 := strconv.ParseInt(f[0], 10, 64)
		n, err2 := strconv.Atoi(f[2])
		sent, err3 := strconv.ParseInt(f[3], 10, 64)
		if err1 == nil && err2 == nil && err3 == nil {
			out = append(out, tickLine{N: n, Sent: sent, Received: recv})
		}
	}
	return out
}

// cutRound is one cut and heal: the times the cutting verb returned and
// the healing verb was sent.
type cutRound struct {
	what       string
	cut, heal  int64
	healedLate bool
}

// cut applies the cutting verb, holds it for d, heals, and waits for the
// stream to resume (a tick sent after the heal returned arrives).
func (s *stream) cut(t *testing.T, r *liveRun, cut, heal []string, d time.Duration) cutRound {
	t.Helper()
	r.netOK(t, cut[0], cut[1:]...)
	c := cutRound{what: strings.Join(cut, " ") + " / " + strings.Join(heal, " "), cut: time.Now().UnixMilli()}
	time.Sleep(d)
	c.heal = time.Now().UnixMilli()
	r.netOK(t, heal[0], heal[1:]...)
	healed := time.Now().UnixMilli()
	// TCP retransmits with exponential backoff: after a cut of d, the
	// next retransmission comes within about 2d (plus the 200ms minimum).
	if !eventually(5*time.Second+2*d, func() bool {
		ts := s.ticks()
		return len(ts) > 0 && ts[len(ts)-1].Sent > healed
	}) {
		t.Errorf("%s: the stream did not resume after the heal:\n%s", c.what, s.lines.all())
		c.healedLate = true
	}
	return c
}

// check asserts that the stream was one connection, every tick once and in
// order, and that no tick sent while a cut held arrived before its heal.
func (s *stream) check(t *testing.T, rounds []cutRound) {
	t.Helper()
	ts := s.ticks()
	for i, tk := range ts {
		if tk.N != i {
			t.Fatalf("tick %d arrived as the %dth: not one connection, every tick once\n%s", tk.N, i, s.lines.all())
		}
	}
	for _, c := range rounds {
		crossed, stalled := 0, false
		for _, tk := range ts {
			if tk.Sent > c.cut && tk.Received < c.heal {
				crossed++
			}
			if tk.Sent > c.cut && tk.Sent < c.heal {
				stalled = true // sent during the cut (it arrived after the heal)
			}
		}
		if crossed > 0 {
			t.Errorf("%s: %d ticks sent after the cut took effect arrived before the heal (cut %d, heal %d):\n%s",
				c.what, crossed, c.cut, c.heal, s.lines.all())
		}
		if !stalled && !c.healedLate {
			t.Errorf("%s: no tick was sent while the nodes were cut: the sender stalled, the test proves nothing", c.what)
		}
	}
}

// TestPartitionRulesBounded applies many random specs and counts the
// rules the kernel holds, from outside.
func TestPartitionRulesBounded(t *testing.T) {
	u := unprivileged(t)
	requireRoot(t)
	userNamespaces(t, u)
	r := startFive(t, u, fiveYAML)
	bridgeNS := r.bridgeNamespace(t)
	count := func() int {
		out, err := exec.Command("nsenter", "--net="+bridgeNS, "nft", "list", "ruleset").CombinedOutput()
		if err != nil {
			t.Fatalf("nft in the bridge namespace: %v %s", err, out)
		}
		// The partition tables' rules, not the table that keeps MLD
		// reports off the bridges (nft.QuietMLD), which drops them.
		n := 0
		for _, table := range strings.Split(string(out), "\ntable ") {
			if !strings.HasPrefix(strings.TrimPrefix(table, "table "), "bridge nsrun-mld ") {
				n += strings.Count(table, " drop")
			}
		}
		return n
	}
	rng := rand.New(rand.NewPCG(1, 2))
	verbs := []func() []string{
		func() []string { return []string{"isolate", fiveNodes[rng.IntN(5)]} },
		func() []string { return []string{"halves", "--seed", fmt.Sprint(rng.IntN(1000) + 1)} },
		func() []string { return []string{"majorities-ring", "--seed", fmt.Sprint(rng.IntN(1000) + 1)} },
		func() []string { return []string{"bridge", "--seed", fmt.Sprint(rng.IntN(1000) + 1)} },
		func() []string { return []string{"random-node", "--seed", fmt.Sprint(rng.IntN(1000) + 1)} },
		func() []string { return []string{"disjoint", "n1", "n2", "--", "n3", "n4", "n5"} },
		func() []string { return []string{"drop", "n4", "n5"} },
	}
	maxRules := 0
	for i := 0; i < 30; i++ {
		v := verbs[rng.IntN(len(verbs))]()
		r.netOK(t, v[0], v[1:]...)
		maxRules = max(maxRules, count())
	}
	// Each table holds at most one rule per group of nodes: 5 nodes, 3
	// tables (bridge, ip, ip6).
	if maxRules > 15 {
		t.Errorf("up to %d drop rules for 5 nodes: rules accumulate", maxRules)
	}
	r.netOK(t, "fullmesh")
	if n := count(); n != 0 {
		t.Errorf("%d drop rules left after fullmesh", n)
	}
}

// bridgeNamespace finds, as root, the run's bridge namespace: an fd of the
// supervisor that holds a network namespace with the bridge br0.
func (r *liveRun) bridgeNamespace(t *testing.T) string {
	t.Helper()
	return r.namespaceWith(t, "br0")
}

// namespaceWith finds, as root, the network namespace of the run's
// supervisor (an fd of it) that holds the link name.
func (r *liveRun) namespaceWith(t *testing.T, name string) string {
	t.Helper()
	requireRoot(t)
	sup := childOf(r.rc.cmd.Process.Pid)
	if sup == 0 {
		t.Fatal("no supervisor process found")
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", sup))
	for _, fd := range fds {
		p := fmt.Sprintf("/proc/%d/fd/%s", sup, fd.Name())
		if l, _ := os.Readlink(p); !strings.HasPrefix(l, "net:") {
			continue
		}
		if exec.Command("nsenter", "--net="+p, "ip", "link", "show", name).Run() == nil {
			return p
		}
	}
	t.Fatalf("no network namespace with %s among the supervisor's fds", name)
	return ""
}

// TestOneNodeBridgeWhenNeeded: a run of one node has no bridge (it would
// slow the kernel's teardown of the run, and the next run with it): the
// node's port in the bridge namespace holds the router address, and the
// host reaches the node's published ports through it. The first net verb
// makes the bridge: it has the port, and the router address, and a
// connection through a published port, open across the change, goes on
// (ticks keep coming every 50 ms); a new one connects.
func TestOneNodeBridgeWhenNeeded(t *testing.T) {
	u := unprivileged(t)
	requireRoot(t)
	userNamespaces(t, u)
	pListen, pTick := freePort(t), freePort(t)
	r := startRun(t, u, fmt.Sprintf(`
nodes:
  n1: {ip: 172.18.0.1, command: "sh -c 'probe tick 0.0.0.0:9001 & exec probe listen 0.0.0.0:9000'", ports: ["%d:9000", "%d:9001"]}
`, pListen, pTick), "n1    | listening")
	ns := r.namespaceWith(t, "vn1")
	ip := func(args ...string) (string, error) {
		out, err := exec.Command("nsenter", append([]string{"--net=" + ns, "ip"}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := ip("link", "show", "br0"); err == nil {
		t.Fatalf("a run of one node has a bridge before anything needs it:\n%s", out)
	}
	if out, _ := ip("addr", "show", "vn1"); !strings.Contains(out, "172.18.0.254/24") || !strings.Contains(out, "fd00:ac12::fe/64") {
		t.Fatalf("n1's port does not hold the router addresses:\n%s", out)
	}
	ticks := followTicks(t, fmt.Sprintf("127.0.0.1:%d", pTick))
	if !eventually(5*time.Second, func() bool { n, _ := ticks(time.Time{}); return n >= 3 }) {
		t.Fatal("no ticks through the published port before the bridge")
	}
	switched := time.Now()
	r.netOK(t, "isolate", "n1")
	r.netOK(t, "fullmesh")
	if out, err := ip("link", "show", "br0"); err != nil {
		t.Fatalf("no bridge after a net verb: %v\n%s", err, out)
	}
	if out, _ := ip("link", "show", "vn1"); !strings.Contains(out, "master br0") {
		t.Errorf("n1's port is not on br0:\n%s", out)
	}
	if out, _ := ip("addr", "show", "br0"); !strings.Contains(out, "172.18.0.254/24") || !strings.Contains(out, "fd00:ac12::fe/64") {
		t.Errorf("br0 does not hold the router addresses:\n%s", out)
	}
	time.Sleep(time.Second)
	if n, gap := ticks(switched); n < 10 || gap > 500*time.Millisecond {
		t.Errorf("the connection open across the change: %d ticks in the second after it, longest gap %s", n, gap)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out := run(t, u.command(ctx, filepath.Join(binDir, "probe"), "dial", fmt.Sprintf("127.0.0.1:%d", pListen), dialTimeout)).Stdout; !strings.HasPrefix(out, "ok n1 ") {
		t.Errorf("a new connection to n1's published port after the bridge was made: %q", out)
	}
}

func childOf(ppid int) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			pid, _ := strconv.Atoi(e.Name())
			return pid
		}
	}
	return 0
}

func TestPartitionBadInput(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	r := startFive(t, u, fiveYAML)
	r.netOK(t, "isolate", "n4")
	before := r.netOK(t, "show", "--json")
	for _, tc := range []struct {
		verb string
		args []string
		want string
	}{
		{"isolate", []string{"zz"}, `no node "zz" in this run`},
		{"disjoint", []string{"n1", "n2", "--", "n2", "n3", "n4", "n5"}, `"n2" is in two clusters`},
		{"disjoint", []string{"n1", "n2", "--", "n3"}, "use split"},
		{"flaky", []string{"n1", "--loss", "150%"}, "--loss \"150%\": write a percentage from 0% to 100% with its %, such as 30%, 0.3% or 0.0001%"},
		{"flaky", []string{"n1", "--loss", "0.3"}, "--loss \"0.3\": no % sign: write a percentage from 0% to 100% with its %, such as 30%, 0.3% or 0.0001%"},
		{"flaky", []string{"n1", "--rate", "fast"}, "--rate \"fast\""},
		{"flaky", []string{"n1", "--delay", "soon"}, "--delay \"soon\""},
		{"flaky", []string{"zz", "--loss", "10%"}, `no node "zz"`},
		{"isolate", []string{"n1", "--bogus"}, "unknown flag --bogus"},
		{"isolate", []string{"n1", "--loss", "3%"}, "isolate: unknown flag --loss"},
		{"flaky", []string{"n1", "--jitter", "5ms"}, "--jitter needs --delay"},
		{"flaky", []string{"n1", "--delay", "5ms", "--jitter", "6ms"}, "--jitter 6ms is larger than --delay 5ms"},
		{"flaky", []string{"n1", "--delay", "61s"}, "--delay 1m1s is over 1m0s"},
		{"flaky", []string{"n1", "--reorder", "5%"}, "--reorder needs a delay"},
		{"flaky", []string{"n1", "--duplicate", "101%"}, "--duplicate \"101%\": write a percentage from 0% to 100%"},
		{"halves", []string{"--seed", "0"}, `--seed "0"`},
	} {
		res := r.net(t, tc.verb, tc.args...)
		if res.Code != 125 || !strings.Contains(res.Stderr, tc.want) {
			t.Errorf("net %s %v: exit %d, %q; want %q", tc.verb, tc.args, res.Code, res.Stderr, tc.want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if res := run(t, u.nsrun(ctx, "node", "--run", r.id, "stop", "zz")); res.Code != 125 || !strings.Contains(res.Stderr, `no node "zz"`) {
		t.Errorf("node --run ID stop zz: exit %d, %q", res.Code, res.Stderr)
	}
	// Flags go anywhere after net (the README says so): the same isolate
	// again changes nothing.
	if res := run(t, u.nsrun(ctx, "net", "--run", r.id, "isolate", "n4")); res.Code != 0 {
		t.Errorf("net --run ID isolate n4: exit %d, %q", res.Code, res.Stderr)
	}
	if after := r.netOK(t, "show", "--json"); after != before {
		t.Errorf("bad input changed the state:\n%s\n->\n%s", before, after)
	}
	// Each flaky sets the kinds it names and keeps the node's others; a
	// kind given as zero clears that kind; no option clears them all.
	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"n1", "--loss", "0.3%"}, "n1: loss 0.3%, rate -, delay -, jitter -"},
		{[]string{"n1", "--rate", "1mbit"}, "n1: loss 0.3%, rate 1000000bit, delay -, jitter -"},
		{[]string{"n1", "--loss", "0%"}, "n1: loss 0%, rate 1000000bit, delay -, jitter -"},
		{[]string{"n1", "--loss", "99.9%"}, "n1: loss 99.9%, rate 1000000bit, delay -, jitter -"},
		{[]string{"n1"}, "n1: link faults cleared"},
	} {
		if out := r.netOK(t, "flaky", step.args...); strings.TrimSpace(out) != step.want {
			t.Errorf("net flaky %v: %q, want %q", step.args, strings.TrimSpace(out), step.want)
		}
	}
	if show := r.netOK(t, "show"); strings.Contains(show, "n1:") {
		t.Errorf("n1's faults still shown after clearing them: %q", show)
	}
}

// TestFlakyLossAndRate measures the loss and rate that flaky sets.
func TestFlakyLossAndRate(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	needPrograms(t, "iperf3")
	r := startFive(t, u, fiveYAML)
	r.netOK(t, "flaky", "n2", "--loss", "50%")
	r.exec(t, "n1", "probe", "udp-burst", "n2:9002", "400")
	time.Sleep(300 * time.Millisecond)
	got := strings.Count(r.out.all(), "n2    | from 172.18.0.1:")
	if got < 140 || got > 260 {
		t.Errorf("--loss 50%%: %d of 400 datagrams arrived, want 35-65%%", got)
	}
	r.netOK(t, "flaky", "n2") // clear
	r.netOK(t, "flaky", "n3", "--rate", "1mbit")
	srv := r.exec(t, "n3", "sh", "-c", "iperf3 -s -D -1 -p 5201 && echo started")
	if !strings.Contains(srv.Stdout, "started") {
		t.Fatalf("iperf3 server: %s %s", srv.Stdout, srv.Stderr)
	}
	time.Sleep(300 * time.Millisecond)
	res := r.exec(t, "n1", "iperf3", "-c", "n3", "-p", "5201", "-t", "4", "-J")
	var rep struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &rep); err != nil {
		t.Fatalf("iperf3: %v\n%s\n%s", err, res.Stdout, res.Stderr)
	}
	if bps := rep.End.SumReceived.BitsPerSecond; bps < 0.8e6 || bps > 1.2e6 {
		t.Errorf("--rate 1mbit: measured %.0f bit/s, want within 20%% of 1 Mbit/s", bps)
	}
}

// rtts are the round trips of n ICMP echoes from node from to host
// (probe ping: from the send to the kernel's receive timestamp, so the
// scheduling of a busy machine adds nothing), the first few (which may
// wait for ARP) left out. An echo lost on the way is left out too (the
// kernel's per-CPU input queue, which every veth of the machine shares,
// drops when other tests flood it), but only one in ten may be.
func (r *liveRun) rtts(t *testing.T, from, host string, n int) []time.Duration {
	t.Helper()
	drops := backlogDrops()
	res := r.exec(t, from, "probe", "ping", host, strconv.Itoa(n+3))
	f := strings.Fields(res.Stdout)
	if len(f) != n+4 || f[0] != "rtt_us" {
		t.Fatalf("probe ping %s from %s: %q %q", host, from, res.Stdout, res.Stderr)
	}
	var out []time.Duration
	lost := 0
	for _, v := range f[4:] {
		us, _ := strconv.Atoi(v)
		if us < 0 {
			if lost++; lost > n/10 {
				t.Fatalf("probe ping %s from %s: %d echoes unanswered: %q (meanwhile the kernel's receive backlogs, shared by the whole machine, dropped %d frames: /proc/net/softnet_stat)", host, from, lost, res.Stdout, backlogDrops()-drops)
			}
			continue
		}
		out = append(out, time.Duration(us)*time.Microsecond)
	}
	return out
}

// backlogDrops is how many frames the kernel's per-CPU receive backlogs
// (netdev_max_backlog) have dropped since boot, on every CPU: a frame
// that crosses a veth waits there, and a saturated machine loses it
// there (the second column of /proc/net/softnet_stat, in hex).
func backlogDrops() int64 {
	b, _ := os.ReadFile("/proc/net/softnet_stat")
	var sum int64
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			v, _ := strconv.ParseInt(f[1], 16, 64)
			sum += v
		}
	}
	return sum
}

// rttStats are the median, 99th percentile, mean and standard deviation.
func rttStats(ds []time.Duration) (median, p99, mean, sd time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum float64
	for _, d := range s {
		sum += float64(d)
	}
	m := sum / float64(len(s))
	var sq float64
	for _, d := range s {
		sq += (float64(d) - m) * (float64(d) - m)
	}
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)], time.Duration(m), time.Duration(math.Sqrt(sq / float64(len(s)-1)))
}

// robustSD estimates the standard deviation of normally distributed ds
// from their interquartile range (IQR / 1.349), which a few round trips
// late because the machine was busy do not move, as they move the plain
// standard deviation.
func robustSD(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return time.Duration(float64(s[len(s)*3/4]-s[len(s)/4]) / 1.349)
}

// trimmedSD is the sample standard deviation of ds without the round
// trips a busy machine made late: those more than 4 standard deviations
// (robustSD) from the median, where a normal distribution has 1 in
// 15,000 of its values. It spreads less from one run to the next than
// robustSD (5% against 11% at 150 values), which a window of ±20% needs.
func trimmedSD(ds []time.Duration) time.Duration {
	med, _, _, _ := rttStats(ds)
	limit := 4 * float64(robustSD(ds))
	var n, sum, sq float64
	for _, d := range ds {
		if x := float64(d); math.Abs(x-float64(med)) <= limit {
			n, sum, sq = n+1, sum+x, sq+x*x
		}
	}
	if n < 2 {
		return 0
	}
	return time.Duration(math.Sqrt(max(0, (sq-sum*sum/n)/(n-1))))
}

// TestFlakyDelay measures the delay and jitter that flaky sets, on this
// kernel (no netem: the link engine), and that clearing them gives the
// link back to the kernel's path.
func TestFlakyDelay(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	r := startFive(t, u, fiveYAML)
	base, _, _, _ := rttStats(r.rtts(t, "n1", "n4", 20))
	// What n4 receives waits 30ms: a handshake from n1 is one round trip.
	r.netOK(t, "flaky", "n4", "--delay", "30ms")
	if show := r.netOK(t, "show"); !strings.Contains(show, "n4: loss 0%, rate -, delay 30ms, jitter -") || !strings.Contains(show, "link engine (user space") {
		t.Errorf("show: %q", show)
	}
	cd := r.rtts(t, "n1", "n4", 100)
	med, p99, _, _ := rttStats(cd)
	t.Logf("--delay 30ms: median %s, p99 %s, shortest %s (without: %s)", med, p99, slices.Min(cd), base)
	if slices.Min(cd) < 30*time.Millisecond {
		t.Errorf("--delay 30ms: a round trip of %s, want 30ms at least", slices.Min(cd))
	}
	if med > 30*time.Millisecond+base+time.Millisecond {
		t.Errorf("--delay 30ms: median round trip %s, want 30ms + %s (the link's own) within 1ms", med, base)
	}
	// The jitter is how much more the round trips spread than those
	// through the same delay without it, which a busy machine (or nsrun
	// built with -race) spreads too: independent spreads add as
	// variances.
	r.netOK(t, "flaky", "n4", "--delay", "30ms", "--jitter", "5ms")
	jd := r.rtts(t, "n1", "n4", 200)
	jsd, csd := trimmedSD(jd), trimmedSD(cd)
	sd := time.Duration(math.Sqrt(max(0, float64(jsd)*float64(jsd)-float64(csd)*float64(csd))))
	t.Logf("--delay 30ms --jitter 5ms: standard deviation %s (%s, without jitter %s)", sd, jsd, csd)
	if sd < 4*time.Millisecond || sd > 6*time.Millisecond {
		t.Errorf("--jitter 5ms: standard deviation %s more than without jitter, want 5ms ± 20%%; round trips %v", sd, jd)
	}
	r.netOK(t, "flaky", "n4")
	if show := r.netOK(t, "show"); strings.Contains(show, "link engine") {
		t.Errorf("show after clearing: %q", show)
	}
	if med, _, _, _ := rttStats(r.rtts(t, "n1", "n4", 20)); med > base+2*time.Millisecond {
		t.Errorf("after clearing: median %s, want about %s", med, base)
	}
}

// TestNodeStopStartPause crashes, brings back and freezes a node.
func TestNodeStopStartPause(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	// n2 drives the run from inside (control: true).
	r := startFive(t, u, strings.Replace(fiveYAML, "n2: {ip: 172.18.0.2,", "n2: {ip: 172.18.0.2, control: true,", 1))
	node := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if res := run(t, u.nsrun(ctx, append([]string{"node"}, append(args, "--run", r.id)...)...)); res.Code != 0 {
			t.Fatalf("node %v: %d %s", args, res.Code, res.Stderr)
		}
	}
	dial := func() string { return r.exec(t, "n1", "probe", "dial", "n3:9000", dialTimeout).Stdout }
	// From inside a node with control, nsrun net and nsrun node need no --run.
	if res := r.exec(t, "n2", "sh", "-c", "nsrun net isolate n5 && nsrun net show && nsrun net fullmesh"); res.Code != 0 || !strings.Contains(res.Stdout, "cut off: n5; the other nodes reach each other: 4 nodes (n1 n2 n3 n4)") {
		t.Errorf("net verbs from inside a node: exit %d %q %q", res.Code, res.Stdout, res.Stderr)
	}
	node("stop", "n3")
	if out := dial(); !strings.HasPrefix(out, "refused") {
		t.Errorf("after node stop n3: %q, want refused (the address stays, nothing listens)", out)
	}
	node("start", "n3")
	if !eventually(5*time.Second, func() bool { return strings.HasPrefix(dial(), "ok n3") }) {
		t.Errorf("after node start n3: %q", dial())
	}
	node("pause", "n3")
	if out := dial(); strings.Contains(out, "n3") {
		t.Errorf("a paused node answered: %q", out)
	}
	node("resume", "n3")
	if out := dial(); !strings.HasPrefix(out, "ok n3") {
		t.Errorf("after resume: %q", out)
	}
	// The run is still whole: Ctrl-C stops it cleanly.
	_ = r.rc.cmd.Process.Signal(os.Interrupt)
	if code := r.rc.wait(); code != 0 {
		t.Errorf("exit %d after Ctrl-C", code)
	}
}

// TestRedisReplicaUnderPartition: a replica cut off from its primary
// misses writes, and catches up once healed.
func TestRedisReplicaUnderPartition(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	needPrograms(t, "redis-server", "redis-cli")
	yaml, err := os.ReadFile(filepath.Join("..", "examples", "redis-replicas", "nsrun.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := startRun(t, u, string(yaml), "replica2 ready")
	get := func(node, key string) string {
		return strings.TrimSpace(r.exec(t, node, "redis-cli", "get", key).Stdout)
	}
	if out := r.exec(t, "primary", "redis-cli", "set", "k1", "one").Stdout; !strings.Contains(out, "OK") {
		t.Fatalf("set k1: %q", out)
	}
	for _, n := range []string{"replica1", "replica2"} {
		if !eventually(20*time.Second, func() bool { return get(n, "k1") == "one" }) {
			t.Fatalf("%s never replicated k1", n)
		}
	}
	r.netOK(t, "isolate", "replica1")
	r.exec(t, "primary", "redis-cli", "set", "k2", "two")
	if !eventually(10*time.Second, func() bool { return get("replica2", "k2") == "two" }) {
		t.Fatal("replica2 did not get k2")
	}
	if got := get("replica1", "k2"); got == "two" {
		t.Fatal("the isolated replica1 received k2")
	}
	r.netOK(t, "fullmesh")
	if !eventually(60*time.Second, func() bool { return get("replica1", "k2") == "two" }) {
		t.Errorf("replica1 did not catch up after fullmesh")
	}
}

// followTicks connects to addr, where `probe tick` serves a line every
// 50 ms, and records when each arrives, until the test ends. The function
// it returns counts the ticks that arrived after from, and the longest
// gap between them (from from on).
func followTicks(t *testing.T, addr string) func(from time.Time) (n int, gap time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var mu sync.Mutex
	var got []time.Time // when each tick arrived
	go func() {
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			mu.Lock()
			got = append(got, time.Now())
			mu.Unlock()
		}
	}()
	return func(from time.Time) (n int, gap time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		last := from
		for _, at := range got {
			if at.After(from) {
				n++
				gap = max(gap, at.Sub(last))
				last = at
			}
		}
		return n, gap
	}
}
