// Package topology reads and validates an nsrun.yaml: the subnets and nodes
// of a run, with fixed addresses, commands, readiness checks, dependencies
// and published ports. Field names follow docker compose where the idea is
// the same. Every error names the file, line, column and field, and says
// how to fix it; a file that loads is safe to start.
package topology

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/nsrun/nsrun/ipam"
)

// DefaultFile is the file `nsrun up` reads without -f.
const DefaultFile = "nsrun.yaml"

// Topology is a validated file.
type Topology struct {
	File    string
	Subnets []Subnet
	Nodes   []Node // in start order: every node after those it depends on
}

// Subnet is a named guest subnet.
type Subnet struct {
	Name string
	ipam.Subnet
}

// Node is one host of the run.
type Node struct {
	Name      string
	Hostname  string
	Addr      netip.Addr
	Subnet    int      // index into Topology.Subnets
	Argv      []string // empty: the node only holds its namespace (sleeps)
	Env       []string // KEY=VALUE, added to nsrun's environment
	Dir       string   // absolute working directory, "" for nsrun's
	DependsOn []string
	Ready     *Ready
	Ports     []Port
	Capture   bool // write a pcap file of the node's link
	// Taps are tap devices for a VM under test, each wired to a subnet;
	// a node with taps has no eth0 of its own (Addr is the VM's address).
	Taps []Tap
}

// Tap is one tap link of a node.
type Tap struct {
	Name   string
	Subnet int // index into Topology.Subnets
}

// Ready is a readiness check: the node is up when Port accepts TCP.
type Ready struct {
	Port uint16
}

// Port publishes a node port on the host's loopback.
type Port struct {
	Host, Node uint16
}

// Error is a problem in the file, at a position.
type Error struct {
	File         string
	Line, Column int
	Msg          string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Load reads and validates path.
func Load(path string) (*Topology, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s not found: write one (see README: \"The nsrun.yaml file\") or name another with -f FILE", path)
		}
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, filepath.Dir(abs), b)
}

// Parse validates the contents of a file named name whose relative paths
// are relative to dir.
func Parse(name, dir string, data []byte) (*Topology, error) {
	p := &parser{file: name, dir: dir}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, p.yamlError(err)
	}
	if len(doc.Content) == 0 {
		return nil, &Error{File: name, Msg: "the file is empty: it needs at least `nodes:`"}
	}
	t, err := p.top(doc.Content[0])
	if err != nil {
		return nil, err
	}
	t.File = name
	return t, nil
}

type parser struct {
	file, dir string
}

func (p *parser) errAt(n *yaml.Node, format string, args ...any) error {
	return &Error{File: p.file, Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)}
}

// yamlError turns a YAML syntax error into one with line and column.
func (p *parser) yamlError(err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ":"); ok {
			line, _ = strconv.Atoi(n)
			msg = strings.TrimSpace(after)
		}
	}
	return &Error{File: p.file, Line: line, Column: 1, Msg: "YAML: " + msg}
}

// mapping returns the key/value pairs of a mapping node, refusing
// duplicates and keys outside allowed (when given).
func (p *parser) mapping(n *yaml.Node, what string, allowed ...string) ([][2]*yaml.Node, error) {
	if n.Kind != yaml.MappingNode {
		return nil, p.errAt(n, "%s must be a mapping (key: value lines)", what)
	}
	seen := map[string]bool{}
	var out [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			return nil, p.errAt(k, "%s: %q appears twice", what, k.Value)
		}
		seen[k.Value] = true
		if len(allowed) > 0 && !contains(allowed, k.Value) {
			return nil, p.errAt(k, "%s: unknown key %q; known keys: %s", what, k.Value, strings.Join(allowed, ", "))
		}
		out = append(out, [2]*yaml.Node{k, v})
	}
	return out, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

var nodeKeys = []string{"ip", "hostname", "command", "environment", "working_dir", "depends_on", "ready", "ports", "capture", "tap"}

