// Package plan is one run as nsrun will carry it out, as typed data: the
// run's bridges (one per subnet), every node's links (veth or tap) with
// their interface names and addresses, the routes, the uplink, the files
// mounted into nodes, the nodes' commands and readiness checks in start
// order, the published ports and the capture files.
//
// The command line and package topology produce a Plan (Build); package
// supervise applies it (its network through package runnet). Every name derived from the user's names (bridge
// ports, tap links, capture files) is made here, once, and Build refuses
// clashes before anything starts. Nothing after Build parses a string that
// was once typed. Write prints a plan for people, and its JSON form is for
// scripts (`nsrun up --dry-run [--json]`).
package plan

import (
	"fmt"
	"github.com/nsrun/nsrun/internal/latency"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/nsrun/nsrun/internal/topology"
)

// Plan is one run.
type Plan struct {
	Run     Run      `json:"run"`
	User    User     `json:"user"`
	Bridges []Bridge `json:"bridges"`
	// Forward: the bridge namespace routes between subnets (and to the
	// uplink).
	Forward bool    `json:"forward"`
	Uplink  *Uplink `json:"uplink,omitempty"`
	// Nodes in start order: every node after those it depends on.
	Nodes []Node `json:"nodes"`
	// Hosts are the lines of the run's /etc/hosts after localhost's.
	Hosts   []HostEntry `json:"hosts"`
	Mounts  []Mount     `json:"mounts"`
	Capture *Capture    `json:"capture,omitempty"`
	// Latency is the file's regions and latency matrix, applied by the
	// link engine once every node is wired and before any starts.
	Latency latency.Matrix `json:"latency,omitzero"`
	// Env is nsrun's environment, which every node's command starts
	// with (not printed: it is the caller's).
	Env []string `json:"-"`
}

// Run is the run's identity and how it ends.
type Run struct {
	ID         string `json:"id"`
	Dir        string `json:"dir"`         // the run's state folder
	RuntimeDir string `json:"runtime_dir"` // the user's nsrun folder (runs, leases)
	File       string `json:"file,omitempty"`
	// FilePath is File as an absolute path, and Project the run's
	// project name (the file's folder's name), for `nsrun ls`, `ps` and
	// `down` without --run.
	FilePath string `json:"file_path,omitempty"`
	Project  string `json:"project,omitempty"`
	// KeepLogs keeps the run's output log after the run (--keep-logs),
	// in the user's runtime folder (runstate.KeptLogsDir).
	KeepLogs bool `json:"keep_logs,omitempty"`
	// Up is `nsrun up`: output prefixed by node, every node stopped on a
	// signal. Without it (`nsrun -- CMD`) the single node's stdio is the
	// caller's and its exit ends the run.
	Up           bool          `json:"up"`
	Color        bool          `json:"color,omitempty"`
	Terminal     bool          `json:"terminal,omitempty"` // stdin is the caller's foreground terminal
	NsrunPid     int           `json:"nsrun_pid,omitempty"`
	ExitCodeFrom string        `json:"exit_code_from,omitempty"`
	AbortOnExit  bool          `json:"abort_on_exit,omitempty"`
	StopTimeout  time.Duration `json:"stop_timeout_ns"` // between SIGTERM and SIGKILL
	// Report is `up --report DIR`: at the end of the run its events go to
	// DIR/events.jsonl and their timeline to DIR/report.html.
	Report string `json:"report,omitempty"`
	Log    Log    `json:"log"`
}

// Log is the supervisor's step log.
type Log struct {
	Stderr bool       `json:"stderr"` // --log-level given: log to stderr
	Level  slog.Level `json:"level"`
}

// UserMode is the identity node commands run with.
type UserMode int

const (
	// UserCaller: the run's own user namespace maps the caller's uid and
	// gid to themselves; commands see them as outside.
	UserCaller UserMode = iota
	// UserRoot: uid 0 of the run's user namespace (--root).
	UserRoot
	// UserMapped: the run joined the gateway's user namespace, where the
	// caller is uid 0; commands start in a nested user namespace that
	// maps UID and GID back to it.
	UserMapped
)

var userModes = []string{"caller", "root", "mapped"}

// String returns the name used in the plan's text and JSON.
func (m UserMode) String() string { return enumName(int(m), userModes) }

func enumName(v int, names []string) string {
	if v >= 0 && v < len(names) {
		return names[v]
	}
	return "unknown"
}

func unmarshalEnum(v *int, b []byte, names []string, what string) error {
	for i, n := range names {
		if n == string(b) {
			*v = i
			return nil
		}
	}
	return fmt.Errorf("%s %q: write one of %s", what, b, strings.Join(names, ", "))
}

