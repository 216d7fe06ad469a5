package plan

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/nsrun/nsrun/internal/topology"
	"github.com/nsrun/nsrun/ipam"
)

// ReadyTimeout bounds how long a node's ready check may take, unless the
// file sets its own (`ready: {check: tcp:PORT, timeout: 2m}`).
const ReadyTimeout = 60 * time.Second

// readyInterval is the pause between two ready checks.
const readyInterval = 50 * time.Millisecond

// Input is what a plan is built from: a validated topology (for
// `nsrun -- CMD`, one of a single node), the command line's settings and
// what the launcher found.
type Input struct {
	Top *topology.Topology
	// Select names the nodes to start (with what they depend on); none:
	// every node.
	Select []string
	// Run is the run's identity and how it ends; Log is set from
	// LogLevel.
	Run      Run
	LogLevel string // --log-level; "" for a quiet run
	User     User
	Env      []string // nsrun's environment
	Dir      string   // nsrun's working folder
	// CaptureAll captures every link (--capture); CaptureDir is where
	// pcap files go ("" for the file's folder's capture/).
	CaptureAll bool
	CaptureDir string
	// Uplink is set when the run joined nsrun-helper's gateway.
	Uplink *UplinkInput
}

// UplinkInput is what nsrun-helper installed for the user.
type UplinkInput struct {
	GatewayNS string
	Pool      netip.Prefix
	// HostPool and HostPool6 are the helper's pools of host links
	// (install.Record.HostPools); no subnet may overlap them.
	HostPool, HostPool6 netip.Prefix
	HostDNS             netip.AddrPort // zero: no resolver
	// IPv6: the gateway has a static IPv6 uplink to the host (the
	// helper's record has gateway_addr6), so the run's uplink carries
	// IPv6 too.
	IPv6 bool
	// Host and Host6 are the host's own addresses on the helper's host
	// link (install.Record's host_addr and host_addr6): what nodes know
	// as HostName and $NSRUN_HOST. Either may be invalid.
	Host, Host6 netip.Addr
}

// HostName is the name of the host's nsrun address in every node's
// /etc/hosts, as docker's host.docker.internal.
const HostName = "host.nsrun.internal"

// hasIPv6 reports whether some bridge of p has an IPv6 /64.
func (p *Plan) hasIPv6() bool {
	for _, b := range p.Bridges {
		if b.Prefix6.IsValid() {
			return true
		}
	}
	return false
}

// checkUplinkOverlap refuses a subnet that overlaps what nsrun-helper's
// uplink uses: the runs' uplinks, or the pool of host links (whose host
// address the subnet's nodes would look for on their own link). Errors
// name the file, line and column of the prefix.
func checkUplinkOverlap(file string, s topology.Subnet, u *UplinkInput) error {
	if u == nil {
		return nil
	}
	if s.HasIPv4() && u.Pool.Overlaps(s.Prefix) {
		return topology.ErrorAt(file, s.Pos4, "subnets.%s: %s overlaps the run uplinks %s of nsrun-helper; pick another subnet, or reinstall with another --runs-cidr", s.Name, s.Prefix, u.Pool)
	}
	if s.HasIPv4() && u.HostPool.IsValid() && u.HostPool.Overlaps(s.Prefix) {
		return topology.ErrorAt(file, s.Pos4, "subnets.%s: %s overlaps nsrun-helper's host links %s (host-cidr), so nodes could not reach the host; pick another subnet, such as 172.18.1.0/24", s.Name, s.Prefix, u.HostPool)
	}
	if !s.HasIPv6() {
		return nil
	}
	if u.IPv6 && ipam.PairRange6(u.Pool).Overlaps(s.Prefix6) {
		return topology.ErrorAt(file, s.Pos6, "subnets.%s: %s overlaps the IPv6 run uplinks %s (the runs' IPv4 uplinks %s, mapped as subnets are); pick another /64", s.Name, s.Prefix6, ipam.PairRange6(u.Pool), u.Pool)
	}
	if u.HostPool6.IsValid() && u.HostPool6.Overlaps(s.Prefix6) {
		return topology.ErrorAt(file, s.Pos6, "subnets.%s: %s overlaps nsrun-helper's IPv6 host links %s (host-cidr6), so nodes could not reach the host; pick another /64, such as fd00:ac12:100::/64", s.Name, s.Prefix6, u.HostPool6)
	}
	return nil
}

// MaxBridgePorts is how many links (nodes' veths and taps) one subnet's
// bridge takes: the Linux bridge numbers its ports with 10 bits, port 0
// reserved (BR_MAX_PORTS); the next one fails with EXFULL.
const MaxBridgePorts = 1023