func (p *parser) top(root *yaml.Node) (*Topology, error) {
	pairs, err := p.mapping(root, "the file", "subnets", "nodes")
	if err != nil {
		return nil, err
	}
	t := &Topology{}
	var nodesNode *yaml.Node
	for _, kv := range pairs {
		switch kv[0].Value {
		case "subnets":
			if t.Subnets, err = p.subnets(kv[1]); err != nil {
				return nil, err
			}
		case "nodes":
			nodesNode = kv[1]
		}
	}
	if len(t.Subnets) == 0 {
		t.Subnets = []Subnet{{Name: "default", Subnet: ipam.DefaultSubnet()}}
	}
	if nodesNode == nil {
		return nil, &Error{File: p.file, Msg: "no `nodes:`; a file needs at least one node"}
	}
	nodes, err := p.mapping(nodesNode, "nodes")
	if err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return nil, p.errAt(nodesNode, "nodes: no node given")
	}
	byAddr := map[netip.Addr]string{}
	byName := map[string]*yaml.Node{}
	var all []Node
	for _, kv := range nodes {
		n, err := p.node(t, kv[0], kv[1])
		if err != nil {
			return nil, err
		}
		if other, dup := byAddr[n.Addr]; dup {
			return nil, p.errAt(kv[0], "nodes.%s.ip: %s is already node %s's address; give each node its own", n.Name, n.Addr, other)
		}
		byAddr[n.Addr] = n.Name
		byName[n.Name] = kv[0]
		all = append(all, n)
	}
	hosts := map[string]string{}
	ifnames := map[string]string{}
	for _, n := range all {
		for _, name := range []string{n.Name, n.Hostname} {
			if other, dup := hosts[name]; dup && other != n.Name {
				return nil, p.errAt(byName[n.Name], "nodes.%s: the name %q is also node %s's name or hostname; /etc/hosts needs them unique", n.Name, name, other)
			}
			hosts[name] = n.Name
		}
		ifn := ipam.IfName("v", n.Name)
		if other, dup := ifnames[ifn]; dup {
			return nil, p.errAt(byName[n.Name], "nodes.%s: its interface name %s clashes with node %s's; rename one", n.Name, ifn, other)
		}
		ifnames[ifn] = n.Name
		for _, d := range n.DependsOn {
			if _, ok := byName[d]; !ok {
				return nil, p.errAt(byName[n.Name], "nodes.%s.depends_on: no node named %q; known nodes: %s", n.Name, d, strings.Join(sortedKeys(byName), ", "))
			}
		}
	}
	if err := p.checkPorts(all, byName); err != nil {
		return nil, err
	}
	ordered, err := p.order(all, byName)
	if err != nil {
		return nil, err
	}
	t.Nodes = ordered
	return t, nil
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (p *parser) subnets(n *yaml.Node) ([]Subnet, error) {
	pairs, err := p.mapping(n, "subnets")
	if err != nil {
		return nil, err
	}
	var out []Subnet
	for _, kv := range pairs {
		field := "subnets." + kv[0].Value
		if err := ipam.CheckNodeName(field, kv[0].Value); err != nil {
			return nil, p.errAt(kv[0], "%v", err)
		}
		if kv[1].Kind != yaml.ScalarNode {
			return nil, p.errAt(kv[1], "%s: write a CIDR such as 172.18.1.0/24", field)
		}
		s, err := ipam.NewSubnet(field, kv[1].Value)
		if err != nil {
			return nil, p.errAt(kv[1], "%v", err)
		}
		for _, o := range out {
			if o.Prefix.Overlaps(s.Prefix) {
				return nil, p.errAt(kv[1], "%s: %s overlaps subnets.%s (%s); subnets must not overlap", field, s.Prefix, o.Name, o.Prefix)
			}
		}
		out = append(out, Subnet{Name: kv[0].Value, Subnet: s})
	}
	if len(out) > 16 {
		return nil, p.errAt(n, "subnets: at most 16 subnets")
	}
	return out, nil
}

