package test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/partition"
)

// scaleRun is a run of n nodes over two subnets (so that cuts are both
// bridged and routed), of which the sampled ones listen on [::]:9000 (both
// families) and the others sleep: connectivity is checked between the
// sampled nodes, every pair both ways, in IPv4 and in IPv6.
type scaleRun struct {
	*liveRun
	nodes   []string
	sampled []string
}

// startScale starts n nodes and waits until every sampled node listens.
func startScale(t *testing.T, u testUser, n, samples int) *scaleRun {
	t.Helper()
	s := &scaleRun{}
	step := max(1, n/samples)
	var b strings.Builder
	b.WriteString("subnets:\n  front: 172.18.0.0/22\n  back: 172.18.4.0/22\nnodes:\n")
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("n%d", i+1)
		s.nodes = append(s.nodes, name)
		// The first half in front, the second in back.
		net, k := 0, i
		if i >= (n+1)/2 {
			net, k = 4, i-(n+1)/2
		}
		cmd := "[sleep, '3600']"
		if i%step == 0 && len(s.sampled) < samples || i == n-1 && len(s.sampled) < samples {
			s.sampled = append(s.sampled, name)
			cmd = `"probe listen [::]:9000"`
		}
		fmt.Fprintf(&b, "  %s: {ip: 172.18.%d.%d, command: %s}\n", name, net+k/250, k%250+1, cmd)
	}
	s.liveRun = startRunWithin(t, u, b.String(), "| listening", 2*time.Minute)
	listening := func() bool {
		seen := map[string]bool{}
		for _, l := range s.out.snapshot() {
			if f := strings.Fields(l); len(f) >= 3 && f[1] == "|" && f[2] == "listening" {
				seen[f[0]] = true
			}
		}
		for _, name := range s.sampled {
			if !seen[name] {
				return false
			}
		}
		return true
	}
	if !eventually(60*time.Second, listening) {
		t.Fatalf("%d nodes: not every sampled node listens:\n%s", n, s.out.all())
	}
	// Listening says nothing of the way there: before any verb, every
	// sampled pair must connect in both families (a node's first IPv6
	// packets wait for neighbour discovery across a bridge of n ports).
	start := time.Now()
	var missing []string
	if !eventually(30*time.Second, func() bool {
		missing = nil
		for k, ok := range s.probe(t) {
			if !ok {
				missing = append(missing, fmt.Sprintf("%s->%s IPv%s", k[0], k[1], k[2]))
			}
		}
		return len(missing) == 0
	}) {
		t.Fatalf("%d nodes: before any verb, sampled pairs do not connect: %s", n, strings.Join(missing, ", "))
	}
	t.Logf("%d nodes: every sampled pair connects in both families %s after the listeners are up", n, time.Since(start).Round(time.Millisecond))
	return s
}

