package topology

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `
subnets:
  front: 172.18.0.0/24
  back: 172.18.1.0/24
nodes:
  web:
    ip: 172.18.0.2
    hostname: web1
    command: sh -c 'exec python3 -m http.server 8000'
    environment: {ROLE: web}
    working_dir: .
    depends_on: [db]
    ports: ["8080:8000"]
    control: true
  db:
    ip: 172.18.1.10
    command: ["redis-server", "--bind", "0.0.0.0"]
    ready: tcp:6379
`

func TestParseGood(t *testing.T) {
	top, err := Parse("nsrun.yaml", t.TempDir(), []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Subnets) != 2 || top.Subnets[1].Bridge.String() != "172.18.1.254" {
		t.Errorf("subnets: %+v", top.Subnets)
	}
	if top.Nodes[0].Name != "db" || top.Nodes[1].Name != "web" {
		t.Errorf("start order %s, %s: want db before web", top.Nodes[0].Name, top.Nodes[1].Name)
	}
	web := top.Nodes[1]
	if strings.Join(web.Argv, "|") != "sh|-c|exec python3 -m http.server 8000" {
		t.Errorf("command split: %q", web.Argv)
	}
	if web.Hostname != "web1" || web.Subnet != 0 || web.Ports[0] != (Port{Pos: Pos{13, 13}, Addr: netip.MustParseAddr("127.0.0.1"), Host: 8080, Node: 8000}) || web.Env[0] != "ROLE=web" {
		t.Errorf("web: %+v", web)
	}
	if !web.Control || top.Nodes[0].Control {
		t.Errorf("control: web %v, db %v; want only web", web.Control, top.Nodes[0].Control)
	}
	if db := top.Nodes[0]; db.Ready == nil || db.Ready.Port != 6379 || db.Subnet != 1 || db.Hostname != "db" {
		t.Errorf("db: %+v", db)
	}
}

