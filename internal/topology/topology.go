// Package topology reads and validates an nsrun.yaml: the subnets and nodes
// of a run, with fixed addresses, commands, readiness checks, dependencies
// and published ports. Field names follow docker compose where the idea is
// the same. Every error names the file, line, column and field, and says
// how to fix it; a file that loads is safe to start.
package topology

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/nsrun/nsrun/internal/latency"
	"github.com/nsrun/nsrun/ipam"
)

// DefaultFile is the file `nsrun up` reads without -f.
const DefaultFile = "nsrun.yaml"

// Topology is a validated file.
type Topology struct {
	File string
	// Name is `name:`, the project's name as compose spells it ("" when
	// the file gives none: the file's folder's name is used).
	Name    string
	Subnets []Subnet
	Nodes   []Node // in start order: every node after those it depends on
	// NoIPv6 is `ipv6: false` at the top of the file: no subnet has IPv6.
	NoIPv6 bool
	// Latency is `regions:` and `latency:`: delays between regions or
	// nodes (package latency), checked against the nodes.
	Latency latency.Matrix
	// Faults is the `faults:` section as written (nil without one):
	// package faults reads its verbs with the command line's parser.
	Faults *Faults
}

// Subnet is a named guest subnet: IPv4, IPv6 or both (ipam.Subnet).
type Subnet struct {
	Name string
	ipam.Subnet
	// Pos4 and Pos6 are where its IPv4 and IPv6 prefixes are written
	// (zero for the default subnet).
	Pos4, Pos6 Pos
}

// Pos is where something is written in the file (1-based; zero when it
// did not come from a file).
type Pos struct {
	Line, Column int
}

// Node is one host of the run.
type Node struct {
	Pos      Pos // of the node's name
	Name     string
	Hostname string
	Addr     netip.Addr // IPv4; invalid for a node of an IPv6-only subnet
	// Addr6 is the node's IPv6 address: `ip6:`, or by default the one
	// its IPv4 address maps to in its subnet's /64 (ipam.Pair6); invalid
	// with `ipv6: false` or in a subnet without IPv6.
	Addr6     netip.Addr
	Subnet    int      // index into Topology.Subnets
	Argv      []string // empty: the node only holds its namespace (sleeps)
	Env       []string // KEY=VALUE, added to nsrun's environment
	Dir       string   // absolute working directory, "" for nsrun's
	DependsOn []string
	// Conditions are depends_on's conditions other than service_started
	// (the default), by dependency.
	Conditions map[string]Condition
	Ready      *Ready
	// Health is `healthcheck:`; nil without one.
	Health *Health
	// Restart is `restart:`; the zero value (and "no") never restarts.
	Restart Restart
	// Tmpfs are absolute folders covered, in the node only, by an empty
	// writable tmpfs for the life of the node's mount namespace.
	Tmpfs   []string
	Ports   []Port
	Capture bool // write a pcap file of the node's link
	// Control lets the node's processes run `nsrun net` and `nsrun node`
	// on their own run (`control: true`): the node is trusted, like
	// --root. Other nodes have no control socket and are refused.
	Control bool
	// Taps are tap devices for a VM under test, each wired to a subnet;
	// a node with taps has no eth0 of its own (Addr is the VM's address).
	Taps []Tap
}

// Tap is one tap link of a node.
type Tap struct {
	Pos    Pos // of the tap's name
	Name   string
	Subnet int // index into Topology.Subnets
}

// Ready is a readiness check: the node is up when Port accepts TCP
// within Timeout.
type Ready struct {
	Port uint16
	// Timeout is `ready: {timeout: ...}`; zero: the default
	// (plan.ReadyTimeout).
	Timeout time.Duration
}

// MaxReadyTimeout is the longest `ready: {timeout: ...}` a file may ask for.
const MaxReadyTimeout = 24 * time.Hour

// Port publishes a node port on the host: Addr:Host (Addr is 127.0.0.1
// unless the file names one) is forwarded to the node's port Node, over
// Proto (TCP unless the entry ends in /udp).
type Port struct {
	Pos        Pos // of the port's entry
	Proto      Proto
	Addr       netip.Addr
	Host, Node uint16
}

// Proto is a published port's transport protocol.
type Proto uint8

const (
	// TCP is a published port's default protocol.
	TCP Proto = iota
	// UDP is written "HOST:NODE/udp".
	UDP
)

// String is the protocol as the file and compose write it: tcp or udp.
func (p Proto) String() string {
	if p == UDP {
		return "udp"
	}
	return "tcp"
}

// MarshalText writes the protocol by name in JSON (a plan's
// `"proto": "udp"`).
func (p Proto) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads tcp or udp.
func (p *Proto) UnmarshalText(b []byte) error {
	switch string(b) {
	case "tcp":
		*p = TCP
	case "udp":
		*p = UDP
	default:
		return fmt.Errorf("protocol %q: want tcp or udp", b)
	}
	return nil
}

// HostAddrPort is where the port is published on the host.
func (pt Port) HostAddrPort() netip.AddrPort { return netip.AddrPortFrom(pt.Addr, pt.Host) }

// HostString is where the port is published, for messages:
// 127.0.0.1:8080, or 127.0.0.1:5353/udp for a UDP port.
func (pt Port) HostString() string { return ProtoAddrPort(pt.Proto, pt.HostAddrPort()) }

// ProtoAddrPort writes ap, with "/udp" after it for a UDP port (TCP, the
// default, goes unsaid as in the file).
func ProtoAddrPort(proto Proto, ap netip.AddrPort) string {
	if proto == UDP {
		return ap.String() + "/udp"
	}
	return ap.String()
}
