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
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/nsrun/nsrun/ipam"
	"github.com/nsrun/nsrun/latency"
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
// unless the file names one) is forwarded to the node's port Node.
type Port struct {
	Pos        Pos // of the port's entry
	Addr       netip.Addr
	Host, Node uint16
}

// HostAddrPort is where the port is published on the host.
func (pt Port) HostAddrPort() netip.AddrPort { return netip.AddrPortFrom(pt.Addr, pt.Host) }

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

// ErrorAt is an error at pos of file; without a file (a run from the
// command line), just the message.
func ErrorAt(file string, pos Pos, format string, args ...any) error {
	if file == "" {
		return fmt.Errorf(format, args...)
	}
	return &Error{File: file, Line: pos.Line, Column: pos.Column, Msg: fmt.Sprintf(format, args...)}
}

// Load reads and validates path.
func Load(path string) (*Topology, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s not found: write one (see docs/file.md: \"A cluster from a file: nsrun up\") or name another with -f FILE", path)
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
// are relative to dir, with ${VAR} taken from the process's environment
// and dir's .env (ParseEnv).
func Parse(name, dir string, data []byte) (*Topology, error) {
	return ParseEnv(name, dir, data, os.LookupEnv)
}

// ParseEnv is Parse with the variables of env in place of the process's
// environment; dir's .env, if there is one, fills in those env does not
// set.
func ParseEnv(name, dir string, data []byte, env Lookup) (*Topology, error) {
	lookup, err := readDotEnv(dir, env)
	if err != nil {
		return nil, err
	}
	p := &parser{file: name, dir: dir, lookup: lookup}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, p.yamlError(err)
	}
	if len(doc.Content) == 0 {
		return nil, &Error{File: name, Msg: "the file is empty: it needs at least `nodes:`"}
	}
	if err := p.interpolate(&doc); err != nil {
		return nil, err
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
	lookup    Lookup // variables for ${VAR}
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

// projectName reads `name:`: as compose's project names, lower-case
// letters, digits, dashes and underscores, starting with a letter or
// digit.
func (p *parser) projectName(v *yaml.Node) (string, error) {
	if v.Kind != yaml.ScalarNode || !projectNameRE.MatchString(v.Value) {
		return "", p.errAt(v, "name: %q is no project name: write lower-case letters, digits, - and _, starting with a letter or digit, such as my-cluster", v.Value)
	}
	return v.Value, nil
}

var projectNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

var nodeKeys = []string{"ip", "ip6", "ipv6", "hostname", "command", "environment", "env_file", "working_dir", "depends_on", "ready", "healthcheck", "restart", "tmpfs", "ports", "capture", "tap", "control"}

func (p *parser) top(root *yaml.Node) (*Topology, error) {
	pairs, err := p.mapping(root, "the file", "name", "subnets", "nodes", "ipv6", "regions", "latency", "faults")
	if err != nil {
		return nil, err
	}
	t := &Topology{}
	var nodesNode, subnetsNode, regionsNode, latencyNode, faultsNode *yaml.Node
	for _, kv := range pairs {
		switch kv[0].Value {
		case "faults":
			faultsNode = kv[1]
		case "name":
			if t.Name, err = p.projectName(kv[1]); err != nil {
				return nil, err
			}
		case "regions":
			regionsNode = kv[1]
		case "latency":
			latencyNode = kv[1]
		case "subnets":
			subnetsNode = kv[1]
		case "nodes":
			nodesNode = kv[1]
		case "ipv6":
			on, err := p.boolean("ipv6", kv[1])
			if err != nil {
				return nil, err
			}
			t.NoIPv6 = !on
		}
	}
	if subnetsNode != nil {
		if t.Subnets, err = p.subnets(subnetsNode, t.NoIPv6); err != nil {
			return nil, err
		}
	}
	if len(t.Subnets) == 0 {
		def := ipam.DefaultSubnet()
		if !t.NoIPv6 {
			def = def.Dual()
		}
		t.Subnets = []Subnet{{Name: "default", Subnet: def}}
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
		if other, dup := byAddr[n.Addr]; dup && n.Addr.IsValid() {
			return nil, p.errAt(kv[0], "nodes.%s.ip: %s is already node %s's address; give each node its own", n.Name, n.Addr, other)
		}
		if other, dup := byAddr[n.Addr6]; dup && n.Addr6.IsValid() {
			return nil, p.errAt(kv[0], "nodes.%s.ip6: %s is already node %s's IPv6 address (given as ip6:, or mapped from its ip:); give each node its own", n.Name, n.Addr6, other)
		}
		byAddr[n.Addr] = n.Name
		byAddr[n.Addr6] = n.Name
		byName[n.Name] = kv[0]
		all = append(all, n)
	}
	hosts := map[string]string{}
	for _, n := range all {
		for _, name := range []string{n.Name, n.Hostname} {
			if other, dup := hosts[name]; dup && other != n.Name {
				return nil, p.errAt(byName[n.Name], "nodes.%s: the name %q is also node %s's name or hostname; /etc/hosts needs them unique", n.Name, name, other)
			}
			hosts[name] = n.Name
		}
		for _, d := range n.DependsOn {
			if _, ok := byName[d]; !ok {
				return nil, p.errAt(byName[n.Name], "nodes.%s.depends_on: no node named %q; known nodes: %s", n.Name, d, strings.Join(sortedKeys(byName), ", "))
			}
		}
		for _, d := range sortedKeys(n.Conditions) {
			dep := all[nodeIndex(all, d)]
			switch n.Conditions[d] {
			case ServiceHealthy:
				if dep.Health == nil {
					return nil, p.errAt(byName[n.Name], "nodes.%s.depends_on.%s: condition: service_healthy, but node %s has no healthcheck:; give it one, or wait for service_started", n.Name, d, d)
				}
			case ServiceCompletedSuccessfully:
				if len(dep.Argv) == 0 {
					return nil, p.errAt(byName[n.Name], "nodes.%s.depends_on.%s: condition: service_completed_successfully, but node %s has no command, so it never completes", n.Name, d, d)
				}
			}
		}
	}
	if err := p.checkPorts(all); err != nil {
		return nil, err
	}
	ordered, err := p.order(all, byName)
	if err != nil {
		return nil, err
	}
	t.Nodes = ordered
	if t.Latency, err = p.latency(regionsNode, latencyNode, byName); err != nil {
		return nil, err
	}
	if faultsNode != nil {
		if t.Faults, err = p.faults(faultsNode); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// latency reads `regions:` and `latency:` (either may be nil) and checks
// them against the nodes byName.
func (p *parser) latency(regionsNode, rulesNode *yaml.Node, byName map[string]*yaml.Node) (latency.Matrix, error) {
	var m latency.Matrix
	nodeNames := sortedKeys(byName)
	regionAt := map[string]*yaml.Node{}
	if regionsNode != nil {
		regions, err := p.mapping(regionsNode, "regions")
		if err != nil {
			return m, err
		}
		m.Regions = map[string][]string{}
		inRegion := map[string]string{}
		for _, kv := range regions {
			name := kv[0].Value
			if _, ok := byName[name]; ok {
				return m, p.errAt(kv[0], "regions.%s: %q is also a node's name; name the region differently", name, name)
			}
			if kv[1].Kind != yaml.SequenceNode {
				return m, p.errAt(kv[1], "regions.%s: write a list of nodes, such as [n1, n2]", name)
			}
			regionAt[name] = kv[0]
			m.Regions[name] = []string{}
			for _, item := range kv[1].Content {
				if item.Kind != yaml.ScalarNode {
					return m, p.errAt(item, "regions.%s: write node names, such as [n1, n2]", name)
				}
				if _, ok := byName[item.Value]; !ok {
					return m, p.errAt(item, "regions.%s: no node named %q; known nodes: %s", name, item.Value, strings.Join(nodeNames, ", "))
				}
				if other, ok := inRegion[item.Value]; ok {
					return m, p.errAt(item, "regions.%s: node %s is already in region %s; a node is in at most one region", name, item.Value, other)
				}
				inRegion[item.Value] = name
				m.Regions[name] = append(m.Regions[name], item.Value)
			}
		}
	}
	if rulesNode == nil {
		return m, nil
	}
	rules, err := p.mapping(rulesNode, "latency")
	if err != nil {
		return m, err
	}
	var keys []*yaml.Node
	for _, kv := range rules {
		from, to, both, err := latency.ParseKey(kv[0].Value)
		if err != nil {
			return m, p.errAt(kv[0], "latency: %v", err)
		}
		for _, name := range []string{from, to} {
			if _, ok := byName[name]; !ok && regionAt[name] == nil {
				return m, p.errAt(kv[0], "latency: %q is neither a region nor a node; regions: %s; nodes: %s", name, orNone(sortedKeys(regionAt)), strings.Join(nodeNames, ", "))
			}
		}
		if kv[1].Kind != yaml.ScalarNode {
			return m, p.errAt(kv[1], "latency.%s: write a duration such as 40ms, or 75ms ±5ms with a jitter", kv[0].Value)
		}
		v, err := latency.ParseValue(kv[1].Value)
		if err != nil {
			return m, p.errAt(kv[1], "latency.%s: %v", kv[0].Value, err)
		}
		m.Rules = append(m.Rules, latency.Rule{From: from, To: to, Both: both, Value: v})
		keys = append(keys, kv[0])
	}
	if err := m.Check(nodeNames); err != nil {
		var re *latency.RuleError
		if errors.As(err, &re) {
			return m, p.errAt(keys[re.Rule], "%s", re.Msg)
		}
		return m, p.errAt(regionsNode, "%v", err)
	}
	return m, nil
}

func nodeIndex(nodes []Node, name string) int {
	for i, n := range nodes {
		if n.Name == name {
			return i
		}
	}
	return -1
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// subnets reads `NAME: CIDR` (an IPv4 prefix, paired with its default
// IPv6 /64, or an IPv6 /64 alone) or `NAME: {ipv4: CIDR, ipv6: CIDR}`,
// where ipv6 may be false and either may be left out.
func (p *parser) subnets(n *yaml.Node, noIPv6 bool) ([]Subnet, error) {
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
		s, at4, at6, err := p.subnet(field, kv[1], noIPv6)
		if err != nil {
			return nil, err
		}
		f4, f6 := field, field
		if kv[1].Kind == yaml.MappingNode {
			f4, f6 = field+".ipv4", field+".ipv6"
		}
		for _, o := range out {
			if s.HasIPv4() && o.HasIPv4() && o.Prefix.Overlaps(s.Prefix) {
				return nil, p.errAt(at4, "%s: %s overlaps subnets.%s (%s); subnets must not overlap", f4, s.Prefix, o.Name, o.Prefix)
			}
			if s.HasIPv6() && o.HasIPv6() && o.Prefix6.Overlaps(s.Prefix6) {
				return nil, p.errAt(at6, "%s: IPv6 prefix %s overlaps subnets.%s (%s); give each subnet its own /64 (ipv6: ...)", f6, s.Prefix6, o.Name, o.Prefix6)
			}
		}
		sub := Subnet{Name: kv[0].Value, Subnet: s}
		if at4 != nil {
			sub.Pos4 = Pos{at4.Line, at4.Column}
		}
		if at6 != nil {
			sub.Pos6 = Pos{at6.Line, at6.Column}
		}
		out = append(out, sub)
	}
	if len(out) > 16 {
		return nil, p.errAt(n, "subnets: at most 16 subnets")
	}
	return out, nil
}

// subnet reads one subnet's value; at4 and at6 are where its IPv4 and
// IPv6 prefixes came from, for errors.
func (p *parser) subnet(field string, v *yaml.Node, noIPv6 bool) (s ipam.Subnet, at4, at6 *yaml.Node, err error) {
	const hint = "write a CIDR such as 172.18.1.0/24 (paired with its IPv6 /64) or fd00:ac12:100::/64 (IPv6 only), or {ipv4: 172.18.1.0/24, ipv6: fd00:1::/64}"
	var v4, v6 *yaml.Node
	switch v.Kind {
	case yaml.ScalarNode:
		if strings.Contains(v.Value, ":") {
			v6 = v
		} else {
			v4 = v
		}
	case yaml.MappingNode:
		pairs, err := p.mapping(v, field, "ipv4", "ipv6")
		if err != nil {
			return s, nil, nil, err
		}
		for _, kv := range pairs {
			if kv[1].Kind != yaml.ScalarNode {
				return s, nil, nil, p.errAt(kv[1], "%s.%s: %s", field, kv[0].Value, hint)
			}
			if kv[0].Value == "ipv4" {
				v4 = kv[1]
			} else {
				v6 = kv[1]
			}
		}
		if v4 == nil && (v6 == nil || v6.Value == "false") {
			return s, nil, nil, p.errAt(v, "%s: needs ipv4:, ipv6: or both", field)
		}
		if v4 == nil && v6.Value == "false" {
			return s, nil, nil, p.errAt(v6, "%s.ipv6: false leaves the subnet no address at all; give it ipv4:", field)
		}
	default:
		return s, nil, nil, p.errAt(v, "%s: %s", field, hint)
	}
	if v4 != nil {
		f := field
		if v.Kind == yaml.MappingNode {
			f += ".ipv4"
		}
		if strings.Contains(v4.Value, ":") {
			return s, nil, nil, p.errAt(v4, "%s: %q is an IPv6 prefix; write an IPv4 CIDR such as 172.18.1.0/24 (or put it under ipv6:)", f, v4.Value)
		}
		if s, err = ipam.NewSubnet(f, v4.Value); err != nil {
			return s, nil, nil, p.errAt(v4, "%v", err)
		}
	}
	switch {
	case v6 != nil && v6.Value == "false":
		// IPv4 only.
	case v6 != nil:
		f := field
		if v.Kind == yaml.MappingNode {
			f += ".ipv6"
		}
		if noIPv6 {
			return s, nil, nil, p.errAt(v6, "%s: the file says ipv6: false, so no subnet may have an IPv6 prefix; remove one of them", f)
		}
		p6, err := ipam.ParsePrefix6(f, v6.Value)
		if err != nil {
			return s, nil, nil, p.errAt(v6, "%v", err)
		}
		s = s.WithIPv6(p6)
	case !noIPv6:
		s = s.Dual()
		v6 = v4
	}
	return s, v4, v6, nil
}

// boolean reads true or false.
func (p *parser) boolean(f string, v *yaml.Node) (bool, error) {
	if v.Kind != yaml.ScalarNode || (v.Value != "true" && v.Value != "false") {
		return false, p.errAt(v, "%s: write true or false", f)
	}
	return v.Value == "true", nil
}

func (p *parser) node(t *Topology, key, val *yaml.Node) (Node, error) {
	n := Node{Pos: Pos{key.Line, key.Column}, Name: key.Value, Hostname: key.Value}
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
	var ipNode, ip6Node, ipv6Node, taps, readyNode, healthNode, restartNode *yaml.Node
	var env, fileEnv []string
	for _, kv := range pairs {
		k, v := kv[0].Value, kv[1]
		f := field + "." + k
		switch k {
		case "ip":
			ipNode = v
		case "ip6":
			ip6Node = v
		case "ipv6":
			ipv6Node = v
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
			if env, err = p.environment(f, v); err != nil {
				return n, err
			}
		case "env_file":
			if fileEnv, err = p.envFiles(f, v); err != nil {
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
			if n.DependsOn, n.Conditions, err = p.dependsOn(f, v); err != nil {
				return n, err
			}
		case "tmpfs":
			if n.Tmpfs, err = p.tmpfs(f, v); err != nil {
				return n, err
			}
		case "restart":
			if n.Restart, err = p.restart(f, v); err != nil {
				return n, err
			}
			if len(n.Argv) == 0 && n.Restart.Policy != RestartNo {
				restartNode = v
			}
		case "healthcheck":
			if n.Health, err = p.health(f, v); err != nil {
				return n, err
			}
			healthNode = v
		case "ready":
			if n.Ready, err = p.ready(f, v); err != nil {
				return n, err
			}
			readyNode = v
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
		case "control":
			if n.Control, err = p.boolean(f, v); err != nil {
				return n, err
			}
		}
	}
	n.Env = mergeEnv(fileEnv, env)
	if err := p.addresses(t, &n, key, ipNode, ip6Node, ipv6Node); err != nil {
		return n, err
	}
	if readyNode != nil && len(n.Argv) == 0 {
		// Nothing would listen before the run is up (and a node without
		// a command is up at once): the check could only time out.
		return n, p.errAt(readyNode, "%s.ready: the node has no command, so nothing in it listens before the run is up (a tap node's VM is started with nsrun net exec once it is); remove ready:, or give the node a command", field)
	}
	if restartNode != nil && len(n.Argv) == 0 && n.Restart.Policy != RestartNo {
		return n, p.errAt(restartNode, "%s.restart: the node has no command to restart; remove restart:, or give the node a command", field)
	}
	if n.Health != nil && len(n.Argv) == 0 {
		return n, p.errAt(healthNode, "%s.healthcheck: the node has no command, so there is nothing to check; remove healthcheck:, or give the node a command", field)
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

// addresses sets the node's IPv4 and IPv6 addresses and its subnet from
// `ip:`, `ip6:` and `ipv6:`.
func (p *parser) addresses(t *Topology, n *Node, key, ipNode, ip6Node, ipv6Node *yaml.Node) error {
	field := "nodes." + n.Name
	v6 := true
	if ipv6Node != nil {
		on, err := p.boolean(field+".ipv6", ipv6Node)
		if err != nil {
			return err
		}
		v6 = on
	}
	if ipNode == nil && ip6Node == nil {
		return p.errAt(key, "%s.ip: missing; give the node a fixed address in one of the subnets (%s)", field, subnetList(t))
	}
	n.Subnet = -1
	if ipNode != nil {
		addr, err := netip.ParseAddr(ipNode.Value)
		if err != nil || !addr.Is4() || ipNode.Kind != yaml.ScalarNode {
			return p.errAt(ipNode, "%s.ip: %q is not an IPv4 address such as 172.18.0.7 (IPv6 addresses go under ip6:)", field, ipNode.Value)
		}
		n.Addr = addr
		for i, s := range t.Subnets {
			if s.HasIPv4() && s.Prefix.Contains(addr) {
				if err := s.CheckGuest(field+".ip", addr); err != nil {
					return p.errAt(ipNode, "%v", err)
				}
				n.Subnet = i
			}
		}
		if n.Subnet < 0 {
			return p.errAt(ipNode, "%s.ip: %s is in no subnet of the file (%s); pick an address inside one, or add its subnet under subnets:", field, addr, subnetList(t))
		}
	}
	if ip6Node != nil {
		f := field + ".ip6"
		if !v6 {
			return p.errAt(ip6Node, "%s: the node says ipv6: false; remove one of them", f)
		}
		addr, err := netip.ParseAddr(ip6Node.Value)
		if err != nil || !addr.Is6() || ip6Node.Kind != yaml.ScalarNode {
			return p.errAt(ip6Node, "%s: %q is not an IPv6 address such as fd00:ac12::7", f, ip6Node.Value)
		}
		if err := ipam.CheckAddr6(f, addr); err != nil {
			return p.errAt(ip6Node, "%v", err)
		}
		if n.Subnet >= 0 {
			s := t.Subnets[n.Subnet]
			if s.HasIPv6() && !s.Prefix6.Contains(addr) {
				return p.errAt(ip6Node, "%s: %s is outside %s, the IPv6 prefix of subnets.%s where ip: %s puts the node; pick an address in %s", f, addr, s.Prefix6, s.Name, n.Addr, s.Prefix6)
			}
			if err := s.CheckGuest6(f, addr); err != nil {
				return p.errAt(ip6Node, "%v", err)
			}
		} else {
			for i, s := range t.Subnets {
				if s.HasIPv6() && s.Prefix6.Contains(addr) {
					n.Subnet = i
				}
			}
			if n.Subnet < 0 {
				return p.errAt(ip6Node, "%s: %s is in no subnet's IPv6 prefix (%s); pick an address inside one, or add its subnet under subnets:", f, addr, subnetList(t))
			}
			if err := t.Subnets[n.Subnet].CheckGuest6(f, addr); err != nil {
				return p.errAt(ip6Node, "%v", err)
			}
		}
		n.Addr6 = addr
	}
	s := t.Subnets[n.Subnet]
	if !s.HasIPv4() && !v6 {
		return p.errAt(ipv6Node, "%s.ipv6: false leaves the node no address in its IPv6-only subnet %s", field, s.Name)
	}
	if v6 && !n.Addr6.IsValid() {
		n.Addr6 = s.Guest6(n.Addr)
	}
	return nil
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
		out = append(out, Tap{Pos: Pos{at.Line, at.Column}, Name: name, Subnet: sn})
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
		var ps []string
		if sn.HasIPv4() {
			ps = append(ps, sn.Prefix.String())
		}
		if sn.HasIPv6() {
			ps = append(ps, sn.Prefix6.String())
		}
		s = append(s, sn.Name+" "+strings.Join(ps, " and "))
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

// readyKeys are the keys of `ready:` in its long form.
var readyKeys = []string{"check", "timeout"}

// ready reads `ready: tcp:PORT` or `ready: {check: tcp:PORT, timeout: 2m}`.
func (p *parser) ready(f string, v *yaml.Node) (*Ready, error) {
	check := v
	var timeout *yaml.Node
	if v.Kind == yaml.MappingNode {
		pairs, err := p.mapping(v, f, readyKeys...)
		if err != nil {
			return nil, err
		}
		check = nil
		for _, kv := range pairs {
			switch kv[0].Value {
			case "check":
				check = kv[1]
			case "timeout":
				timeout = kv[1]
			}
		}
		if check == nil {
			return nil, p.errAt(v, "%s.check: missing; write check: tcp:PORT, for example {check: tcp:6379, timeout: 2m}", f)
		}
		f += ".check"
	}
	port, ok := strings.CutPrefix(check.Value, "tcp:")
	pn, err := strconv.ParseUint(port, 10, 16)
	if check.Kind != yaml.ScalarNode || !ok || err != nil || pn == 0 {
		return nil, p.errAt(check, "%s: write tcp:PORT, for example tcp:6379 (the node is up when that port accepts), or {check: tcp:6379, timeout: 2m}", f)
	}
	r := &Ready{Port: uint16(pn)}
	if timeout != nil {
		tf := strings.TrimSuffix(f, ".check") + ".timeout"
		d, err := time.ParseDuration(timeout.Value)
		if timeout.Kind != yaml.ScalarNode || err != nil || d <= 0 || d > MaxReadyTimeout {
			return nil, p.errAt(timeout, "%s: %q: write a duration above 0 and at most %s, such as 90s, 2m or 1h30m", tf, timeout.Value, "24h")
		}
		r.Timeout = d
	}
	return r, nil
}

func (p *parser) ports(f string, v *yaml.Node) ([]Port, error) {
	list, err := p.stringList(f, v)
	if err != nil {
		return nil, err
	}
	var out []Port
	for i, s := range list {
		at := v.Content[i]
		pt, err := parsePort(s)
		if err != nil {
			return nil, p.errAt(at, "%s: %q: %v", f, s, err)
		}
		pt.Pos = Pos{at.Line, at.Column}
		out = append(out, pt)
	}
	return out, nil
}

// parsePort reads "HOST:NODE", "ADDR:HOST:NODE" (IPv4) or
// "[ADDR]:HOST:NODE" (IPv6), docker compose's short syntax.
func parsePort(s string) (Port, error) {
	const form = `write "HOST:NODE", such as "8080:8000" (the host's 127.0.0.1:8080 to the node's port 8000), or "ADDR:HOST:NODE" with the host address to listen on, such as "127.0.0.1:8080:8000" or "[::1]:8080:8000"`
	pt := Port{Addr: netip.AddrFrom4([4]byte{127, 0, 0, 1})}
	rest := s
	if strings.HasPrefix(s, "[") {
		a, r, ok := strings.Cut(s[1:], "]:")
		ip, err := netip.ParseAddr(a)
		if !ok || err != nil || !ip.Is6() || ip.Is4In6() {
			return pt, errors.New(form)
		}
		pt.Addr, rest = ip, r
	} else if parts := strings.Split(s, ":"); len(parts) == 3 {
		ip, err := netip.ParseAddr(parts[0])
		if err != nil || !ip.Is4() {
			return pt, errors.New(form)
		}
		pt.Addr, rest = ip, parts[1]+":"+parts[2]
	}
	h, n, ok := strings.Cut(rest, ":")
	hp, err1 := strconv.ParseUint(h, 10, 16)
	np, err2 := strconv.ParseUint(n, 10, 16)
	if !ok || err1 != nil || err2 != nil || hp == 0 || np == 0 {
		return pt, errors.New(form)
	}
	if pt.Addr.Zone() != "" || pt.Addr.IsMulticast() || pt.Addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return pt, fmt.Errorf("%s is no address to listen on: use 127.0.0.1, ::1 or an address of this host", pt.Addr)
	}
	pt.Host, pt.Node = uint16(hp), uint16(np)
	return pt, nil
}

// checkPorts refuses a host port published twice: at one address, or
// at an address and the unspecified one of its family (0.0.0.0 or ::),
// which takes the port on every address.
func (p *parser) checkPorts(nodes []Node) error {
	type use struct {
		node string
		pt   Port
	}
	var used []use
	for _, n := range nodes {
		for _, pt := range n.Ports {
			for _, u := range used {
				if u.pt.Host == pt.Host && u.pt.Addr.Is4() == pt.Addr.Is4() &&
					(u.pt.Addr == pt.Addr || u.pt.Addr.IsUnspecified() || pt.Addr.IsUnspecified()) {
					return ErrorAt(p.file, pt.Pos, "nodes.%s.ports: host %s is also published by node %s (%s); pick another host port", n.Name, pt.HostAddrPort(), u.node, u.pt.HostAddrPort())
				}
			}
			used = append(used, use{n.Name, pt})
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