// probe scans from every sampled node to every other one, in both
// families, every scan at once: the result by [from, to, family].
func (s *scaleRun) probe(t *testing.T) map[[3]string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	got := map[[3]string]bool{}
	var wg sync.WaitGroup
	var errs []string
	for _, from := range s.sampled {
		args := []string{"net", "exec", "--run", s.id, from, "--", "probe", "scan", "1s"}
		target := map[string][2]string{}
		for _, to := range s.sampled {
			if to == from {
				continue
			}
			for _, fam := range []string{"4", "6"} {
				a := fam + "/" + to + ":9000"
				args = append(args, a)
				target[a] = [2]string{to, fam}
			}
		}
		cmd := s.u.nsrun(ctx, args...)
		var out, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &stderr
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := cmd.Run()
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, line := range strings.Split(out.String(), "\n") {
				if f := strings.Fields(line); len(f) >= 2 {
					if tg, ok := target[f[0]]; ok {
						got[[3]string{from, tg[0], tg[1]}] = f[1] == "ok"
						n++
					}
				}
			}
			if err != nil || n != len(target) {
				errs = append(errs, fmt.Sprintf("scan from %s: %v, %d of %d answered\n%s%s", from, err, n, len(target), &out, &stderr))
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(strings.Join(errs, "\n"))
	}
	return got
}

// check applies verb args and compares the sampled connectivity with the
// spec's own model (package partition): a TCP connection needs both ways.
// It returns what the verb printed.
func (s *scaleRun) check(t *testing.T, verb string, args []string, seed uint64) string {
	t.Helper()
	full := slices.Clone(args)
	if seed != 0 {
		full = append(full, "--seed", fmt.Sprint(seed))
	}
	res := s.net(t, verb, full...)
	if res.Code != 0 {
		t.Fatalf("%d nodes: net %s %v: exit %d %s %s", len(s.nodes), verb, full, res.Code, res.Stdout, res.Stderr)
	}
	st, err := partition.Parse(verb, args, s.nodes, partition.Options{Seed: seed})
	if err != nil {
		t.Fatalf("the model refuses net %s %v: %v", verb, full, err)
	}
	got := s.probe(t)
	var bad []string
	for _, a := range s.sampled {
		for _, b := range s.sampled {
			if a == b {
				continue
			}
			want := st.Reach(s.nodes, a, b) && st.Reach(s.nodes, b, a)
			for _, fam := range []string{"4", "6"} {
				if got[[3]string{a, b, fam}] != want {
					bad = append(bad, fmt.Sprintf("%s->%s IPv%s: got %v, the model says %v", a, b, fam, got[[3]string{a, b, fam}], want))
				}
			}
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d nodes, net %s %v (%s): connectivity differs from the model:\n  %s", len(s.nodes), verb, full, strings.TrimSpace(res.Stdout), strings.Join(bad, "\n  "))
	}
	out := strings.TrimSpace(res.Stdout)
	if len(out) > 600 {
		t.Errorf("%d nodes, net %s: %d characters of output (counts and the first few names, never every name):\n%.600s…", len(s.nodes), verb, len(out), out)
	}
	if seed != 0 && !strings.Contains(out, fmt.Sprintf("seed %d", seed)) {
		t.Errorf("net %s --seed %d does not print its seed: %q", verb, seed, out)
	}
	// The verb names the nodes it cut off.
	if verb == "random-node" || verb == "isolate" && len(args) == 1 {
		alone := ""
		for _, n := range s.nodes {
			if !slices.ContainsFunc(st.Clusters, func(c []string) bool { return slices.Contains(c, n) }) {
				alone = n
			}
		}
		if !strings.Contains(out, "cut off: "+alone+";") {
			t.Errorf("net %s: %q does not name the node it cut off, %s", verb, out, alone)
		}
	}
	return out
}

// randomVerb draws a net verb and its arguments over nodes, with a seed
// for the shapes that take one (0 for the others).
func randomVerb(r *rand.Rand, nodes, sampled []string) (string, []string, uint64) {
	pick := func(from []string) string { return from[r.IntN(len(from))] }
	seed := r.Uint64N(1_000_000) + 1
	shapes := []string{"halves", "random-node"}
	if len(nodes) >= 3 {
		shapes = append(shapes, "majorities-ring", "bridge")
	}
	switch r.IntN(7) {
	case 0:
		args := []string{pick(sampled)}
		if x := pick(sampled); x != args[0] {
			args = append(args, x)
		}
		return "isolate", args, 0
	case 1: // every node in one of k clusters
		k := 2 + r.IntN(2)
		clusters := make([][]string, k)
		for i, n := range r.Perm(len(nodes)) {
			clusters[i%k] = append(clusters[i%k], nodes[n])
		}
		var args []string
		for i, c := range clusters {
			if len(c) == 0 {
				continue
			}
			if i > 0 && len(args) > 0 {
				args = append(args, "--")
			}
			args = append(args, c...)
		}
		if len(nodes) < 2 || !slices.Contains(args, "--") {
			return "fullmesh", nil, 0
		}
		return "disjoint", args, 0
	case 2: // overlapping clusters, some nodes in none
		var args []string
		for c := 0; c < 2+r.IntN(3); c++ {
			var cl []string
			for _, n := range nodes {
				if r.IntN(3) == 0 {
					cl = append(cl, n)
				}
			}
			if len(cl) == 0 {
				cl = []string{pick(nodes)}
			}
			if c > 0 {
				args = append(args, "--")
			}
			args = append(args, cl...)
		}
		return "split", args, 0
	case 3:
		a, b := pick(sampled), pick(sampled)
		if a == b {
			return "fullmesh", nil, 0
		}
		return "drop", []string{a, b}, 0
	case 4:
		return "fullmesh", nil, 0
	}
	return pick(shapes), nil, seed
}

// TestNetVerbsAtEverySize applies every net verb, then a random seeded
// sequence of them, at 2, 5, 15, 40, 100 and 250 nodes, and checks the
// connectivity of sampled nodes, both ways and in both families, against
// the spec's own model (package partition). majorities-ring failed from
// 15 nodes (the acknowledgements of one netlink batch overflowed the
// socket) and from 80 (the batch itself was too long).
func TestNetVerbsAtEverySize(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	seed := uint64(time.Now().UnixNano())
	t.Logf("random sequences from seed %d", seed)
	for _, n := range []int{2, 5, 15, 40, 100, 250} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			start := time.Now()
			s := startScale(t, u, n, min(n, 8))
			up := time.Since(start)
			a, b := s.sampled[0], s.sampled[len(s.sampled)-1]
			type step struct {
				verb string
				args []string
				seed uint64
			}
			steps := []step{
				{"isolate", []string{b}, 0},
				{"drop", []string{a, b}, 0},
				{"halves", nil, 11},
				{"random-node", nil, 12},
				{"fullmesh", nil, 0},
			}
			if n >= 3 {
				steps = append(steps, step{"majorities-ring", nil, 13}, step{"bridge", nil, 14},
					step{"isolate", []string{a, s.sampled[1]}, 0},
					step{"split", []string{a, s.sampled[1], "--", s.sampled[1], b}, 0})
			}
			half := (n + 1) / 2
			steps = append(steps, step{"disjoint", append(append(slices.Clone(s.nodes[:half]), "--"), s.nodes[half:]...), 0})
			r := rand.New(rand.NewPCG(seed, uint64(n)))
			for range 4 {
				v, args, sd := randomVerb(r, s.nodes, s.sampled)
				steps = append(steps, step{v, args, sd})
			}
			for _, st := range steps {
				out := s.check(t, st.verb, st.args, st.seed)
				if n >= 100 {
					t.Logf("net %s: %s", st.verb, out)
				}
			}
			s.check(t, "fullmesh", nil, 0)
			t.Logf("%d nodes: up in %s, %d verbs checked in %s", n, up.Round(time.Millisecond), len(steps)+1, (time.Since(start) - up).Round(time.Millisecond))
		})
	}
}

