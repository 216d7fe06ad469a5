package plan

import (
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/nsrun/nsrun/internal/topology"
	"github.com/nsrun/nsrun/ipam"
)

// The names nsrun gives things. Every one derived from a user's name is
// made by a function here and checked for clashes by Build.
const (
	// GuestIfName is a node's veth inside its namespace.
	GuestIfName = "eth0"
	// UplinkPort is the bridge namespace's end of the uplink veth.
	UplinkPort = "uplink"
	// CaptureLog is the step log's file in the capture folder.
	CaptureLog = "nsrun.log"
	loopback   = "lo"
)

// BridgeName names the bridge of subnet i.
func BridgeName(i int) string { return "br" + strconv.Itoa(i) }

// VethPort names the bridge port of node's eth0 (hashed when too long for
// an interface name).
func VethPort(node string) string { return ipam.IfName("v", node) }

// EngineEnds name the two loose veth ends of node's eth0 link while it
// passes through the link engine (netsetup.Splice): the node's end, taken
// off the bridge, and the engine's end, whose peer takes the port's name.
func EngineEnds(node string) (nodeEnd, engineEnd string) {
	return ipam.IfName("w", node), ipam.IfName("x", node)
}

// TapPort names the bridge port of node's tap link tap.
func TapPort(node, tap string) string { return ipam.IfName("t", node+"."+tap) }

// GatewayPort names the gateway's end of run id's uplink veth.
func GatewayPort(id string) string { return "nr" + id }

// owner is what a name was given to.
type owner struct {
	what  string // "the bridge port of node a"
	field string // "nodes.a"; "" for nsrun's own names
	pos   topology.Pos
}

// scope is one space of names that must be unique.
type scope struct {
	where string // "in the bridge namespace"
	kind  string // "interface name"
	fix   string
	names map[string]owner
}

func newScope(where, kind, fix string) *scope {
	return &scope{where: where, kind: kind, fix: fix, names: map[string]owner{}}
}

// add gives name to o, or reports whom it already belongs to.
func (s *scope) add(file, name string, o owner) error {
	other, dup := s.names[name]
	if !dup {
		s.names[name] = o
		return nil
	}
	at := ""
	if other.field != "" {
		at = " (" + other.field
		if other.pos.Line > 0 {
			at += fmt.Sprintf(" at line %d", other.pos.Line)
		}
		at += ")"
	}
	return topology.ErrorAt(file, o.pos, "%s: %s gets the %s %q %s, which is already %s%s; %s",
		o.field, o.what, s.kind, name, s.where, other.what, at, s.fix)
}

// checkNames checks every name the plan derived: interface names in the
// bridge namespace and in each node's, and capture files.
func checkNames(top *topology.Topology, nodes []topology.Node, p *Plan) error {
	const renameNode = "rename one of the nodes or taps (names of bridge ports are made from them)"
	bridgeNS := newScope("in the bridge namespace", "interface name", renameNode)
	bridgeNS.names[loopback] = owner{what: "the loopback"}
	for i, b := range p.Bridges {
		bridgeNS.names[b.Name] = owner{what: "the bridge of subnet " + b.Subnet, field: "subnets." + top.Subnets[i].Name}
	}
	if p.Uplink != nil {
		bridgeNS.names[p.Uplink.Port] = owner{what: "the uplink"}
	}
	var files *scope
	if p.Capture != nil {
		files = newScope("in "+p.Capture.Dir, "capture file", "rename one of the nodes or taps (capture files are named NODE.pcap and NODE.TAP.pcap)")
		files.names[CaptureLog] = owner{what: "nsrun's step log"}
	}
	for i, n := range p.Nodes {
		tn := nodes[i]
		field := "nodes." + n.Name
		inNode := newScope("in node "+n.Name+"'s namespace", "interface name", "rename the tap (a tap link also makes tp-TAP and tb-TAP inside the node)")
		inNode.names[loopback] = owner{what: "the loopback"}
		for j, l := range n.Links {
			o := owner{what: "node " + n.Name + "'s eth0", field: field, pos: tn.Pos}
			if l.Kind == Tap {
				tp := tn.Taps[j]
				o = owner{what: "tap " + tp.Name + " of node " + n.Name, field: field + ".tap." + tp.Name, pos: tp.Pos}
				for _, in := range []struct{ name, what string }{
					{l.Inside, "the tap device"},
					{l.TapPeer, "the node's end of its veth"},
					{l.TapBridge, "the bridge that joins them"},
				} {
					if len(in.name) > ipam.MaxIfNameLen {
						return topology.ErrorAt(top.File, tp.Pos, "%s: %s would be named %q, longer than %d characters; shorten the tap's name", o.field, in.what, in.name, ipam.MaxIfNameLen)
					}
					if err := inNode.add(top.File, in.name, owner{what: in.what + " of " + o.what, field: o.field, pos: o.pos}); err != nil {
						return err
					}
				}
			}
			if err := bridgeNS.add(top.File, l.Port, owner{what: "the bridge port of " + o.what, field: o.field, pos: o.pos}); err != nil {
				return err
			}
			if l.Kind == Veth {
				nodeEnd, engineEnd := EngineEnds(n.Name)
				for _, e := range []struct{ name, what string }{{nodeEnd, "the node's end"}, {engineEnd, "the link engine's end"}} {
					if err := bridgeNS.add(top.File, e.name, owner{what: e.what + " of " + o.what + " in the link engine", field: o.field, pos: o.pos}); err != nil {
						return err
					}
				}
			}
			if l.Capture != "" {
				if err := files.add(top.File, filepath.Base(l.Capture), owner{what: "the capture of " + o.what, field: o.field, pos: o.pos}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