// TestParsePorts: the host address defaults to 127.0.0.1; IPv4 and
// bracketed IPv6 addresses are taken; one port at two addresses is fine.
func TestParsePorts(t *testing.T) {
	top, err := Parse("f.yaml", "/", []byte("nodes:\n  a: {ip: 172.18.0.1, ports: [\"8080:80\", \"127.0.0.2:8080:81\", \"[::1]:8080:82\", \"0.0.0.0:9090:83\", \"[::]:9090:84\"]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, pt := range top.Nodes[0].Ports {
		got = append(got, fmt.Sprintf("%s->%d@%d:%d", pt.HostAddrPort(), pt.Node, pt.Pos.Line, pt.Pos.Column))
	}
	want := "127.0.0.1:8080->80@2:31 127.0.0.2:8080->81@2:42 [::1]:8080->82@2:63 0.0.0.0:9090->83@2:80 [::]:9090->84@2:99"
	if strings.Join(got, " ") != want {
		t.Errorf("ports %s\nwant  %s", strings.Join(got, " "), want)
	}
}

// TestParsePortProtocols: "/udp" publishes a UDP port, "/tcp" or nothing
// a TCP one; one host port may be published once per protocol, so DNS's
// 53/udp and 53/tcp go side by side.
func TestParsePortProtocols(t *testing.T) {
	top, err := Parse("f.yaml", "/", []byte("nodes:\n  a: {ip: 172.18.0.1, ports: [\"5353:53/udp\", \"5353:53/tcp\", \"[::1]:5353:53/udp\", \"127.0.0.1:8080:80\"]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, pt := range top.Nodes[0].Ports {
		got = append(got, fmt.Sprintf("%s->%d/%s", pt.HostString(), pt.Node, pt.Proto))
	}
	want := "127.0.0.1:5353/udp->53/udp 127.0.0.1:5353->53/tcp [::1]:5353/udp->53/udp 127.0.0.1:8080->80/tcp"
	if strings.Join(got, " ") != want {
		t.Errorf("ports %s\nwant  %s", strings.Join(got, " "), want)
	}
	for _, c := range []struct{ file, want string }{
		{"nodes:\n  a: {ip: 172.18.0.1, ports: [\"5353:53/udp\"]}\n  b: {ip: 172.18.0.2, ports: [\"0.0.0.0:5353:53/udp\"]}\n",
			"f.yaml:3:31: nodes.b.ports: host 0.0.0.0:5353/udp is also published by node a (127.0.0.1:5353/udp); pick another host port"},
		{"nodes:\n  a: {ip: 172.18.0.1, ports: [\"5353:53/sctp\"]}\n",
			`f.yaml:2:31: nodes.a.ports: "5353:53/sctp": protocol "sctp": nsrun publishes tcp and udp ports; write "HOST:NODE/udp" for UDP, nothing or /tcp for TCP`},
		{"nodes:\n  a: {ip: 172.18.0.1, ports: [\"5353/udp\"]}\n",
			`f.yaml:2:31: nodes.a.ports: "5353/udp": write "HOST:NODE"`},
	} {
		if _, err := Parse("f.yaml", "/", []byte(c.file)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v\nwant %s", c.file, err, c.want)
		}
	}
}

func TestParseDefaultSubnet(t *testing.T) {
	top, err := Parse("f.yaml", "/", []byte("nodes:\n  a: {ip: 172.18.0.1}\n  b: {ip: 172.18.0.2, command: [sleep, '1']}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Subnets) != 1 || top.Subnets[0].Prefix.String() != "172.18.0.0/24" || len(top.Nodes[0].Argv) != 0 {
		t.Errorf("%+v", top)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"yaml syntax", "nodes:\n  a: {ip: 172.18.0.1\n", "f.yaml:"},
		{"unknown top key", "nodez: {}\n", "f.yaml:1:1: the file: unknown key \"nodez\""},
		{"unknown node key", "nodes:\n  a:\n    ip: 172.18.0.1\n    comand: x\n", "f.yaml:4:5: nodes.a: unknown key \"comand\"; known keys: ip, ip6, ipv6, hostname"},
		{"missing ip", "nodes:\n  a: {hostname: x}\n", "nodes.a.ip: missing"},
		{"bad ip", "nodes:\n  a: {ip: 172.18.0.300}\n", "f.yaml:2:11: nodes.a.ip: \"172.18.0.300\" is not an IPv4 address"},
		{"outside subnets", "nodes:\n  a: {ip: 10.0.0.1}\n", "nodes.a.ip: 10.0.0.1 is in no subnet of the file (default 172.18.0.0/24 and fd00:ac12::/64)"},
		{"bridge address", "nodes:\n  a: {ip: 172.18.0.254}\n", "nodes.a.ip: 172.18.0.254 is the bridge's own address"},
		{"network address", "nodes:\n  a: {ip: 172.18.0.0}\n", "is the network address"},
		{"duplicate address", "nodes:\n  a: {ip: 172.18.0.1}\n  b: {ip: 172.18.0.1}\n", "nodes.b.ip: 172.18.0.1 is already node a's address"},
		{"duplicate name", "nodes:\n  a: {ip: 172.18.0.1}\n  a: {ip: 172.18.0.2}\n", "nodes: \"a\" appears twice"},
		{"hostname clash", "nodes:\n  a: {ip: 172.18.0.1}\n  b: {ip: 172.18.0.2, hostname: a}\n", "the name \"a\" is also node a's"},
		{"overlapping subnets", "subnets:\n  x: 172.18.0.0/16\n  y: 172.18.1.0/24\nnodes:\n  a: {ip: 172.18.1.1}\n", "subnets.y: 172.18.1.0/24 overlaps subnets.x"},
		{"bad subnet", "subnets:\n  x: 172.18.0.1/24\nnodes:\n  a: {ip: 172.18.0.2}\n", "subnets.x: \"172.18.0.1/24\" has host bits set"},
		{"cycle", "nodes:\n  a: {ip: 172.18.0.1, depends_on: [b]}\n  b: {ip: 172.18.0.2, depends_on: [a]}\n", "dependency cycle a -> b -> a"},
		{"unknown dependency", "nodes:\n  a: {ip: 172.18.0.1, depends_on: [zz]}\n", "nodes.a.depends_on: no node named \"zz\""},
		{"bad ready", "nodes:\n  a: {ip: 172.18.0.1, ready: http:80}\n", "nodes.a.ready: write tcp:PORT"},
		{"ready timeout not a duration", "nodes:\n  a:\n    ip: 172.18.0.1\n    ready: {check: tcp:80, timeout: 2}\n", "f.yaml:4:37: nodes.a.ready.timeout: \"2\": write a duration"},
		{"ready timeout zero", "nodes:\n  a: {ip: 172.18.0.1, ready: {check: tcp:80, timeout: 0s}}\n", "nodes.a.ready.timeout: \"0s\": write a duration above 0"},
		{"ready timeout too long", "nodes:\n  a: {ip: 172.18.0.1, ready: {check: tcp:80, timeout: 25h}}\n", "at most 24h"},
		{"ready without check", "nodes:\n  a:\n    ip: 172.18.0.1\n    ready: {timeout: 2m}\n", "f.yaml:4:12: nodes.a.ready.check: missing"},
		{"ready bad check", "nodes:\n  a:\n    ip: 172.18.0.1\n    ready: {check: udp:53}\n", "f.yaml:4:20: nodes.a.ready.check: write tcp:PORT"},
		{"ready without command", "nodes:\n  a:\n    ip: 172.18.0.1\n    ready: tcp:80\n", "f.yaml:4:12: nodes.a.ready: the node has no command, so nothing in it listens"},
		{"ready on a tap node", "nodes:\n  vm: {ip: 172.18.0.7, tap: {t0: default}, ready: tcp:22}\n", "nodes.vm.ready: the node has no command"},
		{"ready unknown key", "nodes:\n  a:\n    ip: 172.18.0.1\n    ready: {check: tcp:80, every: 1s}\n", "f.yaml:4:28: nodes.a.ready: unknown key \"every\"; known keys: check, timeout"},
		{"bad port", "nodes:\n  a: {ip: 172.18.0.1, ports: [\"80\"]}\n", "nodes.a.ports: \"80\": write \"HOST:NODE\""},
		{"same host port", "nodes:\n  a: {ip: 172.18.0.1, ports: [\"8080:80\"]}\n  b: {ip: 172.18.0.2, ports: [\"8080:80\"]}\n", "f.yaml:3:31: nodes.b.ports: host 127.0.0.1:8080 is also published by node a"},
		{"bad name", "nodes:\n  'a b': {ip: 172.18.0.1}\n", "node name \"a b\" may use only"},
		{"empty", "", "the file is empty"},
		{"no nodes", "subnets: {}\n", "no `nodes:`"},
		{"unterminated quote", "nodes:\n  a: {ip: 172.18.0.1, command: \"sh -c 'x\"}\n", "unterminated ' quote"},
		{"bad env", "nodes:\n  a: {ip: 172.18.0.1, environment: [FOO]}\n", "\"FOO\" is not KEY=VALUE"},
		{"NUL in an argument", "nodes:\n  a: {ip: 172.18.0.1, command: [sh, \"x\\0y\"]}\n", "f.yaml:2:37: nodes.a.command: \"x\\x00y\" contains a NUL byte"},
		{"NUL in a command line", "nodes:\n  a: {ip: 172.18.0.1, command: \"sh x\\0y\"}\n", "nodes.a.command: \"sh x\\x00y\" contains a NUL byte"},
		{"NUL in a variable", "nodes:\n  a: {ip: 172.18.0.1, environment: {A: \"x\\0INJ=1\"}}\n", "nodes.a.environment.A: \"x\\x00INJ=1\" contains a NUL byte"},
		{"NUL in a KEY=VALUE", "nodes:\n  a: {ip: 172.18.0.1, environment: [\"A=x\\0B=1\"]}\n", "nodes.a.environment: \"A=x\\x00B=1\" contains a NUL byte"},
		{"port address", "nodes:\n  a: {ip: 172.18.0.1, ports: [\"localhost:80:80\"]}\n", "f.yaml:2:31: nodes.a.ports: \"localhost:80:80\": write \"HOST:NODE\""},
		{"port IPv6 unbracketed", "nodes:\n  a: {ip: 172.18.0.1, ports: [\"::1:8080:80\"]}\n", "write \"HOST:NODE\""},
		{"port multicast", "nodes:\n  a: {ip: 172.18.0.1, ports: [\"[ff02::1]:8080:80\"]}\n", "ff02::1 is no address to listen on"},
		{"port same address", "nodes:\n  a: {ip: 172.18.0.1, ports: [\"[::1]:8080:80\"]}\n  b: {ip: 172.18.0.2, ports: [\"[::1]:8080:80\"]}\n", "f.yaml:3:31: nodes.b.ports: host [::1]:8080 is also published by node a"},
		{"port unspecified", "nodes:\n  a: {ip: 172.18.0.1, ports: [\"127.0.0.2:8080:80\"]}\n  b: {ip: 172.18.0.2, ports: [\"0.0.0.0:8080:80\"]}\n", "host 0.0.0.0:8080 is also published by node a (127.0.0.2:8080)"},
		{"bad control", "nodes:\n  a: {ip: 172.18.0.1, control: yes}\n", "f.yaml:2:32: nodes.a.control: write true or false"},
	} {
		_, err := Parse("f.yaml", "/", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// TestReadyForms: `ready: tcp:PORT` and the long form with a timeout.
func TestReadyForms(t *testing.T) {
	top, err := Parse("f.yaml", "/", []byte("nodes:\n  a: {ip: 172.18.0.1, command: x, ready: tcp:80}\n  b: {ip: 172.18.0.2, command: x, ready: {check: tcp:9999, timeout: 2m}}\n  c: {ip: 172.18.0.3, command: x, ready: {check: tcp:81}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Ready{"a": {Port: 80}, "b": {Port: 9999, Timeout: 2 * time.Minute}, "c": {Port: 81}}
	for _, n := range top.Nodes {
		if n.Ready == nil || *n.Ready != want[n.Name] {
			t.Errorf("node %s: ready %+v, want %+v", n.Name, n.Ready, want[n.Name])
		}
	}
}

func TestSplitWords(t *testing.T) {
	for in, want := range map[string]string{
		`a b  c`:             "a|b|c",
		`sh -c 'echo "x y"'`: `sh|-c|echo "x y"`,
		`a "b \"c\" d" e\ f`: `a|b "c" d|e f`,
		`''`:                 "",
	} {
		got, err := SplitWords(in)
		if err != nil || strings.Join(got, "|") != want {
			t.Errorf("SplitWords(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestExamples checks that every shipped example file is valid.
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*/nsrun.yaml")
	if len(files) < 2 {
		t.Fatalf("examples: found %v", files)
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Error(err)
		}
	}
}

// TestSpecialSubnetsRefused: loopback, multicast, link-local and other
// special-purpose ranges cannot be a subnet; the error names the file,
// line, column and field, the range, and the fix.
func TestSpecialSubnetsRefused(t *testing.T) {
	for value, want := range map[string]string{
		"127.0.0.0/24":                         "f.yaml:3:6: subnets.x: 127.0.0.0/24 overlaps 127.0.0.0/8 (loopback), which the kernel keeps on lo and never routes; pick a private subnet such as 172.18.1.0/24",
		"127.0.0.0/8":                          "overlaps 127.0.0.0/8 (loopback)",
		"224.1.0.0/24":                         "f.yaml:3:6: subnets.x: 224.1.0.0/24 overlaps 224.0.0.0/4 (multicast)",
		"239.255.0.0/16":                       "(multicast)",
		"0.0.0.0/24":                           "overlaps 0.0.0.0/8 (this network)",
		"169.254.1.0/24":                       "overlaps 169.254.0.0/16 (link-local)",
		"240.0.0.0/24":                         "overlaps 240.0.0.0/4 (reserved, and broadcast)",
		"255.255.255.0/24":                     "overlaps 240.0.0.0/4",
		"{ipv4: 127.1.0.0/16}":                 "f.yaml:3:13: subnets.x.ipv4: 127.1.0.0/16 overlaps 127.0.0.0/8 (loopback)",
		"ff02::/64":                            "f.yaml:3:6: subnets.x: ff02::/64 is multicast (ff00::/8)",
		"fe80::/64":                            "f.yaml:3:6: subnets.x: fe80::/64 is link-local (fe80::/10)",
		"::1/128":                              "holds the unspecified and loopback addresses",
		"'::/64'":                              "holds the unspecified and loopback addresses",
		"{ipv4: 10.1.0.0/24, ipv6: ff05::/64}": "f.yaml:3:32: subnets.x.ipv6: ff05::/64 is multicast",
	} {
		_, err := Parse("f.yaml", "/", []byte("subnets:\n  y: 172.18.0.0/24\n  x: "+value+"\nnodes:\n  a: {ip: 172.18.0.1}\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("subnet %s: %v; want %q", value, err, want)
		}
	}
	for _, value := range []string{"10.0.0.0/8", "192.168.0.0/16", "100.64.0.0/10", "198.18.0.0/15", "11.0.0.0/8", "{ipv4: 10.1.0.0/24, ipv6: 2001:db8::/64}"} {
		if _, err := Parse("f.yaml", "/", []byte("subnets:\n  y: 172.18.0.0/24\n  x: "+value+"\nnodes:\n  a: {ip: 172.18.0.1}\n")); err != nil {
			t.Errorf("subnet %s: %v", value, err)
		}
	}
}

// TestSubnetPositions: a subnet keeps where its prefixes are written, for
// errors found later (overlaps with the helper's ranges).
func TestSubnetPositions(t *testing.T) {
	top, err := Parse("f.yaml", "/", []byte("subnets:\n  y: 172.18.0.0/24\n  x: {ipv4: 10.1.0.0/24, ipv6: fd00:1::/64}\nnodes:\n  a: {ip: 172.18.0.1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if y, x := top.Subnets[0], top.Subnets[1]; y.Pos4 != (Pos{2, 6}) || y.Pos6 != (Pos{2, 6}) || x.Pos4 != (Pos{3, 13}) || x.Pos6 != (Pos{3, 32}) {
		t.Errorf("positions: y %+v %+v, x %+v %+v", y.Pos4, y.Pos6, x.Pos4, x.Pos6)
	}
}