// TestNetVerbs1000 runs 1,000 nodes (CI's time allows it: they start in
// seconds): majorities-ring, isolate and fullmesh each switch (in more
// transactions than one, but one switch), sampled connectivity follows
// the model in both families, and the run stops with nothing left.
func TestNetVerbs1000(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	start := time.Now()
	s := startScale(t, u, 1000, 8)
	t.Logf("1000 nodes up in %s", time.Since(start).Round(time.Millisecond))
	for _, st := range []struct {
		verb string
		args []string
		seed uint64
	}{
		{"majorities-ring", nil, 21},
		{"isolate", []string{s.sampled[3]}, 0},
		{"halves", nil, 22},
		{"random-node", nil, 23},
		{"fullmesh", nil, 0},
	} {
		out := s.check(t, st.verb, st.args, st.seed)
		t.Logf("net %s: %s", st.verb, out)
		if st.verb != "majorities-ring" {
			continue
		}
		// show says it in a few words; show --json lists every pair.
		if show := s.netOK(t, "show"); len(show) > 600 || !strings.Contains(show, "a ring of 1000 nodes") {
			t.Errorf("net show after majorities-ring of 1000: %d characters: %.600s", len(show), show)
		}
		var js struct {
			Blocked [][2]string `json:"blocked"`
		}
		start := time.Now()
		if err := json.Unmarshal([]byte(s.netOK(t, "show", "--json")), &js); err != nil {
			t.Errorf("net show --json: %v", err)
		}
		// Each node reaches 250 on either side: 499 of the 999 others are cut.
		if len(js.Blocked) != 1000*499 {
			t.Errorf("net show --json lists %d blocked pairs, want %d", len(js.Blocked), 1000*499)
		}
		t.Logf("net show --json of majorities-ring at 1000 nodes: %d pairs in %s", len(js.Blocked), time.Since(start).Round(time.Millisecond))
	}
	_ = s.rc.cmd.Process.Signal(syscall.SIGTERM)
	if code := s.rc.wait(); code != 0 && code != 128+int(syscall.SIGTERM) {
		t.Errorf("nsrun up of 1000 nodes exited %d after SIGTERM", code)
	}
	if !eventually(10*time.Second, func() bool { return len(u.runDirs()) == 0 }) {
		t.Errorf("run folders left: %v", u.runDirs())
	}
}