func (p *parser) node(t *Topology, key, val *yaml.Node) (Node, error) {
	n := Node{Name: key.Value, Hostname: key.Value}
	field := "nodes." + n.Name
	if err := ipam.CheckNodeName(field, n.Name); err != nil {
		return n, p.errAt(key, "%v", err)
	}
	if val.Kind == yaml.ScalarNode && val.Tag == "!!null" {
		return n, p.errAt(key, "%s: needs at least `ip:`", field)
	}
	pairs, err := p.mapping(val, field, nodeKeys...)
	if err != nil {
		return n, err
	}
	var ipNode, taps *yaml.Node
	for _, kv := range pairs {
		k, v := kv[0].Value, kv[1]
		f := field + "." + k
		switch k {
		case "ip":
			ipNode = v
		case "hostname":
			if err := ipam.CheckHostname(f, v.Value); err != nil || v.Kind != yaml.ScalarNode {
				return n, p.errAt(v, "%v", err)
			}
			n.Hostname = v.Value
		case "command":
			if n.Argv, err = p.command(f, v); err != nil {
				return n, err
			}
		case "environment":
			if n.Env, err = p.environment(f, v); err != nil {
				return n, err
			}
		case "working_dir":
			if v.Kind != yaml.ScalarNode || v.Value == "" {
				return n, p.errAt(v, "%s: write a folder, absolute or relative to the file", f)
			}
			n.Dir = v.Value
			if !filepath.IsAbs(n.Dir) {
				n.Dir = filepath.Join(p.dir, n.Dir)
			}
			if fi, err := os.Stat(n.Dir); err != nil || !fi.IsDir() {
				return n, p.errAt(v, "%s: %s is not a folder", f, n.Dir)
			}
		case "depends_on":
			if n.DependsOn, err = p.stringList(f, v); err != nil {
				return n, err
			}
		case "ready":
			port, ok := strings.CutPrefix(v.Value, "tcp:")
			pn, err := strconv.ParseUint(port, 10, 16)
			if v.Kind != yaml.ScalarNode || !ok || err != nil || pn == 0 {
				return n, p.errAt(v, "%s: write tcp:PORT, for example tcp:6379 (the node is up when that port accepts)", f)
			}
			n.Ready = &Ready{Port: uint16(pn)}
		case "ports":
			if n.Ports, err = p.ports(f, v); err != nil {
				return n, err
			}
		case "tap":
			taps = v
		case "capture":
			if v.Kind != yaml.ScalarNode || (v.Value != "true" && v.Value != "false") {
				return n, p.errAt(v, "%s: write true or false", f)
			}
			n.Capture = v.Value == "true"
		}
	}
	if ipNode == nil {
		return n, p.errAt(key, "%s.ip: missing; give the node a fixed address in one of the subnets (%s)", field, subnetList(t))
	}
	addr, err := netip.ParseAddr(ipNode.Value)
	if err != nil || !addr.Is4() || ipNode.Kind != yaml.ScalarNode {
		return n, p.errAt(ipNode, "%s.ip: %q is not an IPv4 address such as 172.18.0.7", field, ipNode.Value)
	}
	n.Addr = addr
	n.Subnet = -1
	for i, s := range t.Subnets {
		if s.Prefix.Contains(addr) {
			if err := s.CheckGuest(field+".ip", addr); err != nil {
				return n, p.errAt(ipNode, "%v", err)
			}
			n.Subnet = i
		}
	}
	if n.Subnet < 0 {
		return n, p.errAt(ipNode, "%s.ip: %s is in no subnet of the file (%s); pick an address inside one, or add its subnet under subnets:", field, addr, subnetList(t))
	}
	if taps != nil {
		if n.Taps, err = p.taps(t, field+".tap", taps, n.Subnet); err != nil {
			return n, err
		}
		if len(n.Argv) > 0 {
			return n, p.errAt(taps, "%s: a node with tap links runs no command; start the VM with nsrun net exec %s -- qemu-system-... -netdev tap,ifname=...", field, n.Name)
		}
	}
	return n, nil
}

// taps reads `tap: [link0, link1]` (all on the node's subnet) or
// `tap: {link0: front, link1: back}`.
func (p *parser) taps(t *Topology, f string, v *yaml.Node, subnet int) ([]Tap, error) {
	var out []Tap
	add := func(at *yaml.Node, name string, sn int) error {
		if err := ipam.CheckNodeName(f, name); err != nil || len(name) > 12 {
			return p.errAt(at, "%s: tap name %q: 1 to 12 letters, digits, '-', '_' or '.'", f, name)
		}
		for _, o := range out {
			if o.Name == name {
				return p.errAt(at, "%s: tap %q appears twice", f, name)
			}
		}
		out = append(out, Tap{Name: name, Subnet: sn})
		return nil
	}
	switch v.Kind {
	case yaml.SequenceNode:
		names, err := p.stringList(f, v)
		if err != nil {
			return nil, err
		}
		for i, name := range names {
			if err := add(v.Content[i], name, subnet); err != nil {
				return nil, err
			}
		}
	case yaml.MappingNode:
		pairs, err := p.mapping(v, f)
		if err != nil {
			return nil, err
		}
		for _, kv := range pairs {
			sn := -1
			for i, s := range t.Subnets {
				if s.Name == kv[1].Value {
					sn = i
				}
			}
			if sn < 0 {
				return nil, p.errAt(kv[1], "%s.%s: no subnet %q (%s)", f, kv[0].Value, kv[1].Value, subnetList(t))
			}
			if err := add(kv[0], kv[0].Value, sn); err != nil {
				return nil, err
			}
		}
	default:
		return nil, p.errAt(v, "%s: write a list of tap names, or a mapping of tap name to subnet", f)
	}
	if len(out) == 0 {
		return nil, p.errAt(v, "%s: no tap given", f)
	}
	return out, nil
}

func subnetList(t *Topology) string {
	var s []string
	for _, sn := range t.Subnets {
		s = append(s, sn.Name+" "+sn.Prefix.String())
	}
	return strings.Join(s, ", ")
}

