package nstest

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Topology is a network written in Go rather than YAML; YAML turns it
// into the text Start takes:
//
//	n := nstest.Start(t, nstest.Topology{Nodes: []nstest.NodeSpec{
//		{Name: "db", IP: "172.18.0.10", Command: []string{"redis-server"}, Ready: 6379},
//		{Name: "web", IP: "172.18.0.11", DependsOn: []string{"db"}},
//	}}.YAML())
//
// Fields mean what the nsrun.yaml keys of the same names mean; empty
// fields are left out.
type Topology struct {
	// Subnets by name, as CIDR prefixes; none is one 172.18.0.0/24.
	Subnets map[string]string
	Nodes   []NodeSpec
}

// NodeSpec is one node of a Topology.
type NodeSpec struct {
	Name        string
	IP          string
	IP6         string
	Hostname    string
	Command     []string
	Ready       uint16 // a TCP port that accepts once the node is up
	Environment map[string]string
	WorkingDir  string
	DependsOn   []string
	Ports       []string // "HOST:NODE" or "ADDR:HOST:NODE"
	Capture     bool
	// Control lets the node's processes run `nsrun net` and `nsrun node`
	// on its run (control: true; a trusted node, such as a test driver).
	Control bool
}

// YAML is the topology as the text of an nsrun.yaml (JSON, which YAML
// reads as it is).
func (tp Topology) YAML() string {
	type node struct {
		IP          string            `json:"ip,omitempty"`
		IP6         string            `json:"ip6,omitempty"`
		Hostname    string            `json:"hostname,omitempty"`
		Command     []string          `json:"command,omitempty"`
		Ready       string            `json:"ready,omitempty"`
		Environment map[string]string `json:"environment,omitempty"`
		WorkingDir  string            `json:"working_dir,omitempty"`
		DependsOn   []string          `json:"depends_on,omitempty"`
		Ports       []string          `json:"ports,omitempty"`
		Capture     bool              `json:"capture,omitempty"`
		Control     bool              `json:"control,omitempty"`
	}
	doc := struct {
		Subnets map[string]string `json:"subnets,omitempty"`
		Nodes   map[string]node   `json:"nodes"`
	}{Subnets: tp.Subnets, Nodes: map[string]node{}}
	// The file's values are interpolated (${VAR}); a spec's are literal.
	esc := func(s string) string { return strings.ReplaceAll(s, "$", "$$") }
	for _, n := range tp.Nodes {
		var argv []string
		for _, a := range n.Command {
			argv = append(argv, esc(a))
		}
		var env map[string]string
		if n.Environment != nil {
			env = map[string]string{}
			for k, v := range n.Environment {
				env[k] = esc(v)
			}
		}
		nd := node{IP: n.IP, IP6: n.IP6, Hostname: n.Hostname, Command: argv, Environment: env,
			WorkingDir: esc(n.WorkingDir), DependsOn: n.DependsOn, Ports: n.Ports, Capture: n.Capture, Control: n.Control}
		if n.Ready != 0 {
			nd.Ready = fmt.Sprintf("tcp:%d", n.Ready)
		}
		doc.Nodes[n.Name] = nd
	}
	b, _ := json.MarshalIndent(doc, "", "  ") // strings, slices and maps of strings: cannot fail
	return string(b) + "\n"
}