// TestUpStop1000 starts 1,000 sleeping nodes, then stops them with
// SIGTERM: every process of the run ends and the run folder goes, in
// seconds. (When each node's stop scanned every process of the run in
// /proc, 1,000 nodes took 80 s to stop on a loaded machine: 2,000
// pidfd_open and stat calls for each of them.) nsrun's own output is a
// few lines, counts and the first names, not a line a node.
func TestUpStop1000(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	const n = 1000
	var b strings.Builder
	b.WriteString("subnets: {s: 172.18.0.0/22}\nnodes:\n")
	for i := range n {
		cmd := "[sleep, '3600']"
		if i == 0 {
			cmd = `"sh -c 'echo hello; exec sleep 3600'"`
		}
		fmt.Fprintf(&b, "  n%d: {ip: 172.18.%d.%d, command: %s}\n", i+1, i/250, i%250+1, cmd)
	}
	start := time.Now()
	r := startRunWithin(t, u, b.String(), "| hello", 2*time.Minute)
	procs := followRun(t, r.rc.cmd.Process.Pid)
	if !eventually(2*time.Minute, func() bool { return strings.Contains(r.out.all(), "every node is up") }) {
		t.Fatalf("%d nodes are not up within 2 minutes:\n%.2000s", n, r.out.all())
	}
	t.Logf("%d nodes up in %s", n, time.Since(start).Round(time.Millisecond))
	if out := r.out.all(); !strings.Contains(out, "nsrun | 1000 nodes started (n1 n2 n3 n4 n5 …)\n") || strings.Contains(out, "started (pid") {
		t.Errorf("%d nodes: the start is not summarized in one line:\n%.2000s", n, out)
	}
	// The wiring's sysctls reach every node's own namespace (in a large
	// run, through procfs instances of the wiring workers' own): the
	// first and the last node have no router advertisements, SLAAC or
	// duplicate address detection on eth0, and every port is open to
	// unprivileged programs.
	for _, node := range []string{"n1", fmt.Sprintf("n%d", n)} {
		res := r.exec(t, node, "sh", "-c", "cd /proc/sys/net && cat ipv6/conf/eth0/accept_ra ipv6/conf/eth0/autoconf ipv6/conf/eth0/accept_dad ipv4/ip_unprivileged_port_start ipv4/ping_group_range")
		if got := strings.Fields(res.Stdout); res.Code != 0 || len(got) != 6 || strings.Join(got[:4], " ") != "0 0 0 0" {
			t.Errorf("%s: accept_ra, autoconf, accept_dad, ip_unprivileged_port_start, ping_group_range: %q, want 0 0 0 0 and a group range (exit %d %s)", node, res.Stdout, res.Code, res.Stderr)
		}
	}
	stop := time.Now()
	_ = r.rc.cmd.Process.Signal(syscall.SIGTERM)
	if code := r.rc.wait(); code != 0 && code != 128+int(syscall.SIGTERM) {
		t.Errorf("nsrun up of %d nodes exited %d after SIGTERM\n%s", n, code, r.rc.stderr)
	}
	took := time.Since(stop)
	t.Logf("%d nodes stopped in %s", n, took.Round(time.Millisecond))
	// The bar is 1 s on a quiet machine (BENCHMARKS.md); 5 s leaves room
	// for a loaded one and still fails a stop that grows with n².
	if took > 5*time.Second {
		t.Errorf("%d nodes took %s to stop (SIGTERM to exit), want at most 5s", n, took.Round(time.Millisecond))
	}
	out := r.out.all()
	if !strings.Contains(out, "nsrun | 1000 nodes exited with code 143 (n1 n2 n3 n4 n5 …)") || strings.Contains(out, "exited with code 143\n") {
		t.Errorf("%d nodes: their exits are not summarized in one line:\n%.2000s", n, out)
	}
	if lines := strings.Count(out, "\n") + 1; lines > 10 {
		t.Errorf("%d nodes: nsrun up printed %d lines, want a few:\n%.2000s", n, lines, out)
	}
	t.Logf("nsrun up printed:\n%s", out)
	if !eventually(10*time.Second, func() bool { return len(procs.live()) == 0 }) {
		t.Errorf("processes of the run left after it stopped: %v", procs.live())
	}
	if !eventually(10*time.Second, func() bool { return len(u.runDirs()) == 0 }) {
		t.Errorf("run folders left: %v", u.runDirs())
	}
}