// MarshalText writes the mode's name.
func (m UserMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads a mode's name.
func (m *UserMode) UnmarshalText(b []byte) error {
	return unmarshalEnum((*int)(m), b, userModes, "user mode")
}

// User is who every node's command (and every `net exec`) runs as.
type User struct {
	Mode UserMode `json:"mode"`
	UID  int      `json:"uid"` // the caller's, on the host
	GID  int      `json:"gid"`
}

// Bridge is one subnet's bridge in the run's bridge namespace.
type Bridge struct {
	Name   string       `json:"name"`   // interface name, br0, br1, ...
	Subnet string       `json:"subnet"` // the subnet's name in the file
	Prefix netip.Prefix `json:"prefix"`
	Router netip.Addr   `json:"router"` // the bridge's own address: nodes' gateway and DNS
	// Prefix6 and Router6 are the subnet's IPv6 side (a /64 and the
	// bridge's address in it); zero for an IPv4-only subnet. An
	// IPv6-only subnet has only these.
	Prefix6 netip.Prefix `json:"prefix6,omitzero"`
	Router6 netip.Addr   `json:"router6,omitzero"`
	// Deferred: the subnet's only link is a veth, whose end in the
	// bridge namespace holds the router addresses itself; the bridge
	// device is made (runnet.Network.EnsureBridges) only when a second
	// link joins (attach) or a net verb needs it. A namespace that held
	// a bridge takes the kernel tens of milliseconds to tear down, in
	// the background, and the next run waits for it (issue 24).
	Deferred bool `json:"deferred,omitempty"`
}

// MainRouter is the bridge's IPv4 address, or its IPv6 one in an
// IPv6-only subnet: the nodes' DNS server.
func (b *Bridge) MainRouter() netip.Addr {
	if b.Router.IsValid() {
		return b.Router
	}
	return b.Router6
}

// LinkKind is what a link is inside its node.
type LinkKind int

const (
	// Veth: the node's eth0, a veth whose other end is a port of the
	// bridge.
	Veth LinkKind = iota
	// Tap: a tap device for a VM, joined to a bridge inside the node,
	// which a veth (port of the run's bridge) connects.
	Tap
)

var linkKinds = []string{"veth", "tap"}

// String returns the name used in the plan's text and JSON.
func (k LinkKind) String() string { return enumName(int(k), linkKinds) }

// UnmarshalText reads a kind's name.
func (k *LinkKind) UnmarshalText(b []byte) error {
	return unmarshalEnum((*int)(k), b, linkKinds, "link kind")
}

// MarshalText writes the kind's name.
func (k LinkKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Link is one of a node's links: a port of a bridge.
type Link struct {
	Kind   LinkKind `json:"kind"`
	Node   string   `json:"node"`
	Bridge int      `json:"bridge"` // index into Plan.Bridges
	// Port is the bridge-side end, in the bridge namespace.
	Port string `json:"port"`
	// Inside is the interface in the node's namespace: eth0, or the tap.
	Inside string `json:"inside"`
	// Veth links: the node's address with the subnet's length, and its
	// default route (zero in an IPv6-only subnet).
	Addr    netip.Prefix `json:"addr,omitzero"`
	Gateway netip.Addr   `json:"gateway,omitzero"`
	// Addr6 and Gateway6 are the IPv6 side: the node's /64 address and
	// its IPv6 default route. Zero means eth0 has no IPv6 at all, not
	// even link-local (`ipv6: false`, or an IPv4-only subnet).
	Addr6    netip.Prefix `json:"addr6,omitzero"`
	Gateway6 netip.Addr   `json:"gateway6,omitzero"`
	// Tap links: the node-side end of the veth and the bridge inside the
	// node that joins it to the tap.
	TapPeer   string `json:"tap_peer,omitempty"`
	TapBridge string `json:"tap_bridge,omitempty"`
	// Capture is the pcap file of this link ("" when not captured).
	Capture string `json:"capture,omitempty"`
	// EngineEnds, on a veth link whose node sends with a delay of the
	// file's latency matrix, name the loose ends of the link as wired
	// already spliced into the link engine (netsetup.Splice: the node's
	// end, the engine's); empty otherwise.
	NodeEnd   string `json:"engine_node_end,omitempty"`
	EngineEnd string `json:"engine_end,omitempty"`
}

// Command is what a node runs.
type Command struct {
	Argv []string `json:"argv,omitempty"` // none: the node only holds its namespaces
	Env  []string `json:"env,omitempty"`  // the node's own variables, after Plan.Env
	Dir  string   `json:"dir,omitempty"`  // working directory
}

// ReadyKind is how a node's readiness is checked.
type ReadyKind int

const (
	// ReadyNone: a node is up once its command has started.
	ReadyNone ReadyKind = iota
	// ReadyTCP: a node is up once Ready.Addr accepts a TCP connection
	// made from the bridge namespace.
	ReadyTCP
)

var readyKinds = []string{"none", "tcp"}

// String returns the name used in the plan's text and JSON.
func (k ReadyKind) String() string { return enumName(int(k), readyKinds) }

// UnmarshalText reads a kind's name.
func (k *ReadyKind) UnmarshalText(b []byte) error {
	return unmarshalEnum((*int)(k), b, readyKinds, "ready kind")
}

// MarshalText writes the kind's name.
func (k ReadyKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Ready is a node's readiness check.
type Ready struct {
	Kind     ReadyKind      `json:"kind"`
	Addr     netip.AddrPort `json:"addr,omitzero"`
	Timeout  time.Duration  `json:"timeout_ns,omitempty"`
	Interval time.Duration  `json:"interval_ns,omitempty"` // between attempts
}

// Publish is a published port: the host's Host (127.0.0.1 unless the
// file names an address) is forwarded to Target, dialled from the bridge
// namespace, over Proto. A Publish is comparable: it keys the sockets
// bound for it.
type Publish struct {
	Proto  topology.Proto `json:"proto"`
	Host   netip.AddrPort `json:"host"`
	Target netip.AddrPort `json:"target"`
	// Pos is where the port is written in the run's file (Run.File),
	// for errors found when it is bound.
	Pos topology.Pos `json:"-"`
}

// HostString is where the port is published, for messages:
// 127.0.0.1:8080, or 127.0.0.1:5353/udp.
func (p Publish) HostString() string { return topology.ProtoAddrPort(p.Proto, p.Host) }

// TargetString is the node's end, written as HostString.
func (p Publish) TargetString() string { return topology.ProtoAddrPort(p.Proto, p.Target) }

// Node is one node.
type Node struct {
	Name     string `json:"name"`
	Hostname string `json:"hostname"`
	// Subnet is the index into Plan.Bridges of the node's address.
	Subnet int        `json:"subnet"`
	Addr   netip.Addr `json:"addr,omitzero"` // zero in an IPv6-only subnet
	// Addr6 is the node's IPv6 address; zero without IPv6.
	Addr6 netip.Addr `json:"addr6,omitzero"`
	// Command is embedded: n.Argv is its command.
	Command   `json:"command"`
	Ready     Ready    `json:"ready"`
	DependsOn []string `json:"depends_on,omitempty"`
	// Conditions are what the node waits for of a dependency, other than
	// its start (and ready check): topology.ServiceHealthy or
	// topology.ServiceCompletedSuccessfully.
	Conditions map[string]topology.Condition `json:"conditions,omitempty"`
	// Health is the node's health check, nil without one.
	Health *topology.Health `json:"health,omitempty"`
	// Tmpfs are folders the node sees covered by a tmpfs of its own.
	Tmpfs []string `json:"tmpfs,omitempty"`
	// Restart is when the node's command starts again after it exits.
	Restart topology.Restart `json:"restart,omitzero"`
	Links   []Link           `json:"links"`
	Publish []Publish        `json:"publish,omitempty"`
	// Control: the node's processes may act on the run (`nsrun net`,
	// `nsrun node`) through its control socket, which only such nodes
	// see (`control: true`, a trusted node); the supervisor refuses every
	// other node.
	Control bool `json:"control,omitempty"`
}

// Completes says whether a node of the plan waits for node name to exit
// with code 0 (depends_on's service_completed_successfully): its exit
// with code 0 does not end the run under --abort-on-exit or
// --exit-code-from, as in docker compose.
func (p *Plan) Completes(name string) bool {
	for _, n := range p.Nodes {
		if n.Conditions[name] == topology.ServiceCompletedSuccessfully {
			return true
		}
	}
	return false
}

// MainAddr is the node's IPv4 address, or its IPv6 one when it has no
// IPv4: where its ready check and published ports connect.
func (n *Node) MainAddr() netip.Addr {
	if n.Addr.IsValid() {
		return n.Addr
	}
	return n.Addr6
}

// Addrs lists the node's addresses, IPv4 first, for people.
func (n *Node) Addrs() string { return joinAddrs(n.Addr, n.Addr6) }

// VethPort returns the bridge port of the node's eth0, or "" for a node
// with tap links only.
func (n *Node) VethPort() string {
	for _, l := range n.Links {
		if l.Kind == Veth {
			return l.Port
		}
	}
	return ""
}

// HostEntry is one line of the run's /etc/hosts.
type HostEntry struct {
	Addr  netip.Addr `json:"addr"`
	Names []string   `json:"names"`
}

// MountKind is what a mounted file holds.
type MountKind int

const (
	// HostsFile is the run's /etc/hosts (Plan.Hosts).
	HostsFile MountKind = iota
	// ResolvFile is a resolv.conf naming Mount.Nameserver.
	ResolvFile
	// GaiFile is the run's /etc/gai.conf: glibc's address order of RFC
	// 6724, where IPv4 comes before unique local IPv6 (fd00::/8), as Go
	// and the RFC order them. glibc's built-in table (RFC 3484) puts any
	// IPv6 first, so a client would try a node's ULA before its IPv4
	// address and miss every server bound to 0.0.0.0. Mounted only where
	// the host has an /etc/gai.conf to mount over.
	GaiFile
)

var mountKinds = []string{"hosts", "resolv", "gai"}

// String returns the name used in the plan's text and JSON.
func (k MountKind) String() string { return enumName(int(k), mountKinds) }

// UnmarshalText reads a kind's name.
func (k *MountKind) UnmarshalText(b []byte) error {
	return unmarshalEnum((*int)(k), b, mountKinds, "mount kind")
}

// MarshalText writes the kind's name.
func (k MountKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// AllSubnets is Mount.Subnet for a file every node sees.
const AllSubnets = -1

// Mount is a file the run writes in its state folder and mounts,
// read-only, over Target for the nodes of Subnet (AllSubnets: every
// node). Files for subnet 0 and AllSubnets are mounted in the
// supervisor's mount namespace, which nodes share; nodes of other subnets
// get a mount namespace of their own.
type Mount struct {
	Kind       MountKind  `json:"kind"`
	File       string     `json:"file"` // name in the run's state folder
	Target     string     `json:"target"`
	Subnet     int        `json:"subnet"`
	Nameserver netip.Addr `json:"nameserver,omitzero"`
}

// NodeMounts returns the mounts node n needs beyond the supervisor's own:
// target path to file name in the run's state folder.
func (p *Plan) NodeMounts(n *Node) map[string]string {
	if n.Subnet == 0 {
		return nil
	}
	var out map[string]string
	for _, m := range p.Mounts {
		if m.Subnet == n.Subnet {
			if out == nil {
				out = map[string]string{}
			}
			out[m.Target] = m.File
		}
	}
	return out
}

// Uplink is the run's way out through nsrun-helper's gateway: a /30
// leased from Pool at start, a veth from GatewayPort (in the gateway's
// network namespace) to Port (in the bridge namespace), a default route
// and NAT there.
type Uplink struct {
	GatewayNS   string       `json:"gateway_ns"` // the gateway's network namespace file
	Pool        netip.Prefix `json:"pool"`       // where the run's /30 comes from
	LeaseDir    string       `json:"lease_dir"`
	Port        string       `json:"port"`
	GatewayPort string       `json:"gateway_port"`
	// HostDNS is where DNS sent to a bridge goes (zero: nowhere).
	HostDNS netip.AddrPort `json:"host_dns,omitzero"`
	// IPv6: the uplink carries IPv6 too, on the /64 its /30 maps to
	// (ipam.Pair6: gateway end ::1, bridge end ::2), with a default route
	// and masquerade like IPv4's.
	IPv6 bool `json:"ipv6,omitempty"`
	// DNSRelays are the addresses (the IPv6 routers of IPv6-only
	// subnets, port 53) on which the supervisor relays DNS to HostDNS:
	// NAT cannot turn an IPv6 query into an IPv4 one.
	DNSRelays []netip.AddrPort `json:"dns_relays,omitempty"`
	// Host and Host6 are the host's nsrun addresses (UplinkInput.Host),
	// listed as HostName in /etc/hosts; Host6 only with IPv6.
	Host  netip.Addr `json:"host,omitzero"`
	Host6 netip.Addr `json:"host6,omitzero"`
}

// HostEnv is the variable, set in every node of a run with an uplink,
// that holds the host's nsrun address (IPv4, or IPv6 without it).
const HostEnv = "NSRUN_HOST"

// HostAddr is the host's nsrun address for HostEnv: IPv4, or IPv6
// without it; invalid without an uplink.
func (p *Plan) HostAddr() netip.Addr {
	if p.Uplink == nil {
		return netip.Addr{}
	}
	if p.Uplink.Host.IsValid() {
		return p.Uplink.Host
	}
	return p.Uplink.Host6
}

// Capture is where pcap files go (each captured link names its file).
type Capture struct {
	Dir string `json:"dir"`
	Log string `json:"log"` // the step log, beside the pcap files
}