// countPorts adds node tn's links to ports (by bridge) and refuses the
// node whose link would be one more than a bridge takes, at its name.
func countPorts(ports []int, top *topology.Topology, tn topology.Node) error {
	bridges := []int{tn.Subnet}
	if len(tn.Taps) > 0 {
		bridges = bridges[:0]
		for _, tp := range tn.Taps {
			bridges = append(bridges, tp.Subnet)
		}
	}
	for _, b := range bridges {
		if ports[b]++; ports[b] > MaxBridgePorts {
			return topology.ErrorAt(top.File, tn.Pos, "nodes.%s: subnet %s would have more than %d nodes (and taps), more than a Linux bridge takes; put some of them in another subnet (subnets: {a: 172.18.0.0/22, b: 172.18.4.0/22})",
				tn.Name, top.Subnets[b].Name, MaxBridgePorts)
		}
	}
	return nil
}

// Build makes the plan of in, checking every derived name for clashes.
// Errors name the file, line and column (for a file), the field and the
// fix.
func Build(in Input) (*Plan, error) {
	top := in.Top
	p := &Plan{Run: in.Run, User: in.User, Env: in.Env}
	if in.LogLevel != "" {
		if err := p.Run.Log.Level.UnmarshalText([]byte(in.LogLevel)); err != nil {
			return nil, fmt.Errorf("--log-level %q: write debug, info, warn or error", in.LogLevel)
		}
		p.Run.Log.Stderr = true
	} else {
		p.Run.Log.Level = slog.LevelInfo
	}
	nodes, err := selectNodes(top, in.Select)
	if err != nil {
		return nil, err
	}
	if name := in.Run.ExitCodeFrom; name != "" {
		found := false
		for _, n := range nodes {
			found = found || n.Name == name && len(n.Argv) > 0
		}
		if !found {
			return nil, fmt.Errorf("--exit-code-from %s: no started node of that name has a command", name)
		}
	}
	for i, s := range top.Subnets {
		if err := checkUplinkOverlap(top.File, s, in.Uplink); err != nil {
			return nil, err
		}
		p.Bridges = append(p.Bridges, Bridge{Name: BridgeName(i), Subnet: s.Name, Prefix: s.Prefix, Router: s.Bridge, Prefix6: s.Prefix6, Router6: s.Bridge6})
	}
	p.Forward = len(p.Bridges) > 1 || in.Uplink != nil
	p.Latency = in.Top.Latency
	if u := in.Uplink; u != nil {
		p.Uplink = &Uplink{
			GatewayNS:   u.GatewayNS,
			Pool:        u.Pool,
			LeaseDir:    filepath.Join(in.Run.RuntimeDir, "leases"),
			Port:        UplinkPort,
			GatewayPort: GatewayPort(in.Run.ID),
			HostDNS:     u.HostDNS,
			IPv6:        u.IPv6 && p.hasIPv6(),
			Host:        u.Host,
		}
		if p.Uplink.IPv6 {
			p.Uplink.Host6 = u.Host6
		}
		for _, a := range []netip.Addr{p.Uplink.Host, p.Uplink.Host6} {
			if a.IsValid() {
				p.Hosts = append(p.Hosts, HostEntry{Addr: a, Names: []string{HostName}})
			}
		}
		for _, b := range p.Bridges {
			if u.HostDNS.IsValid() && !b.Prefix.IsValid() && b.Router6.IsValid() {
				p.Uplink.DNSRelays = append(p.Uplink.DNSRelays, netip.AddrPortFrom(b.Router6, 53))
			}
		}
	}
	capture := in.CaptureAll
	for _, n := range nodes {
		capture = capture || n.Capture
	}
	if capture {
		dir := in.CaptureDir
		if dir == "" {
			dir = filepath.Join(filepath.Dir(top.File), "capture")
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("--capture: %w", err)
		}
		p.Capture = &Capture{Dir: abs, Log: filepath.Join(abs, CaptureLog)}
	}
	ports := make([]int, len(p.Bridges)) // links on each bridge so far
	for _, tn := range nodes {
		if err := countPorts(ports, top, tn); err != nil {
			return nil, err
		}
		n := Node{
			Name: tn.Name, Hostname: tn.Hostname, Subnet: tn.Subnet, Addr: tn.Addr, Addr6: tn.Addr6,
			Command:   Command{Argv: tn.Argv, Env: tn.Env, Dir: tn.Dir},
			DependsOn: tn.DependsOn, Conditions: tn.Conditions, Health: tn.Health, Restart: tn.Restart, Tmpfs: tn.Tmpfs,
			Control: tn.Control,
		}
		if n.Dir == "" && len(n.Argv) > 0 {
			n.Dir = in.Dir
		}
		if tn.Ready != nil {
			timeout := tn.Ready.Timeout
			if timeout == 0 {
				timeout = ReadyTimeout
			}
			n.Ready = Ready{Kind: ReadyTCP, Addr: netip.AddrPortFrom(n.MainAddr(), tn.Ready.Port), Timeout: timeout, Interval: readyInterval}
		}
		captured := p.Capture != nil && (in.CaptureAll || tn.Capture)
		if len(tn.Taps) == 0 {
			br := p.Bridges[tn.Subnet]
			l := Link{Kind: Veth, Node: n.Name, Bridge: tn.Subnet, Port: VethPort(n.Name), Inside: GuestIfName}
			if tn.Addr.IsValid() {
				l.Addr, l.Gateway = netip.PrefixFrom(tn.Addr, br.Prefix.Bits()), br.Router
			}
			if tn.Addr6.IsValid() {
				l.Addr6, l.Gateway6 = netip.PrefixFrom(tn.Addr6, br.Prefix6.Bits()), br.Router6
			}
			if captured {
				l.Capture = filepath.Join(p.Capture.Dir, n.Name+".pcap")
			}
			n.Links = append(n.Links, l)
		}
		for _, tp := range tn.Taps {
			l := Link{
				Kind: Tap, Node: n.Name, Bridge: tp.Subnet, Port: TapPort(n.Name, tp.Name), Inside: tp.Name,
				TapPeer: "tp-" + tp.Name, TapBridge: "tb-" + tp.Name,
			}
			if captured {
				l.Capture = filepath.Join(p.Capture.Dir, n.Name+"."+tp.Name+".pcap")
			}
			n.Links = append(n.Links, l)
		}
		for _, pt := range tn.Ports {
			n.Publish = append(n.Publish, Publish{Proto: pt.Proto, Host: pt.HostAddrPort(), Target: netip.AddrPortFrom(n.MainAddr(), pt.Node), Pos: pt.Pos})
		}
		p.Nodes = append(p.Nodes, n)
		names := []string{n.Hostname}
		if n.Name != n.Hostname {
			names = append(names, n.Name)
		}
		for _, a := range []netip.Addr{n.Addr, n.Addr6} {
			if a.IsValid() {
				p.Hosts = append(p.Hosts, HostEntry{Addr: a, Names: names})
			}
		}
	}
	p.Mounts = append(p.Mounts, Mount{Kind: HostsFile, File: "hosts", Target: "/etc/hosts", Subnet: AllSubnets})
	for _, n := range p.Nodes {
		if n.Addr6.IsValid() {
			p.Mounts = append(p.Mounts, Mount{Kind: GaiFile, File: "gai.conf", Target: "/etc/gai.conf", Subnet: AllSubnets})
			break
		}
	}
	for i, br := range p.Bridges {
		p.Mounts = append(p.Mounts, Mount{Kind: ResolvFile, File: fmt.Sprintf("resolv-%d.conf", i), Target: "/etc/resolv.conf", Subnet: i, Nameserver: br.MainRouter()})
	}
	if err := checkNames(top, nodes, p); err != nil {
		return nil, err
	}
	markEngineLinks(p)
	deferBridges(p)
	return p, nil
}

