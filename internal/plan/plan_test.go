package plan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/topology"
)

func parse(t *testing.T, yaml string) *topology.Topology {
	t.Helper()
	top, err := topology.Parse("f.yaml", t.TempDir(), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return top
}

func input(top *topology.Topology) Input {
	return Input{
		Top: top,
		Run: Run{ID: "0123abcd", Dir: "/run/x/runs/0123abcd", RuntimeDir: "/run/x", File: top.File, Up: true, StopTimeout: 10 * time.Second},
		Dir: "/work",
		Env: []string{"PATH=/bin"},
	}
}

const twoSubnets = `
subnets:
  front: 172.18.0.0/24
  back: 172.18.1.0/24
nodes:
  web:
    ip: 172.18.0.2
    hostname: web1
    command: [python3, -m, http.server]
    environment: {ROLE: web}
    depends_on: [db]
    ports: ["8080:8000"]
  db:
    ip: 172.18.1.10
    command: redis-server
    ready: tcp:6379
    capture: true
  vm:
    ip: 172.18.1.20
    tap: {link0: front, link1: back}
`

func TestBuild(t *testing.T) {
	in := input(parse(t, twoSubnets))
	in.Uplink = &UplinkInput{GatewayNS: "/run/user/1/nsrun/netns", Pool: netip.MustParsePrefix("172.18.192.0/19"), HostDNS: netip.MustParseAddrPort("172.18.255.1:53")}
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Bridges) != 2 || p.Bridges[1] != (Bridge{Name: "br1", Subnet: "back", Prefix: netip.MustParsePrefix("172.18.1.0/24"), Router: netip.MustParseAddr("172.18.1.254"),
		Prefix6: netip.MustParsePrefix("fd00:ac12:100::/64"), Router6: netip.MustParseAddr("fd00:ac12:100::fe")}) {
		t.Errorf("bridges: %+v", p.Bridges)
	}
	if !p.Forward {
		t.Error("two subnets and an uplink, but no forwarding")
	}
	if u := p.Uplink; u == nil || u.Port != "uplink" || u.GatewayPort != "nr0123abcd" || u.LeaseDir != "/run/x/leases" || u.HostDNS.Port() != 53 {
		t.Errorf("uplink: %+v", p.Uplink)
	}
	var order []string
	for _, n := range p.Nodes {
		order = append(order, n.Name)
	}
	if strings.Join(order, " ") != "db web vm" {
		t.Errorf("start order %v, want db web vm", order)
	}
	db, web, vm := p.Nodes[0], p.Nodes[1], p.Nodes[2]
	if want := (Link{Kind: Veth, Node: "web", Bridge: 0, Port: "vweb", Inside: "eth0",
		Addr: netip.MustParsePrefix("172.18.0.2/24"), Gateway: netip.MustParseAddr("172.18.0.254"),
		Addr6: netip.MustParsePrefix("fd00:ac12::2/64"), Gateway6: netip.MustParseAddr("fd00:ac12::fe")}); len(web.Links) != 1 || web.Links[0] != want {
		t.Errorf("web's links: %+v, want %+v", web.Links, want)
	}
	if web.Dir != "/work" || strings.Join(web.Argv, " ") != "python3 -m http.server" || strings.Join(web.Env, " ") != "ROLE=web" {
		t.Errorf("web's command: %+v", web.Command)
	}
	if web.Ready.Kind != ReadyNone || db.Ready != (Ready{Kind: ReadyTCP, Addr: netip.MustParseAddrPort("172.18.1.10:6379"), Timeout: ReadyTimeout, Interval: readyInterval}) {
		t.Errorf("ready: web %+v, db %+v", web.Ready, db.Ready)
	}
	if len(web.Publish) != 1 || web.Publish[0] != (Publish{Host: netip.MustParseAddrPort("127.0.0.1:8080"), Target: netip.MustParseAddrPort("172.18.0.2:8000"), Pos: topology.Pos{Line: 12, Column: 13}}) {
		t.Errorf("web publishes %+v", web.Publish)
	}
	if p.Capture == nil || !strings.HasSuffix(p.Capture.Log, "/capture/nsrun.log") || !strings.HasSuffix(db.Links[0].Capture, "/capture/db.pcap") || web.Links[0].Capture != "" {
		t.Errorf("capture %+v, db %+v, web %+v", p.Capture, db.Links, web.Links)
	}
	if len(vm.Links) != 2 || vm.Links[0].Kind != Tap || vm.Links[0].Port != "tvm.link0" || vm.Links[0].Bridge != 0 ||
		vm.Links[1].Bridge != 1 || vm.Links[1].TapPeer != "tp-link1" || vm.Links[1].TapBridge != "tb-link1" || vm.VethPort() != "" {
		t.Errorf("vm's links: %+v", vm.Links)
	}
	// Both addresses of every node, IPv4 first.
	if len(p.Hosts) != 6 || strings.Join(p.Hosts[2].Names, " ") != "web1 web" || p.Hosts[3].Addr != netip.MustParseAddr("fd00:ac12::2") {
		t.Errorf("hosts: %+v", p.Hosts)
	}
	if m := p.NodeMounts(&db); m["/etc/resolv.conf"] != "resolv-1.conf" || len(m) != 1 || p.NodeMounts(&web) != nil {
		t.Errorf("mounts of db %v, of web %v", m, p.NodeMounts(&web))
	}
	if len(p.Mounts) != 4 || p.Mounts[1].Kind != GaiFile || p.Mounts[3].Nameserver != netip.MustParseAddr("172.18.1.254") {
		t.Errorf("mounts: %+v", p.Mounts)
	}
}

