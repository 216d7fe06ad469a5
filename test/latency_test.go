package test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// regionsYAML is fiveYAML with three regions and a latency matrix in the
// issue's syntax, with smaller delays.
const regionsYAML = fiveYAML + `regions:
  us: [n1, n2]
  eu: [n3]
  ap: [n4, n5]
latency:
  us <-> eu: 10ms
  us <-> ap: 20ms ±1ms
  eu -> ap: 15ms
  ap -> eu: 25ms
  n1 <-> n2: 1ms
`

// oneWay is the one-way delay regionsYAML gives from a to b.
func oneWay(a, b string) time.Duration {
	region := map[string]string{"n1": "us", "n2": "us", "n3": "eu", "n4": "ap", "n5": "ap"}
	ms := time.Millisecond
	if a == "n1" && b == "n2" || a == "n2" && b == "n1" {
		return ms
	}
	return map[[2]string]time.Duration{
		{"us", "eu"}: 10 * ms, {"eu", "us"}: 10 * ms,
		{"us", "ap"}: 20 * ms, {"ap", "us"}: 20 * ms,
		{"eu", "ap"}: 15 * ms, {"ap", "eu"}: 25 * ms,
	}[[2]string{region[a], region[b]}]
}

// TestLatencyMatrix: in a run of three regions on this kernel (no netem),
// every pair's round trip matches the file's matrix; net show lists it;
// a cut pair stays cut whatever its delay; a runtime change keeps a live
// TCP stream and shows at once; --clear takes every link back to the
// kernel's path.
func TestLatencyMatrix(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	r := startFive(t, u, regionsYAML)
	var st struct {
		Latency struct {
			Regions map[string][]string `json:"regions"`
			Pairs   []struct {
				From, To string
				Delay    time.Duration `json:"delay_ns"`
			} `json:"pairs"`
		} `json:"latency"`
		Engine struct {
			Spliced []string `json:"spliced"`
		} `json:"engine"`
	}
	if err := json.Unmarshal([]byte(r.netOK(t, "show", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Latency.Regions) != 3 || len(st.Latency.Pairs) != 18 || len(st.Engine.Spliced) != 5 {
		t.Errorf("show --json: regions %v, %d pairs (want 18), spliced %v", st.Latency.Regions, len(st.Latency.Pairs), st.Engine.Spliced)
	}
	// n4 -> n5 is within ap, with no rule: the kernel's own round trip.
	base, _, _, _ := rttStats(r.rtts(t, "n4", "n5", 10))
	for _, a := range fiveNodes {
		for _, b := range fiveNodes {
			if a == b {
				continue
			}
			want := oneWay(a, b) + oneWay(b, a)
			// With the jitter of us <-> ap (1ms each way: 1.4ms a round
			// trip), the median of 15 round trips varies by about
			// 0.45ms: three times that is allowed on either side.
			slack := time.Duration(0)
			if want == 40*time.Millisecond {
				slack = 1400 * time.Microsecond
			}
			med, _, _, _ := rttStats(r.rtts(t, a, b, 15))
			t.Logf("%s -> %s: median %s, want %s", a, b, med, want)
			if med < want-slack || med > want+slack+base+1500*time.Microsecond {
				t.Errorf("%s -> %s: median round trip %s, want %s (±%s of jitter, + the link's own %s, within 1.5ms)", a, b, med, want, slack, base)
			}
		}
	}
	// Delay and partition are one state: a cut pair stays cut.
	r.netOK(t, "isolate", "n3")
	if out := r.exec(t, "n1", "probe", "dial", "n3:9000", "1s").Stdout; !strings.HasPrefix(out, "unreachable") {
		t.Errorf("n1 -> n3 under isolate n3 with a delay: %q", out)
	}
	r.netOK(t, "fullmesh")
	// A live stream from n3 (eu) to n1 (us) survives a change of its
	// delay, which shows in the next ticks.
	s := r.follow(t, "n1", "n3:9001")
	time.Sleep(time.Second) // ticks (50ms apart) at the old delay
	r.netOK(t, "latency", "eu", "us", "60ms", "--one-way")
	changed := time.Now().UnixMilli()
	if !eventually(5*time.Second, func() bool { return countAfter(s.ticks(), changed+100) >= 5 }) {
		t.Fatalf("the stream stopped after the change:\n%s", s.lines.all())
	}
	ts := s.ticks()
	for i := 1; i < len(ts); i++ {
		if ts[i].N != ts[i-1].N+1 {
			t.Errorf("tick %d follows tick %d: the stream broke", ts[i].N, ts[i-1].N)
		}
	}
	// Each tick's one-way time, sent to received (user space at both
	// ends: a busy machine adds to it, never takes away): before the
	// change about 10ms, and from the first tick sent after it 60ms.
	var before, after []time.Duration
	for _, tk := range ts[5:] { // (the first ones waited for the connection)
		lat := time.Duration(tk.Received-tk.Sent) * time.Millisecond
		switch {
		case tk.Sent < changed-200:
			before = append(before, lat)
		case tk.Sent > changed+5:
			after = append(after, lat)
			if lat < 59*time.Millisecond {
				t.Errorf("tick %d, sent after the change, took %s: want 60ms", tk.N, lat)
			}
		}
	}
	if len(before) == 0 || len(after) == 0 {
		t.Fatalf("ticks before the change: %d, after: %d", len(before), len(after))
	}
	if med, _, _, _ := rttStats(before); med < 9*time.Millisecond || med > 13*time.Millisecond {
		t.Errorf("ticks before the change: median %s, want 10ms", med)
	}
	if med, _, _, _ := rttStats(after); med > 63*time.Millisecond {
		t.Errorf("ticks after the change: median %s, want 60ms", med)
	}
	if out := r.netOK(t, "show"); !strings.Contains(out, "latency eu -> us: 60ms") || !strings.Contains(out, "latency us -> eu: 10ms") {
		t.Errorf("show after net latency eu us 60ms --one-way: %q", out)
	}
	// --clear: no delay anywhere, no link in the engine.
	r.netOK(t, "latency", "--clear")
	if show := r.netOK(t, "show"); strings.Contains(show, "link engine") || strings.Contains(show, "latency ") {
		t.Errorf("show after --clear: %q", show)
	}
	if med, _, _, _ := rttStats(r.rtts(t, "n1", "n4", 10)); med > base+2*time.Millisecond {
		t.Errorf("n1 -> n4 after --clear: median %s, want about %s", med, base)
	}
	if res := r.net(t, "latency", "us", "mars", "5ms"); res.Code != 125 || !strings.Contains(res.Stderr, `"mars" is neither a region nor a node`) {
		t.Errorf("net latency us mars: exit %d, %q", res.Code, res.Stderr)
	}
}

func countAfter(ts []tickLine, sentAfter int64) int {
	n := 0
	for _, tk := range ts {
		if tk.Sent > sentAfter {
			n++
		}
	}
	return n
}

// TestNoDelayNoEngine: a run without delay starts no engine: no link is
// spliced and the bridge namespace has no engine ends.
func TestNoDelayNoEngine(t *testing.T) {
	requireRoot(t) // reads the supervisor's fds for its bridge namespace
	u := unprivileged(t)
	userNamespaces(t, u)
	r := startFive(t, u, fiveYAML)
	var st struct {
		Engine struct {
			Spliced []string `json:"spliced"`
		} `json:"engine"`
	}
	if err := json.Unmarshal([]byte(r.netOK(t, "show", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Engine.Spliced) != 0 {
		t.Errorf("spliced without any delay: %v", st.Engine.Spliced)
	}
	// As root, from outside: no engine ends among the bridge namespace's
	// links, and no packet socket in it (nothing reads frames there).
	ns := r.bridgeNamespace(t)
	links, err := exec.Command("nsenter", "--net="+ns, "ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v %s", err, links)
	}
	for _, n := range fiveNodes {
		for _, end := range []string{"w" + n + "@", "x" + n + "@"} {
			if strings.Contains(string(links), ": "+end) {
				t.Errorf("engine end %s in a run without delay:\n%s", end, links)
			}
		}
		if !strings.Contains(string(links), ": v"+n+"@") {
			t.Errorf("no bridge port v%s:\n%s", n, links)
		}
	}
	sockets, err := exec.Command("nsenter", "--net="+ns, "cat", "/proc/net/packet").CombinedOutput()
	if err != nil {
		t.Fatalf("/proc/net/packet: %v %s", err, sockets)
	}
	if lines := strings.Split(strings.TrimSpace(string(sockets)), "\n"); len(lines) != 1 {
		t.Errorf("packet sockets in the bridge namespace of a run without delay:\n%s", sockets)
	}
}

// burstOrder is the numbers of the datagrams "datagram N" that a capture
// holds to port, in the order captured.
func burstOrder(t *testing.T, file string, port int) []int {
	t.Helper()
	out, err := exec.Command("tshark", "-n", "-r", file, "-Y", fmt.Sprintf("ip.dst == 172.18.0.10 && !icmp && udp.dstport == %d", port), "-T", "fields", "-e", "data").Output()
	if err != nil {
		t.Fatalf("tshark %s: %v", file, err)
	}
	var nums []int
	for _, l := range strings.Fields(string(out)) {
		b, err := hex.DecodeString(l)
		if err != nil {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(string(b), "datagram %d", &n); err == nil {
			nums = append(nums, n)
		}
	}
	return nums
}

// badChecksums counts the frames of a capture that match filter and
// whose IPv4 header checksum is wrong.
func badChecksums(t *testing.T, file, filter string) (int, string) {
	t.Helper()
	n, out := tshark(t, file, `ip.checksum.status == "Bad" && (`+filter+")", "-o", "ip.check_checksum:TRUE")
	if n < 0 {
		t.Fatalf("tshark: %s", out)
	}
	return n, out
}

// TestFlakyReorderDuplicateCorrupt: each of flaky's --reorder,
// --duplicate and --corrupt is seen in a capture of the node's link (the
// capture sees what the link engine hands the node).
func TestFlakyReorderDuplicateCorrupt(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	needPrograms(t, "tshark")
	capDir := ownedDir(t, u, filepath.Join(project(t, map[string]string{"README": "captures\n"}), "cap"))
	r := startRun(t, u, `
nodes:
  srv:
    ip: 172.18.0.10
    command: sh -c 'probe udp-listen 0.0.0.0:9101 & probe udp-listen 0.0.0.0:9102 & probe udp-listen 0.0.0.0:9200 & probe sink 0.0.0.0:9300 & exec probe listen 0.0.0.0:9000'
    ready: tcp:9000
  cli:
    ip: 172.18.0.20
    command: sleep 300
`, "srv   | listening", "--capture", capDir)
	file := filepath.Join(capDir, "srv.pcap")
	burst := func(port int) {
		t.Helper()
		r.exec(t, "cli", "probe", "udp-burst", fmt.Sprintf("srv:%d", port), "200")
		time.Sleep(300 * time.Millisecond) // the last ones wait 20ms
	}
	// Reorder: 30% of what srv receives skips the 20ms delay.
	r.netOK(t, "flaky", "srv", "--delay", "20ms", "--reorder", "30%")
	burst(9101)
	nums := burstOrder(t, file, 9101)
	inversions := 0
	for i := 1; i < len(nums); i++ {
		if nums[i] < nums[i-1] {
			inversions++
		}
	}
	t.Logf("--reorder 30%%: %d datagrams, %d out of order", len(nums), inversions)
	if len(nums) != 200 || inversions < 20 {
		t.Errorf("--reorder 30%%: %d datagrams (want 200), %d out of order (want many)", len(nums), inversions)
	}
	// Duplicate: about half the datagrams arrive twice.
	r.netOK(t, "flaky", "srv")
	r.netOK(t, "flaky", "srv", "--duplicate", "50%")
	burst(9102)
	nums = burstOrder(t, file, 9102)
	seen := map[int]int{}
	for _, n := range nums {
		seen[n]++
	}
	t.Logf("--duplicate 50%%: %d datagrams, %d distinct", len(nums), len(seen))
	if len(seen) != 200 || len(nums) < 260 || len(nums) > 340 {
		t.Errorf("--duplicate 50%%: %d datagrams of %d distinct, want 200 distinct and about 300", len(nums), len(seen))
	}
	// Corrupt: about half the datagrams have a bit flipped past the
	// Ethernet header, and most of those are not "datagram N" any more
	// or fail the IPv4 header checksum.
	r.netOK(t, "flaky", "srv", "--duplicate", "0%", "--corrupt", "50%")
	burst(9200) // (no port one bit away from 9101 or 9102)
	// (A flipped bit may have changed the port, or the protocol: every
	// frame that is not one of the earlier bursts counts.)
	bad, out := badChecksums(t, file, "!(udp.dstport == 9101 || udp.dstport == 9102)")
	t.Logf("--corrupt 50%%: %d with a bad IPv4 header checksum", bad)
	if bad < 20 {
		t.Errorf("--corrupt 50%%: %d frames with a bad IPv4 checksum, want many\n%s", bad, out)
	}
	if n, out := badChecksums(t, file, "udp.dstport == 9101 || udp.dstport == 9102"); n != 0 {
		t.Errorf("bad checksums before --corrupt: %d\n%s", n, out)
	}
	// Corrupt, TCP: a bulk stream's frames cross the engine as 64 KiB
	// segmentation frames, each of which the engine cuts into the
	// segments a device would send before it flips a bit in one; srv's
	// kernel counts each such segment as a TCP checksum error (it used
	// to leave them alone: a few errors, from the small frames). The
	// stream still arrives whole. (20%, not 50%: a lost retransmission
	// doubles the sender's timeout, and at 50% chains of them stalled
	// the stream for a minute.)
	r.netOK(t, "flaky", "srv", "--corrupt", "20%")
	before := tcpCsumErrors(t, r, "srv")
	const bulk = 8 << 20
	if res := r.exec(t, "cli", "probe", "send", "srv:9300", strconv.Itoa(bulk)); res.Code != 0 || strings.TrimSpace(res.Stdout) != fmt.Sprintf("received %d", bulk) {
		t.Fatalf("a TCP stream through --corrupt 20%%: exit %d %q %q", res.Code, res.Stdout, res.Stderr)
	}
	errs := tcpCsumErrors(t, r, "srv") - before
	t.Logf("--corrupt 20%%, TCP: %d segments with a bad checksum in %d bytes", errs, bulk)
	if errs < 20 { // without the cutting: a few, from the small frames
		t.Errorf("--corrupt 20%%: %d TCP segments with a bad checksum in a stream of %d bytes, want many", errs, bulk)
	}
}

// tcpCsumErrors reads InCsumErrors of TCP in node's network namespace
// (/proc/net/snmp, through net exec).
func tcpCsumErrors(t *testing.T, r *liveRun, node string) int {
	t.Helper()
	res := r.exec(t, node, "cat", "/proc/net/snmp")
	var names []string
	for _, line := range strings.Split(res.Stdout, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == "InCsumErrors" && i < len(f) {
				n, err := strconv.Atoi(f[i])
				if err == nil {
					return n
				}
			}
		}
	}
	t.Fatalf("no Tcp InCsumErrors in %s's /proc/net/snmp: %q %q", node, res.Stdout, res.Stderr)
	return 0
}

// TestLatencyKilled: SIGKILL of nsrun while frames pass through the link
// engine leaves nothing behind: no process of the run, no state folder,
// no bridge namespace (the engine's ends went with it).
func TestLatencyKilled(t *testing.T) {
	requireRoot(t) // reads the supervisor's fds for its bridge namespace
	u := unprivileged(t)
	userNamespaces(t, u)
	r := startFive(t, u, regionsYAML)
	r.follow(t, "n1", "n4:9001") // a stream through the engine
	dir := r.runDir(t)
	ns := r.bridgeNamespace(t)
	nsID, err := os.Readlink(ns)
	if err != nil {
		t.Fatal(err)
	}
	procs := followRun(t, r.rc.cmd.Process.Pid)
	_ = r.rc.cmd.Process.Signal(syscall.SIGKILL)
	r.rc.wait()
	if !eventually(10*time.Second, func() bool { return len(procs.live()) == 0 }) {
		t.Fatalf("processes of the run left after SIGKILL of nsrun: %v", procs.live())
	}
	if !eventually(5*time.Second, func() bool { _, err := os.Stat(dir); return os.IsNotExist(err) }) {
		t.Errorf("the run's folder %s is left after SIGKILL of nsrun", dir)
	}
	// No process on the machine holds the bridge namespace any more.
	held := func() []string {
		var out []string
		links, _ := filepath.Glob("/proc/[0-9]*/ns/net")
		for _, l := range links {
			if id, err := os.Readlink(l); err == nil && id == nsID {
				out = append(out, l)
			}
		}
		return out
	}
	if !eventually(10*time.Second, func() bool { return len(held()) == 0 }) {
		t.Errorf("the bridge namespace %s is still held: %v", nsID, held())
	}
}

// TestLatencyBadFiles: every bad input of regions: and latency: is
// refused by nsrun up at file:line:col, naming the field and the fix, and
// nothing starts (no run folder).
func TestLatencyBadFiles(t *testing.T) {
	u := unprivileged(t)
	head := "nodes:\n  n1: {ip: 172.18.0.1}\n  n2: {ip: 172.18.0.2}\n  n3: {ip: 172.18.0.3}\nregions:\n  us: [n1, n2]\n  eu: [n3]\n"
	files := map[string][2]string{
		"unknown-node.yaml": {"nodes:\n  n1: {ip: 172.18.0.1}\nregions:\n  us: [n1, n9]\n", `unknown-node.yaml:4:12: regions.us: no node named "n9"`},
		"two-regions.yaml":  {head + "  ap: [n3]\n", "two-regions.yaml:8:8: regions.ap: node n3 is already in region eu; a node is in at most one region"},
		"unknown.yaml":      {head + "latency:\n  us <-> mars: 40ms\n", `unknown.yaml:9:3: latency: "mars" is neither a region nor a node`},
		"twice.yaml":        {head + "latency:\n  us <-> eu: 40ms\n  eu -> us: 50ms\n", "twice.yaml:10:3: latency: eu -> us is given twice, as 40ms (us <-> eu: 40ms) and 50ms; give each pair one value"},
		"negative.yaml":     {head + "latency:\n  us <-> eu: -40ms\n", "negative.yaml:9:14: latency.us <-> eu: delay -40ms is negative"},
		"absurd.yaml":       {head + "latency:\n  us <-> eu: 2m\n", "absurd.yaml:9:14: latency.us <-> eu: delay 2m0s is over 1m0s; write a shorter delay"},
		"jitter.yaml":       {head + "latency:\n  us <-> eu: 5ms ±10ms\n", "jitter.yaml:9:14: latency.us <-> eu: jitter 10ms is larger than the delay 5ms"},
		"malformed.yaml":    {head + "latency:\n  us <-> eu: 40 ms\n", `malformed.yaml:9:14: latency.us <-> eu: "40 ms": write a duration such as 40ms`},
		"arrow.yaml":        {head + "latency:\n  us <- eu: 40ms\n", `arrow.yaml:9:3: latency: "us <- eu": write A <-> B (both ways) or A -> B (one way)`},
	}
	contents := map[string]string{}
	for name, f := range files {
		contents[name] = f[0]
	}
	dir := project(t, contents)
	before := u.runDirs()
	for name, f := range files {
		u.upRefused(t, dir, f[1], "-f", name)
	}
	if after := u.runDirs(); len(after) != len(before) {
		t.Errorf("bad files created run folders: %v", after)
	}
}
