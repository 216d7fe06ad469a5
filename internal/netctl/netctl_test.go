package netctl

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/linkengine"
	"github.com/nsrun/nsrun/internal/netsetup"
	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/internal/partition"
	"github.com/nsrun/nsrun/internal/plan"
	"github.com/nsrun/nsrun/internal/runnet"
	"github.com/nsrun/nsrun/internal/runnet/runnettest"
)

// kernelRun builds the network of a run of the file yaml against the
// kernel (runnettest.Build). It returns the plan,
// the network, the nodes' namespaces and the nodes as the verbs see them.
func kernelRun(t *testing.T, yaml string) (*plan.Plan, *runnet.Network, []*os.File, []Node) {
	t.Helper()
	p, n, nodeNS := runnettest.Build(t, yaml)
	var nodes []Node
	for i, nd := range p.Nodes {
		nodeEnd, engineEnd := plan.EngineEnds(nd.Name)
		nodes = append(nodes, Node{Name: nd.Name, Addrs: []netip.Addr{nd.Addr, nd.Addr6}, Ports: []string{nd.VethPort()}, VethPort: nd.VethPort(), EngineEnds: netsetup.Splice{NodeEnd: nodeEnd, EngineEnd: engineEnd}, NS: nodeNS[i]})
	}
	return p, n, nodeNS, nodes
}