// TestBuildJSON checks the plan's form for scripts: typed values as text.
func TestBuildJSON(t *testing.T) {
	p, err := Build(input(parse(t, twoSubnets)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"prefix":"172.18.1.0/24"`, `"router":"172.18.1.254"`, `"kind":"tap"`, `"port":"tvm.link0"`,
		`"addr":"172.18.0.2/24"`, `"ready":{"kind":"tcp","addr":"172.18.1.10:6379","timeout_ns":60000000000`,
		`"host":"127.0.0.1:8080"`, `"mode":"caller"`, `"stop_timeout_ns":10000000000`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
	for _, want := range []string{`"prefix6":"fd00:ac12:100::/64"`, `"router6":"fd00:ac12:100::fe"`, `"addr6":"fd00:ac12::2/64"`, `"gateway6":"fd00:ac12::fe"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
	for _, not := range []string{"PATH=/bin"} {
		if bytes.Contains(b, []byte(not)) {
			t.Errorf("JSON has %s:\n%s", not, b)
		}
	}
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("plan JSON does not read back: %v", err)
	}
	if back.Nodes[2].Links[1].Addr.IsValid() || back.Bridges[0].Router != p.Bridges[0].Router {
		t.Errorf("read back: %+v", back.Bridges)
	}
}

func TestWrite(t *testing.T) {
	p, err := Build(input(parse(t, twoSubnets)))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := p.Write(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"bridge br1    subnet back       172.18.1.0/24      router 172.18.1.254, fd00:ac12:100::/64 router fd00:ac12:100::fe",
		"no uplink: isolated",
		"veth eth0 172.18.0.2/24 via 172.18.0.254 fd00:ac12::2/64 via fd00:ac12::fe, bridge port vweb on br0",
		"tap link1 (joined by bridge tb-link1 to veth tp-link1), bridge port tvm.link1 on br1",
		"ready when 172.18.1.10:6379 accepts TCP (within 1m0s)",
		"publishes 127.0.0.1:8080 -> 172.18.0.2:8000",
		"own mount: /etc/resolv.conf from resolv-1.conf",
		"starts once db is up",
		"hosts, mounted on /etc/hosts for every node: localhost and\n    172.18.1.10\tdb\n    fd00:ac12:100::a\tdb\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan text lacks %q:\n%s", want, out)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"tap ports clash", `
nodes:
  a.b: {ip: 172.18.0.2, tap: [c]}
  a: {ip: 172.18.0.3, tap: [b.c]}
`, `f.yaml:4:29: nodes.a.tap.b.c: the bridge port of tap b.c of node a gets the interface name "ta.b.c" in the bridge namespace, which is already the bridge port of tap c of node a.b (nodes.a.b.tap.c at line 3); rename one of the nodes or taps`},
		{"capture files clash", `
nodes:
  a.b: {ip: 172.18.0.2, capture: true}
  a: {ip: 172.18.0.3, tap: [b], capture: true}
`, `f.yaml:4:29: nodes.a.tap.b: the capture of tap b of node a gets the capture file "a.b.pcap" in `},
		{"tap inside the node", `
nodes:
  vm: {ip: 172.18.0.2, tap: [x, tp-x]}
`, `f.yaml:3:33: nodes.vm.tap.tp-x: the tap device of tap tp-x of node vm gets the interface name "tp-x" in node vm's namespace, which is already the node's end of its veth of tap x of node vm`},
		{"tap named lo", `
nodes:
  vm: {ip: 172.18.0.2, tap: [lo]}
`, `nodes.vm.tap.lo: the tap device of tap lo of node vm gets the interface name "lo" in node vm's namespace, which is already the loopback`},
		{"unknown node", "nodes:\n  a: {ip: 172.18.0.2}\n", `up: no node "zz" in f.yaml; its nodes: a`},
	} {
		in := input(parse(t, tc.yaml))
		if tc.name == "unknown node" {
			in.Select = []string{"zz"}
		}
		_, err := Build(in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error\n%v\nwant one containing\n%s", tc.name, err, tc.want)
		}
	}
}