// deferBridges marks Deferred each bridge whose subnet has one link, a
// veth not spliced into the link engine.
func deferBridges(p *Plan) {
	links := make([][]*Link, len(p.Bridges))
	for i := range p.Nodes {
		for j := range p.Nodes[i].Links {
			l := &p.Nodes[i].Links[j]
			links[l.Bridge] = append(links[l.Bridge], l)
		}
	}
	for i, ls := range links {
		p.Bridges[i].Deferred = len(ls) == 1 && ls[0].Kind == Veth && ls[0].NodeEnd == ""
	}
}

// markEngineLinks wires already spliced into the link engine the eth0
// of every node that the file's latency matrix delays what it sends:
// splicing a wired link later costs a swap of its bridge port and waits.
func markEngineLinks(p *Plan) {
	if p.Latency.IsZero() {
		return
	}
	var names []string
	for _, n := range p.Nodes {
		names = append(names, n.Name)
	}
	sends := map[string]bool{}
	for pair, v := range p.Latency.Resolve(names) {
		if v.Delay > 0 || v.Jitter > 0 {
			sends[pair.From] = true
		}
	}
	for i := range p.Nodes {
		n := &p.Nodes[i]
		if !sends[n.Name] {
			continue
		}
		for j := range n.Links {
			if l := &n.Links[j]; l.Kind == Veth {
				l.NodeEnd, l.EngineEnd = EngineEnds(n.Name)
			}
		}
	}
}

// selectNodes returns the named nodes and what they depend on, in start
// order; all nodes when none is named.
func selectNodes(top *topology.Topology, names []string) ([]topology.Node, error) {
	if len(names) == 0 {
		return top.Nodes, nil
	}
	byName := map[string]topology.Node{}
	for _, n := range top.Nodes {
		byName[n.Name] = n
	}
	want := map[string]bool{}
	var add func(string) error
	add = func(name string) error {
		n, ok := byName[name]
		if !ok {
			var known []string
			for _, n := range top.Nodes {
				known = append(known, n.Name)
			}
			return fmt.Errorf("up: no node %q in %s; its nodes: %s", name, top.File, strings.Join(known, ", "))
		}
		if want[name] {
			return nil
		}
		want[name] = true
		for _, d := range n.DependsOn {
			if err := add(d); err != nil {
				return err
			}
		}
		return nil
	}
	for _, name := range names {
		if err := add(name); err != nil {
			return nil, err
		}
	}
	var out []topology.Node
	for _, n := range top.Nodes {
		if want[n.Name] {
			out = append(out, n)
		}
	}
	return out, nil
}
