package topology

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/nsrun/nsrun/ipam"
)

var nodeKeys = []string{"ip", "ip6", "ipv6", "hostname", "command", "environment", "env_file", "working_dir", "depends_on", "ready", "healthcheck", "restart", "tmpfs", "ports", "capture", "tap", "control"}

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
			n.Dir = p.path(v.Value)
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

// noNUL refuses a NUL byte in the value of field f: no program can
// receive one in its arguments or environment (exec ends the string
// there).
func noNUL(f, value string) error {
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("%s: %q contains a NUL byte (\\0), which no program can receive in its arguments or environment; remove it", f, value)
	}
	return nil
}

func (p *parser) command(f string, v *yaml.Node) ([]string, error) {
	switch v.Kind {
	case yaml.ScalarNode:
		if err := noNUL(f, v.Value); err != nil {
			return nil, p.errAt(v, "%v", err)
		}
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
		if err := noNUL(f, e.Value); err != nil {
			return nil, p.errAt(e, "%v", err)
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
			for _, part := range kv {
				if err := noNUL(f+"."+kv[0].Value, part.Value); err != nil {
					return nil, p.errAt(part, "%v", err)
				}
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
// "[ADDR]:HOST:NODE" (IPv6), docker compose's short syntax, each with
// an optional "/tcp" or "/udp" at the end.
func parsePort(s string) (Port, error) {
	const form = `write "HOST:NODE", such as "8080:8000" (the host's 127.0.0.1:8080 to the node's port 8000), or "ADDR:HOST:NODE" with the host address to listen on, such as "127.0.0.1:8080:8000" or "[::1]:8080:8000"; end it in /udp for a UDP port, such as "5353:53/udp"`
	pt := Port{Addr: netip.AddrFrom4([4]byte{127, 0, 0, 1})}
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		switch proto := s[i+1:]; proto {
		case "tcp":
		case "udp":
			pt.Proto = UDP
		default:
			return pt, fmt.Errorf("protocol %q: nsrun publishes tcp and udp ports; write \"HOST:NODE/udp\" for UDP, nothing or /tcp for TCP", proto)
		}
		s = s[:i]
	}
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
				if u.pt.Host == pt.Host && u.pt.Proto == pt.Proto && u.pt.Addr.Is4() == pt.Addr.Is4() &&
					(u.pt.Addr == pt.Addr || u.pt.Addr.IsUnspecified() || pt.Addr.IsUnspecified()) {
					return ErrorAt(p.file, pt.Pos, "nodes.%s.ports: host %s is also published by node %s (%s); pick another host port", n.Name, pt.HostString(), u.node, u.pt.HostString())
				}
			}
			used = append(used, use{n.Name, pt})
		}
	}
	return nil
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