// TestBuildBridgePorts: a subnet takes 1,023 nodes, the ports of one
// Linux bridge; the next node is refused at its name, and two subnets
// take 2,000.
func TestBuildBridgePorts(t *testing.T) {
	gen := func(n int, subnets string, ip func(i int) string) string {
		var b strings.Builder
		b.WriteString("subnets:\n" + subnets + "nodes:\n")
		for i := range n {
			fmt.Fprintf(&b, "  n%d: {ip: %s}\n", i+1, ip(i))
		}
		return b.String()
	}
	one := func(i int) string { return fmt.Sprintf("172.18.%d.%d", i/250, i%250+1) }
	if _, err := Build(input(parse(t, gen(MaxBridgePorts, "  s: 172.18.0.0/20\n", one)))); err != nil {
		t.Errorf("%d nodes in one subnet: %v", MaxBridgePorts, err)
	}
	_, err := Build(input(parse(t, gen(MaxBridgePorts+1, "  s: 172.18.0.0/20\n", one))))
	want := fmt.Sprintf("f.yaml:%d:3: nodes.n1024: subnet s would have more than 1023 nodes (and taps), more than a Linux bridge takes; put some of them in another subnet", MaxBridgePorts+1+3)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("1024 nodes in one subnet: %v\nwant an error containing %s", err, want)
	}
	two := func(i int) string { return fmt.Sprintf("172.18.%d.%d", 4*(i/1000)+i%1000/250, i%250+1) }
	if _, err := Build(input(parse(t, gen(2000, "  a: 172.18.0.0/22\n  b: 172.18.4.0/22\n", two)))); err != nil {
		t.Errorf("2000 nodes in two subnets: %v", err)
	}
}

func TestBuildInputErrors(t *testing.T) {
	top := parse(t, "subnets:\n  x: 172.18.192.0/24\nnodes:\n  a: {ip: 172.18.192.2, command: 'true'}\n  b: {ip: 172.18.192.3}\n")
	in := input(top)
	in.Uplink = &UplinkInput{Pool: netip.MustParsePrefix("172.18.192.0/19")}
	if _, err := Build(in); err == nil || !strings.Contains(err.Error(), "f.yaml:2:6: subnets.x: 172.18.192.0/24 overlaps the run uplinks 172.18.192.0/19") {
		t.Errorf("overlap: %v", err)
	}
	in = input(top)
	in.Run.ExitCodeFrom = "b"
	if _, err := Build(in); err == nil || !strings.Contains(err.Error(), "--exit-code-from b: no started node of that name has a command") {
		t.Errorf("exit-code-from: %v", err)
	}
	in = input(top)
	in.LogLevel = "loud"
	if _, err := Build(in); err == nil || !strings.Contains(err.Error(), `--log-level "loud": write debug, info, warn or error`) {
		t.Errorf("log level: %v", err)
	}
	in = input(top)
	in.LogLevel = "debug"
	if p, err := Build(in); err != nil || !p.Run.Log.Stderr || p.Run.Log.Level.String() != "DEBUG" {
		t.Errorf("log level debug: %+v, %v", p, err)
	}
}

