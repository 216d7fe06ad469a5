package topology

import (
	"errors"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/ipam"
)

// FuzzParse: no file makes the parser panic; a refused file is refused
// with a file error (file:line:col where it has a position); an accepted one has valid, distinct node names and
// addresses inside its subnet, and every node after those it depends on.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"nodes:\n  a: {ip: 172.18.0.1}\n  b: {ip: 172.18.0.2, command: [sleep, '1'], depends_on: [a]}\n",
		"subnets:\n  front: 172.18.0.0/24\n  back: 172.18.1.0/24\nnodes:\n  a: {ip: 172.18.1.9, command: sh -c 'x'}\n",
		"nodes:\n  web: {ip: 172.18.0.5, ports: [\"8080:80\"], ready: tcp:80}\n",
		"nodes:\n  vm: {ip: 172.18.0.9, tap: {link0: default}}\n",
		"nodes:\n  a: {ip: 172.18.0.1}\n  a: {ip: 172.18.0.2}\n",
		"nodes:\n  a: {ip: 10.0.0.1}\n", "nodes: [", "", "subnets: {x: fd00::/64}\nnodes:\n  a: {}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		top, err := Parse("f.yaml", "/", data)
		if err != nil {
			var e *Error
			if !strings.HasPrefix(err.Error(), "f.yaml") || !errors.As(err, &e) {
				t.Fatalf("error is not a file error naming the file: %v", err)
			}
			return
		}
		names, addrs, pos := map[string]bool{}, map[string]bool{}, map[string]int{}
		for i, n := range top.Nodes {
			if ipam.CheckNodeName("n", n.Name) != nil || names[n.Name] {
				t.Fatalf("accepted node name %q (twice: %v)", n.Name, names[n.Name])
			}
			names[n.Name], pos[n.Name] = true, i
			if n.Addr.IsValid() {
				if addrs[n.Addr.String()] {
					t.Fatalf("accepted address %s twice", n.Addr)
				}
				addrs[n.Addr.String()] = true
				if n.Subnet < 0 || n.Subnet >= len(top.Subnets) {
					t.Fatalf("node %s in subnet %d of %d", n.Name, n.Subnet, len(top.Subnets))
				}
			}
		}
		for _, n := range top.Nodes {
			for _, d := range n.DependsOn {
				if p, ok := pos[d]; !ok || p >= pos[n.Name] {
					t.Fatalf("node %s starts before %s, which it depends on", n.Name, d)
				}
			}
		}
	})
}