// TestDoAgainstKernel applies net verbs to a run's network built against
// the kernel (package runnet): isolate cuts a node from the others both
// ways and leaves the rest connected, drop cuts one way, fullmesh heals,
// show reports the state (also as JSON), flaky shapes a node's port and
// clears it, and a verb over an unknown node changes nothing.
func TestDoAgainstKernel(t *testing.T) {
	p, n, nodeNS, nodes := kernelRun(t, "nodes:\n  a: {ip: 172.18.0.2}\n  b: {ip: 172.18.0.3}\n  c: {ip: 172.18.0.4}\n")
	// A listener in every node; reach says whether from dials to's.
	listeners := map[string]net.Listener{}
	for i, nd := range p.Nodes {
		if err := nsfd.Do(nodeNS[i], func() error {
			l, err := net.Listen("tcp", netip.AddrPortFrom(nd.Addr, 9000).String())
			listeners[nd.Name] = l
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer listeners[nd.Name].Close()
		go func(l net.Listener) {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}(listeners[nd.Name])
	}
	// matrix dials every pair at once and names those that do not
	// connect. A cut drops the SYN, so its dial times out: the timeout
	// is long enough that a dial slowed by a busy machine is not taken
	// for a cut, and the dials wait for it together.
	matrix := func() string {
		var (
			wg  sync.WaitGroup
			cut = make([][]bool, len(p.Nodes))
		)
		for i := range p.Nodes {
			cut[i] = make([]bool, len(p.Nodes))
			for j := range p.Nodes {
				if i == j {
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					cut[i][j] = true
					_ = nsfd.Do(nodeNS[i], func() error {
						c, err := net.DialTimeout("tcp", netip.AddrPortFrom(p.Nodes[j].Addr, 9000).String(), 3*time.Second)
						if err == nil {
							c.Close()
							cut[i][j] = false
						}
						return nil
					})
				}()
			}
		}
		wg.Wait()
		var b strings.Builder
		for i := range p.Nodes {
			for j := range p.Nodes {
				if cut[i][j] {
					fmt.Fprintf(&b, "%s-x->%s ", p.Nodes[i].Name, p.Nodes[j].Name)
				}
			}
		}
		return strings.TrimSpace(b.String())
	}

	var shaped []string
	engine := linkengine.New(n.BridgeNS(), slog.New(slog.DiscardHandler))
	defer engine.Close()
	ctl := New(n.BridgeNS(), "", func(port string, sh netsetup.Shaping) error {
		shaped = append(shaped, fmt.Sprintf("%s %+v", port, sh))
		return n.Shape(port, sh)
	}, engine)
	do := func(c control.NetCall) string {
		t.Helper()
		out, _, err := ctl.Do(&c, nodes)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		return out
	}
	if m := matrix(); m != "" {
		t.Fatalf("before any verb: %s", m)
	}
	if out := do(control.NetCall{Isolate: &partition.Isolate{Nodes: []string{"a"}}}); !strings.HasPrefix(out, "isolate applied (") || !strings.HasSuffix(out, "1 transactions): cut off: a; the other nodes reach each other: 2 nodes (b c)") {
		t.Errorf("isolate: %q", out)
	}
	if m := matrix(); m != "a-x->b a-x->c b-x->a c-x->a" {
		t.Errorf("isolate a: cut %s", m)
	}
	// The answer of a verb other than show carries the state without the
	// pair list (499,000 pairs after majorities-ring of 1,000 nodes).
	if _, st, err := ctl.Do(&control.NetCall{Drop: &partition.Drop{From: "b", To: "c"}}, nodes); err != nil || st.Blocked != nil || st.Partition.Verb != "drop" {
		t.Errorf("drop's state: %+v, %v; want the partition without the pairs", st, err)
	}
	// One way cut: b's packets to c are dropped, so neither b's SYN to c
	// nor b's SYN-ACK to c gets through.
	if m := matrix(); m != "b-x->c c-x->b" {
		t.Errorf("drop b c (which replaces isolate): cut %s", m)
	}
	_, st, err := ctl.Do(&control.NetCall{Show: &control.Show{}}, nodes)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(st.Blocked) != "[[b c]]" || len(st.Nodes) != 3 || st.Nodes["a"].Addr6 != netip.MustParseAddr("fd00:ac12::2") || st.Partition.Verb != "drop" {
		t.Errorf("show's state: %+v", st)
	}
	do(control.NetCall{Heal: &partition.Heal{}})
	if m := matrix(); m != "" {
		t.Errorf("fullmesh: cut %s", m)
	}
	if out := do(control.NetCall{Show: &control.Show{}}); out != "every node reaches every node" {
		t.Errorf("show: %q", out)
	}

	// flaky: a rate on a's port; show lists it; a later flaky of another
	// kind keeps it; a kind set to zero clears that kind; no fault clears
	// them all.
	if out := do(control.NetCall{Flaky: &control.Flaky{Node: "a", Faults: control.Faults{Rate: 1_000_000, LossPPM: 100_000}, Set: control.FaultRate | control.FaultLoss}}); out != "a: loss 10%, rate 1000000bit, delay -, jitter -" {
		t.Errorf("flaky: %q", out)
	}
	if out := do(control.NetCall{Show: &control.Show{}}); !strings.HasSuffix(out, "\na: loss 10%, rate 1000000bit, delay -, jitter -") {
		t.Errorf("show with faults: %q", out)
	}
	if out := do(control.NetCall{Flaky: &control.Flaky{Node: "a", Faults: control.Faults{LossPPM: 3000}, Set: control.FaultLoss}}); out != "a: loss 0.3%, rate 1000000bit, delay -, jitter -" {
		t.Errorf("flaky --loss 0.3%% after --rate: %q", out)
	}
	if out := do(control.NetCall{Flaky: &control.Flaky{Node: "a", Set: control.FaultRate}}); out != "a: loss 0.3%, rate -, delay -, jitter -" {
		t.Errorf("flaky --rate 0: %q", out)
	}
	if out := do(control.NetCall{Flaky: &control.Flaky{Node: "a"}}); out != "a: link faults cleared" {
		t.Errorf("flaky without faults: %q", out)
	}
	if want := []string{"va {Rate:1000000 Delay:0s Jitter:0s}", "va {Rate:0 Delay:0s Jitter:0s}"}; fmt.Sprint(shaped) != fmt.Sprint(want) {
		t.Errorf("shaped %q, want %q", shaped, want)
	}
	// A delay is the link engine's, on every kernel: b's link is spliced
	// into it, a's handshake with b waits for it, and clearing the
	// faults takes b's link back to the kernel's path. The rate stays
	// on b's port across both moves.
	handshake := func(to int) time.Duration {
		t.Helper()
		var took time.Duration
		if err := nsfd.Do(nodeNS[0], func() error {
			start := time.Now()
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(p.Nodes[to].Addr, 9000).String(), 2*time.Second)
			took = time.Since(start)
			if err == nil {
				c.Close()
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return took
	}
	shaped = nil
	if out := do(control.NetCall{Flaky: &control.Flaky{Node: "b", Faults: control.Faults{Rate: 100_000_000}, Set: control.FaultRate}}); out != "b: loss 0%, rate 100000000bit, delay -, jitter -" {
		t.Errorf("flaky --rate: %q", out)
	}
	if out := do(control.NetCall{Flaky: &control.Flaky{Node: "b", Faults: control.Faults{Delay: 20 * time.Millisecond, ReorderPercent: 5}, Set: control.FaultDelay | control.FaultReorder}}); out != "b: loss 0%, rate 100000000bit, delay 20ms, jitter -, reorder 5%" {
		t.Errorf("flaky --delay --reorder: %q", out)
	}
	if got := engine.Spliced(); fmt.Sprint(got) != "[b]" {
		t.Errorf("spliced %v, want [b]", got)
	}
	// The median of 7 handshakes with b (with --reorder 5%, a SYN may
	// skip the delay), in turns with 7 with c, whose link the engine does
	// not hold: what the delay adds is the difference, and the machine's
	// load slows both alike.
	handshakes := func() (b, c time.Duration) {
		t.Helper()
		handshake(1) // the first ones may wait for ARP as well
		handshake(2)
		var hb, hc []time.Duration
		for range 7 {
			hb = append(hb, handshake(1))
			hc = append(hc, handshake(2))
		}
		slices.Sort(hb)
		slices.Sort(hc)
		return hb[3], hc[3]
	}
	if b, c := handshakes(); b < 20*time.Millisecond || b-c > 30*time.Millisecond {
		t.Errorf("handshake with b took %s, with c %s: want 20ms and a little more with b", b, c)
	}
	if _, _, err := ctl.Do(&control.NetCall{Flaky: &control.Flaky{Node: "b", Set: control.FaultDelay}}, nodes); err == nil || !strings.Contains(err.Error(), "--reorder needs a delay") {
		t.Errorf("clearing the delay under --reorder: %v", err)
	}
	if out := do(control.NetCall{Flaky: &control.Flaky{Node: "b"}}); out != "b: link faults cleared" {
		t.Errorf("flaky b without faults: %q", out)
	}
	if got := engine.Spliced(); len(got) != 0 {
		t.Errorf("still spliced: %v", got)
	}
	if b, c := handshakes(); b-c > 10*time.Millisecond {
		t.Errorf("handshake with b took %s after clearing, with c %s: want about the same", b, c)
	}
	if want := []string{"vb {Rate:100000000 Delay:0s Jitter:0s}", "vb {Rate:0 Delay:0s Jitter:0s}", "vb {Rate:100000000 Delay:0s Jitter:0s}", "vb {Rate:0 Delay:0s Jitter:0s}", "vb {Rate:0 Delay:0s Jitter:0s}"}; fmt.Sprint(shaped) != fmt.Sprint(want) {
		t.Errorf("shaped %q, want %q", shaped, want)
	}

	// Refused: nothing changes.
	if _, _, err := ctl.Do(&control.NetCall{Isolate: &partition.Isolate{Nodes: []string{"zz"}}}, nodes); err == nil {
		t.Error("isolate of an unknown node was applied")
	}
	if _, _, err := ctl.Do(&control.NetCall{Flaky: &control.Flaky{Node: "zz"}}, nodes); err == nil || !strings.Contains(err.Error(), "its nodes: a, b, c") {
		t.Errorf("flaky of an unknown node: %v", err)
	}
	if m := matrix(); m != "" {
		t.Errorf("after refused verbs: cut %s", m)
	}
}

// TestDescribe: the words a verb answers with.
func TestDescribe(t *testing.T) {
	nodes := []string{"a", "b", "c"}
	for _, c := range []struct {
		spec partition.Spec
		want string
	}{
		{partition.Heal{}, "every node reaches every node"},
		{partition.Isolate{Nodes: []string{"a"}}, "cut off: a; the other nodes reach each other: 2 nodes (b c)"},
		{partition.Drop{From: "a", To: "b"}, "dropped a -> b"},
		{partition.Isolate{Nodes: []string{"a"}, Uplink: true}, "cut off: a; the other nodes reach each other: 2 nodes (b c); cut from the uplink: a"},
		{partition.Shape{Name: "random-node", Seed: 7}, "cut off: c; the other nodes reach each other: 2 nodes (a b); seed 7"},
		{partition.Disjoint{Clusters: [][]string{{"a"}, {"b", "c"}}}, "2 clusters of 1 and 2 nodes: [a] [b c]"},
	} {
		st, err := c.spec.State(nodes)
		if err != nil {
			t.Fatal(err)
		}
		if got := describe(st, nodes); got != c.want {
			t.Errorf("%+v: %q, want %q", c.spec, got, c.want)
		}
	}
}

// TestDescribeAtScale: at 1000 nodes the words stay short: counts and the
// first few names, the node a random shape cut off, the seed.
func TestDescribeAtScale(t *testing.T) {
	var nodes []string
	for i := 1; i <= 1000; i++ {
		nodes = append(nodes, fmt.Sprintf("n%d", i))
	}
	for _, c := range []struct {
		spec partition.Spec
		want []string
	}{
		{partition.Isolate{Nodes: []string{"n17"}}, []string{"cut off: n17; the other nodes reach each other: 999 nodes (n1 n2 n3 n4 n5 … (999 in all))"}},
		{partition.Shape{Name: "random-node", Seed: 3}, []string{"cut off: n", "; the other nodes reach each other: 999 nodes", "seed 3"}},
		{partition.Shape{Name: "halves", Seed: 3}, []string{"2 clusters of 500 and 500 nodes: [", "… (500 in all)]", "seed 3"}},
		{partition.Shape{Name: "majorities-ring", Seed: 3}, []string{"a ring of 1000 nodes, each reaching the 250 nearest on either side (501 of 1000): ", "seed 3"}},
	} {
		st, err := c.spec.State(nodes)
		if err != nil {
			t.Fatal(err)
		}
		got := describe(st, nodes)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%+v: %q lacks %q", c.spec, got, w)
			}
		}
		if len(got) > 300 {
			t.Errorf("%+v: %d characters: %q", c.spec, len(got), got)
		}
	}
}

// TestLossIsExact sends 20,000 datagrams through a lossy port and counts
// what nftables dropped: --loss 0.3% drops about 60 of them (it was
// rounded to 0% once, and 0.5% to 1%), and 99.9% lets about 20 through
// (it was rounded to 100%, a blackout). Datagrams the receiving socket
// had no room for are counted apart (UDP RcvbufErrors of the node's
// namespace), so that only the rule's drops count.
func TestLossIsExact(t *testing.T) {
	p, n, nodeNS, nodes := kernelRun(t, "nodes:\n  a: {ip: 172.18.0.2}\n  b: {ip: 172.18.0.3}\n")
	ctl := New(n.BridgeNS(), "", func(string, netsetup.Shaping) error { return nil }, nil)
	// rcvbufErrors reads UDP RcvbufErrors of the namespace of a.
	rcvbufErrors := func() int {
		var v int
		if err := nsfd.Do(nodeNS[0], func() error {
			b, err := os.ReadFile("/proc/thread-self/net/snmp")
			if err != nil {
				return err
			}
			var head []string
			for _, l := range strings.Split(string(b), "\n") {
				f := strings.Fields(l)
				if len(f) == 0 || f[0] != "Udp:" {
					continue
				}
				if head == nil {
					head = f
					continue
				}
				for i, h := range head {
					if h == "RcvbufErrors" && i < len(f) {
						fmt.Sscan(f[i], &v)
					}
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	// send sends count datagrams from b to a (a's port is the lossy one)
	// and returns how many the rules dropped.
	send := func(count int) int {
		var conn *net.UDPConn
		if err := nsfd.Do(nodeNS[0], func() error {
			var err error
			conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: p.Nodes[0].Addr.AsSlice(), Port: 9100})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetReadBuffer(4 << 20)
		got := make(chan int)
		go func() {
			buf := make([]byte, 64)
			k := 0
			for {
				_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				if _, err := conn.Read(buf); err != nil {
					got <- k
					return
				}
				k++
			}
		}()
		before := rcvbufErrors()
		if err := nsfd.Do(nodeNS[1], func() error {
			c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: p.Nodes[0].Addr.AsSlice(), Port: 9100})
			if err != nil {
				return err
			}
			defer c.Close()
			for i := 0; i < count; i++ {
				if _, err := c.Write([]byte("x")); err != nil {
					return err
				}
				if i%50 == 49 {
					time.Sleep(100 * time.Microsecond) // let the receiver keep up
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		received := <-got
		return count - received - (rcvbufErrors() - before)
	}
	flaky := func(ppm uint32) {
		t.Helper()
		if _, _, err := ctl.Do(&control.NetCall{Flaky: &control.Flaky{Node: "a", Faults: control.Faults{LossPPM: ppm}, Set: control.FaultLoss}}, nodes); err != nil {
			t.Fatal(err)
		}
	}
	const count = 20000
	if lost := send(count); lost != 0 {
		t.Fatalf("without loss, the rules dropped %d of %d", lost, count)
	}
	flaky(3000) // 0.3%: 60 expected, standard deviation 7.7
	if lost := send(count); lost < 20 || lost > 120 {
		t.Errorf("--loss 0.3%%: %d of %d dropped, want about 60", lost, count)
	}
	flaky(999_000) // 99.9%: 20 arrive, standard deviation 4.5
	if lost := send(count); count-lost < 2 || count-lost > 60 {
		t.Errorf("--loss 99.9%%: %d of %d arrived, want about 20", count-lost, count)
	}
}