func (p *parser) command(f string, v *yaml.Node) ([]string, error) {
	switch v.Kind {
	case yaml.ScalarNode:
		argv, err := SplitWords(v.Value)
		if err != nil {
			return nil, p.errAt(v, "%s: %v", f, err)
		}
		if len(argv) == 0 {
			return nil, p.errAt(v, "%s: empty command", f)
		}
		return argv, nil
	case yaml.SequenceNode:
		argv, err := p.stringList(f, v)
		if err == nil && len(argv) == 0 {
			err = p.errAt(v, "%s: empty command", f)
		}
		return argv, err
	}
	return nil, p.errAt(v, "%s: write a string (split like a shell would) or a list of arguments", f)
}

func (p *parser) stringList(f string, v *yaml.Node) ([]string, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, p.errAt(v, "%s: write a list, such as [a, b]", f)
	}
	var out []string
	for _, e := range v.Content {
		if e.Kind != yaml.ScalarNode {
			return nil, p.errAt(e, "%s: every item must be a plain value", f)
		}
		out = append(out, e.Value)
	}
	return out, nil
}

func (p *parser) environment(f string, v *yaml.Node) ([]string, error) {
	var out []string
	switch v.Kind {
	case yaml.MappingNode:
		pairs, err := p.mapping(v, f)
		if err != nil {
			return nil, err
		}
		for _, kv := range pairs {
			if kv[1].Kind != yaml.ScalarNode {
				return nil, p.errAt(kv[1], "%s.%s: write a plain value", f, kv[0].Value)
			}
			out = append(out, kv[0].Value+"="+kv[1].Value)
		}
	case yaml.SequenceNode:
		list, err := p.stringList(f, v)
		if err != nil {
			return nil, err
		}
		for i, kv := range list {
			if !strings.Contains(kv, "=") {
				return nil, p.errAt(v.Content[i], "%s: %q is not KEY=VALUE", f, kv)
			}
		}
		out = list
	default:
		return nil, p.errAt(v, "%s: write a mapping {KEY: value} or a list of KEY=VALUE", f)
	}
	for _, kv := range out {
		if k, _, _ := strings.Cut(kv, "="); k == "" || strings.ContainsAny(k, " \t") {
			return nil, p.errAt(v, "%s: %q is not a valid variable name", f, k)
		}
	}
	return out, nil
}

func (p *parser) ports(f string, v *yaml.Node) ([]Port, error) {
	list, err := p.stringList(f, v)
	if err != nil {
		return nil, err
	}
	var out []Port
	for i, s := range list {
		h, nport, ok := strings.Cut(strings.TrimPrefix(s, "127.0.0.1:"), ":")
		hp, err1 := strconv.ParseUint(h, 10, 16)
		np, err2 := strconv.ParseUint(nport, 10, 16)
		if !ok || err1 != nil || err2 != nil || hp == 0 || np == 0 {
			return nil, p.errAt(v.Content[i], "%s: %q: write \"HOST:NODE\", such as \"8080:8000\" (host 127.0.0.1:8080 to the node's port 8000)", f, s)
		}
		out = append(out, Port{Host: uint16(hp), Node: uint16(np)})
	}
	return out, nil
}

func (p *parser) checkPorts(nodes []Node, at map[string]*yaml.Node) error {
	used := map[uint16]string{}
	for _, n := range nodes {
		for _, port := range n.Ports {
			if other, dup := used[port.Host]; dup {
				return p.errAt(at[n.Name], "nodes.%s.ports: host port %d is also published by node %s", n.Name, port.Host, other)
			}
			used[port.Host] = n.Name
		}
	}
	return nil
}

// order sorts nodes so that each comes after its dependencies, keeping the
// file's order otherwise, and refuses cycles.
func (p *parser) order(nodes []Node, at map[string]*yaml.Node) ([]Node, error) {
	byName := map[string]Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	const (
		todo = iota
		doing
		done
	)
	state := map[string]int{}
	var out []Node
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		switch state[name] {
		case done:
			return nil
		case doing:
			cycle := append(path, name)
			for i, c := range cycle {
				if c == name {
					cycle = cycle[i:]
					break
				}
			}
			return p.errAt(at[name], "nodes.%s.depends_on: dependency cycle %s; remove one of these dependencies", name, strings.Join(cycle, " -> "))
		}
		state[name] = doing
		for _, d := range byName[name].DependsOn {
			if err := visit(d, append(path, name)); err != nil {
				return err
			}
		}
		state[name] = done
		out = append(out, byName[name])
		return nil
	}
	for _, n := range nodes {
		if err := visit(n.Name, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SplitWords splits s into words like a POSIX shell would, with single and
// double quotes and backslashes, but no expansion.
func SplitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated ' quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated \" quote")
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