// TestBuildSelect starts named nodes with what they depend on.
func TestBuildSelect(t *testing.T) {
	in := input(parse(t, twoSubnets))
	in.Select = []string{"web"}
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Nodes) != 2 || p.Nodes[0].Name != "db" || p.Nodes[1].Name != "web" || len(p.Hosts) != 4 {
		t.Errorf("selected: %+v", p.Nodes)
	}
}

// TestBuildLongNames: names too long for an interface are hashed, and
// the hashes do not clash.
func TestBuildLongNames(t *testing.T) {
	long := strings.Repeat("n", 40)
	p, err := Build(input(parse(t, "nodes:\n  "+long+"1: {ip: 172.18.0.2}\n  "+long+"2: {ip: 172.18.0.3}\n")))
	if err != nil {
		t.Fatal(err)
	}
	a, b := p.Nodes[0].Links[0].Port, p.Nodes[1].Links[0].Port
	if len(a) != 15 || len(b) != 15 || a == b || a[0] != 'v' {
		t.Errorf("ports %q and %q", a, b)
	}
}

// TestBuildRefusesHostPool: with the helper, a subnet that overlaps its
// pool of host links (IPv4 or IPv6) is refused at the file, naming the
// pool and the fix; without the helper (an isolated run) it is a subnet
// like any other.
func TestBuildRefusesHostPool(t *testing.T) {
	uplink := func() *UplinkInput {
		return &UplinkInput{Pool: netip.MustParsePrefix("172.18.192.0/19"), IPv6: true,
			HostPool: netip.MustParsePrefix("172.18.255.0/24"), HostPool6: netip.MustParsePrefix("fd6e:7372::/48")}
	}
	for file, want := range map[string]string{
		"subnets:\n  x: 172.18.255.0/24\nnodes:\n  a: {ip: 172.18.255.9}\n":                             "f.yaml:2:6: subnets.x: 172.18.255.0/24 overlaps nsrun-helper's host links 172.18.255.0/24 (host-cidr), so nodes could not reach the host; pick another subnet, such as 172.18.1.0/24",
		"subnets:\n  x: 172.18.255.128/25\nnodes:\n  a: {ip: 172.18.255.129}\n":                         "f.yaml:2:6: subnets.x: 172.18.255.128/25 overlaps nsrun-helper's host links",
		"subnets:\n  x: 172.18.0.0/16\nnodes:\n  a: {ip: 172.18.0.9}\n":                                 "overlaps the run uplinks",
		"subnets:\n  x: {ipv4: 172.18.1.0/24, ipv6: 'fd6e:7372::/64'}\nnodes:\n  a: {ip: 172.18.1.9}\n": "f.yaml:2:34: subnets.x: fd6e:7372::/64 overlaps nsrun-helper's IPv6 host links fd6e:7372::/48 (host-cidr6), so nodes could not reach the host; pick another /64",
		"subnets:\n  x: 'fd6e:7372:0:5::/64'\nnodes:\n  a: {ip6: 'fd6e:7372:0:5::9'}\n":                 "f.yaml:2:6: subnets.x: fd6e:7372:0:5::/64 overlaps nsrun-helper's IPv6 host links",
	} {
		top := parse(t, file)
		in := input(top)
		in.Uplink = uplink()
		if _, err := Build(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v\nwant %q", file, err, want)
		}
		if !strings.Contains(want, "run uplinks") {
			if _, err := Build(input(top)); err != nil {
				t.Errorf("%q isolated: %v", file, err)
			}
		}
	}
	in := input(parse(t, "subnets:\n  x: 172.18.254.0/24\nnodes:\n  a: {ip: 172.18.254.9}\n"))
	in.Uplink = uplink()
	if _, err := Build(in); err != nil {
		t.Errorf("a subnet beside the pool: %v", err)
	}
}
