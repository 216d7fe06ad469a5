package linkengine

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/netsetup"
	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/internal/plan"
	"github.com/nsrun/nsrun/internal/runnet"
	"github.com/nsrun/nsrun/internal/runnet/runnettest"
)

// testRun is a run's network of nodes a, b, c built against the kernel.
type testRun struct {
	net    *runnet.Network
	nodeNS []*os.File
	plan   *plan.Plan
	nodes  []Node
	seq    int // the last ICMP echo sequence number sent
}

func newTestRun(t *testing.T) *testRun {
	t.Helper()
	r := &testRun{}
	r.plan, r.net, r.nodeNS = runnettest.Build(t, "nodes:\n  a: {ip: 172.18.0.2}\n  b: {ip: 172.18.0.3}\n  c: {ip: 172.18.0.4}\n")
	for i, nd := range r.plan.Nodes {
		nodeEnd, engEnd := plan.EngineEnds(nd.Name)
		r.nodes = append(r.nodes, Node{Name: nd.Name, Addrs: []netip.Addr{nd.Addr, nd.Addr6}, Splice: netsetup.Splice{Port: nd.VethPort(), NodeEnd: nodeEnd, EngineEnd: engEnd}, NS: r.nodeNS[i]})
	}
	return r
}

// echo serves UDP echo on node i's port 7.
func (r *testRun) echo(t *testing.T, i int) {
	t.Helper()
	var c net.PacketConn
	if err := nsfd.Do(r.nodeNS[i], func() error {
		var err error
		c, err = net.ListenPacket("udp4", netip.AddrPortFrom(r.plan.Nodes[i].Addr, 7).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo(buf[:n], from)
		}
	}()
}

// rtts measures count round trips of ICMP echoes from node i to node j
// (a raw socket: the test is root of its user namespace), from the send
// to the kernel's receive timestamp: the kernel answers the echo, and
// the test's own scheduling on a busy machine adds nothing.
func (r *testRun) rtts(t *testing.T, i, j, count int) []time.Duration {
	t.Helper()
	var fd int
	if err := nsfd.Do(r.nodeNS[i], func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		t.Fatal(err)
	}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
	to := &unix.SockaddrInet4{Addr: r.plan.Nodes[j].Addr.As4()}
	id := uint16(0x4e00 + i*16 + j)
	var out []time.Duration
	buf, oob := make([]byte, 1500), make([]byte, 128)
	for k := 0; len(out) < count && k < count*3; k++ {
		r.seq++
		seq := uint16(r.seq)
		req := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq)}
		sum := 0x0800 + uint32(id) + uint32(seq)
		cs := ^uint16(sum + sum>>16)
		req[2], req[3] = byte(cs>>8), byte(cs)
		start := time.Now()
		if err := unix.Sendto(fd, req, 0, to); err != nil {
			t.Fatal(err)
		}
		for {
			n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
			if err != nil {
				break // unanswered (the first may wait for ARP)
			}
			ihl := int(buf[0]&0xf) * 4
			if n < ihl+8 || buf[ihl] != 0 || uint16(buf[ihl+4])<<8|uint16(buf[ihl+5]) != id || uint16(buf[ihl+6])<<8|uint16(buf[ihl+7]) != seq {
				continue // not this echo's reply
			}
			out = append(out, arrival(time.Now(), oob[:oobn]).Sub(start))
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(out) < count {
		t.Fatalf("%s -> %s: %d of %d round trips answered", r.plan.Nodes[i].Name, r.plan.Nodes[j].Name, len(out), count)
	}
	return out
}

// interleaved measures count round trips from node i to node j, each
// followed by one from node bi to node bj: the baseline, a path through
// the engine that it does not delay. Measured in turns, both see the
// same load on the machine, and what the engine adds is the difference.
func (r *testRun) interleaved(t *testing.T, i, j, bi, bj, count int) (ds, base []time.Duration) {
	t.Helper()
	r.rtts(t, i, j, 1) // the first may wait for ARP
	r.rtts(t, bi, bj, 1)
	for range count {
		ds = append(ds, r.rtts(t, i, j, 1)...)
		base = append(base, r.rtts(t, bi, bj, 1)...)
	}
	return ds, base
}

func median(ds []time.Duration) time.Duration { return quantile(ds, 0.5) }

// quantile is the q-quantile of ds (nearest rank).
func quantile(ds []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
	return s[int(q*float64(len(s)-1)+0.5)]
}

// stddev is the standard deviation of ds without the round trips a busy
// machine made late: those more than 4 standard deviations (estimated
// from the quartiles, IQR / 1.349 for a normal distribution) from the
// median, where a normal distribution has 1 in 15,000 of its values.
// Within them it is the sample standard deviation, which spreads less
// from one run to the next than the quartiles do (5% against 10% at 200
// values).
func stddev(ds []time.Duration) float64 {
	m, iqr := float64(median(ds)), float64(quantile(ds, 0.75)-quantile(ds, 0.25))/1.349
	var n, sum, sq float64
	for _, d := range ds {
		if x := float64(d); math.Abs(x-m) <= 4*iqr {
			n, sum, sq = n+1, sum+x, sq+x*x
		}
	}
	if n < 2 {
		return 0
	}
	return math.Sqrt(max(0, (sq-sum*sum/n)/(n-1)))
}

// TestPairDelays: a delay matrix between a, b and c shows in the round
// trips of every pair, a change takes effect for the next frames while a
// TCP connection stays up, and clearing it restores the kernel's path
// (the ports under their names on the bridge, no engine ends left).
func TestPairDelays(t *testing.T) {
	r := newTestRun(t)
	for i := range r.nodes {
		r.echo(t, i)
	}
	e := New(r.net.BridgeNS(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer e.Close()
	ms := time.Millisecond
	cfg := Config{Pairs: map[Pair]Faults{
		{"a", "b"}: {Delay: 10 * ms}, {"b", "a"}: {Delay: 10 * ms},
		{"a", "c"}: {Delay: 30 * ms}, {"c", "a"}: {Delay: 5 * ms},
	}}
	if err := e.Set(cfg, r.nodes); err != nil {
		t.Fatal(err)
	}
	if got := e.Spliced(); len(got) != 3 {
		t.Fatalf("spliced %v, want a b c", got)
	}
	want := map[[2]int]time.Duration{{0, 1}: 20 * ms, {1, 0}: 20 * ms, {0, 2}: 35 * ms, {2, 0}: 35 * ms, {1, 2}: 0, {2, 1}: 0}
	// b and c cross the engine both ways without delay: the baseline,
	// in turns with each pair, for what the engine adds.
	for pair, w := range want {
		ds, base := r.interleaved(t, pair[0], pair[1], 1, 2, 15)
		m, added := median(ds), median(ds)-median(base)
		t.Logf("%s -> %s: median %s (shortest %s), b -> c %s, want %s", r.nodes[pair[0]].Name, r.nodes[pair[1]].Name, m, slices.Min(ds), median(base), w)
		if slices.Min(ds) < w {
			t.Errorf("%s -> %s: a round trip of %s, want %s at least", r.nodes[pair[0]].Name, r.nodes[pair[1]].Name, slices.Min(ds), w)
		}
		if added > w+3*ms {
			t.Errorf("%s -> %s: median round trip %s, %s more than b -> c, want %s (+3ms)", r.nodes[pair[0]].Name, r.nodes[pair[1]].Name, m, added, w)
		}
	}
	// A TCP connection from a to b survives a change of the delay and its
	// clearing.
	var ln net.Listener
	if err := nsfd.Do(r.nodeNS[1], func() error {
		var err error
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(r.plan.Nodes[1].Addr, 9000).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(c, c)
			c.Close()
		}
	}()
	var conn net.Conn
	if err := nsfd.Do(r.nodeNS[0], func() error {
		var err error
		conn, err = net.Dial("tcp4", netip.AddrPortFrom(r.plan.Nodes[1].Addr, 9000).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ping := func() time.Duration {
		t.Helper()
		start := time.Now()
		conn.SetDeadline(start.Add(5 * time.Second))
		if _, err := conn.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(conn, b); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	if d := ping(); d < 20*ms {
		t.Errorf("TCP round trip %s before the change, want >= 20ms", d)
	}
	cfg2 := Config{Pairs: map[Pair]Faults{{"a", "b"}: {Delay: 40 * ms}, {"b", "a"}: {Delay: 40 * ms}}}
	if err := e.Set(cfg2, r.nodes); err != nil {
		t.Fatal(err)
	}
	if d := ping(); d < 80*ms || d > 90*ms {
		t.Errorf("TCP round trip %s after the change, want 80ms", d)
	}
	if err := e.Set(Config{}, r.nodes); err != nil {
		t.Fatal(err)
	}
	if d := ping(); d > 5*ms {
		t.Errorf("TCP round trip %s after clearing, want < 5ms", d)
	}
	if got := e.Spliced(); len(got) != 0 {
		t.Errorf("still spliced: %v", got)
	}
	h, err := netsetup.Handle(r.net.BridgeNS())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, n := range r.nodes {
		l, err := h.LinkByName(n.Splice.Port)
		if err != nil || l.Attrs().MasterIndex == 0 {
			t.Errorf("port %s after clearing: %v (on a bridge: %v)", n.Splice.Port, err, err == nil && l.Attrs().MasterIndex != 0)
		}
		for _, end := range []string{n.Splice.NodeEnd, n.Splice.EngineEnd} {
			if _, err := h.LinkByName(end); err == nil {
				t.Errorf("%s left behind", end)
			}
		}
	}
}

// TestReceiveJitter: a node's receive delay with jitter spreads its round
// trips with about the standard deviation asked for. The baseline is the
// same delay without jitter, through the same kind of delay line, in
// turns with it (round trips from b to c, which receives with a 20ms
// delay): a busy machine that wakes the engine late moves and spreads
// both, and the jitter is what a's round trips spread more.
func TestReceiveJitter(t *testing.T) {
	r := newTestRun(t)
	r.echo(t, 1)
	r.echo(t, 2)
	e := New(r.net.BridgeNS(), slog.New(slog.DiscardHandler))
	defer e.Close()
	ms := time.Millisecond
	if err := e.Set(Config{Receive: map[string]Faults{"a": {Delay: 20 * ms, Jitter: 4 * ms}, "c": {Delay: 20 * ms}}}, r.nodes); err != nil {
		t.Fatal(err)
	}
	if got := e.Spliced(); fmt.Sprint(got) != "[a c]" {
		t.Fatalf("spliced %v, want [a c]", got)
	}
	ds, base := r.interleaved(t, 0, 1, 1, 2, 300)
	if m := slices.Min(base); m < 20*ms {
		t.Fatalf("a round trip from b to c of %s, want 20ms at least", m)
	}
	late := median(base) - 20*ms // how late the engine wakes, as a rule
	// Independent spreads add as variances.
	sd := time.Duration(math.Sqrt(max(0, stddev(ds)*stddev(ds)-stddev(base)*stddev(base))))
	t.Logf("median %s (without jitter %s), sd %s (without jitter %s)", median(ds), median(base), sd, time.Duration(stddev(base)))
	if d := median(ds) - late; d < 19*ms || d > 22*ms {
		t.Errorf("median round trip %s, %s less the engine's lateness without jitter, want about 20ms", median(ds), d)
	}
	if sd < 3200*time.Microsecond || sd > 4800*time.Microsecond {
		t.Errorf("standard deviation %s more than without jitter, want 4ms ± 20%%", sd)
	}
}

// TestSpliceTwice: a link taken out of the engine and spliced again
// carries traffic each time, and duplicates show.
func TestSpliceTwice(t *testing.T) {
	r := newTestRun(t)
	r.echo(t, 1)
	e := New(r.net.BridgeNS(), slog.New(slog.DiscardHandler))
	defer e.Close()
	ms := time.Millisecond
	for round, f := range []Faults{{Delay: 10 * ms}, {}, {Delay: 5 * ms}, {}} {
		// c's link is in the engine throughout, for a delay it sends
		// to b: round trips from a to c cross the engine undelayed,
		// the baseline for what the engine adds to a's round trips to b.
		if err := e.Set(Config{Receive: map[string]Faults{"b": f}, Pairs: map[Pair]Faults{{"c", "b"}: {Delay: ms}}}, r.nodes); err != nil {
			t.Fatal(err)
		}
		if got, want := fmt.Sprint(e.Spliced()), map[bool]string{true: "[c]", false: "[b c]"}[f.IsZero()]; got != want {
			t.Errorf("round %d: spliced %s, want %s", round, got, want)
		}
		ds, base := r.interleaved(t, 0, 1, 0, 2, 15)
		m, added := median(ds), median(ds)-median(base)
		t.Logf("round %d (%+v): median %s (shortest %s), through the engine without delay %s", round, f, m, slices.Min(ds), median(base))
		// Every frame waits its delay, whatever the load.
		if slices.Min(ds) < f.Delay {
			t.Errorf("round %d: a round trip of %s, want %s at least", round, slices.Min(ds), f.Delay)
		}
		if added > f.Delay+3*ms {
			t.Errorf("round %d: median %s, %s more than through the engine without delay (%s), want %s (+3ms)", round, m, added, median(base), f.Delay)
		}
	}
	// Every datagram b receives twice: b echoes each twice.
	if err := e.Set(Config{Receive: map[string]Faults{"b": {Duplicate: 1}}}, r.nodes); err != nil {
		t.Fatal(err)
	}
	var c net.Conn
	if err := nsfd.Do(r.nodeNS[0], func() error {
		var err error
		c, err = net.Dial("udp4", netip.AddrPortFrom(r.plan.Nodes[1].Addr, 7).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 5 {
		c.Write([]byte{byte(i)})
		time.Sleep(20 * time.Millisecond) // (the first waits for ARP)
	}
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	got := 0
	for buf := make([]byte, 16); ; got++ {
		if _, err := c.Read(buf); err != nil {
			break
		}
	}
	if got != 10 {
		t.Errorf("%d replies to 5 datagrams, each received twice: want 10", got)
	}
	if st := e.Stats()["b"]; st.Received.Duplicated < 5 {
		t.Errorf("stats: %+v, want 5 duplicated at least", st)
	}
}
