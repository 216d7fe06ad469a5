package topology

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/nsrun/nsrun/internal/latency"
	"github.com/nsrun/nsrun/ipam"
)

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

// path is the path s of the file: s if absolute, else relative to the
// file's folder.
func (p *parser) path(s string) string {
	if filepath.IsAbs(s) {
		return s
	}
	return filepath.Join(p.dir, s)
}

// oneOrList is the items of v, a value or a list of them: the list's
// items, or v itself.
func oneOrList(v *yaml.Node) []*yaml.Node {
	if v.Kind == yaml.SequenceNode {
		return v.Content
	}
	return []*yaml.Node{v}
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
				return nil, p.errAt(byName[n.Name], "nodes.%s.depends_on: no node named %q; known nodes: %s", n.Name, d, strings.Join(slices.Sorted(maps.Keys(byName)), ", "))
			}
		}
		for _, d := range slices.Sorted(maps.Keys(n.Conditions)) {
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
	nodeNames := slices.Sorted(maps.Keys(byName))
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
				return m, p.errAt(kv[0], "latency: %q is neither a region nor a node; regions: %s; nodes: %s", name, orNone(slices.Sorted(maps.Keys(regionAt))), strings.Join(nodeNames, ", "))
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
