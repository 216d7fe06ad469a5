package test

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestUpRefusesSpecialSubnets: loopback, multicast and other special
// subnets are refused at the file (file:line:col), by the built nsrun as
// the user, before anything is made; they used to pass and fail at run
// time.
func TestUpRefusesSpecialSubnets(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	files := map[string]string{}
	want := map[string]string{}
	for name, c := range map[string][2]string{
		"lo":    {"127.0.0.0/24", "lo.yaml:3:6: subnets.x: 127.0.0.0/24 overlaps 127.0.0.0/8 (loopback)"},
		"mc":    {"224.1.0.0/24", "mc.yaml:3:6: subnets.x: 224.1.0.0/24 overlaps 224.0.0.0/4 (multicast)"},
		"zero":  {"0.0.0.0/24", "zero.yaml:3:6: subnets.x: 0.0.0.0/24 overlaps 0.0.0.0/8 (this network)"},
		"ll":    {"169.254.7.0/24", "ll.yaml:3:6: subnets.x: 169.254.7.0/24 overlaps 169.254.0.0/16 (link-local)"},
		"class": {"240.1.0.0/24", "class.yaml:3:6: subnets.x: 240.1.0.0/24 overlaps 240.0.0.0/4"},
		"mc6":   {"{ipv4: 10.1.0.0/24, ipv6: 'ff05::/64'}", "mc6.yaml:3:32: subnets.x.ipv6: ff05::/64 is multicast (ff00::/8)"},
		"ll6":   {"'fe80::/64'", "ll6.yaml:3:6: subnets.x: fe80::/64 is link-local (fe80::/10)"},
	} {
		files[name+".yaml"] = "subnets:\n  y: 172.18.0.0/24\n  x: " + c[0] + "\nnodes:\n  a: {ip: 172.18.0.2, command: 'true'}\n"
		want[name+".yaml"] = c[1]
	}
	dir := project(t, files)
	before := u.runDirs()
	for file, w := range want {
		u.upRefused(t, dir, w, "-f", file)
		u.upRefused(t, dir, w, "--dry-run", "-f", file)
	}
	if after := u.runDirs(); len(after) != len(before) {
		t.Errorf("refused files made runs: %v", after)
	}
}

// TestUpRefusesHelperHostPool: with nsrun-helper installed, a subnet in
// its pool of host links (where the host's own address lives, so nodes
// took the host for a neighbour and could not reach it) is refused at the
// file, as one in the runs' pool is; isolated, the same file runs.
func TestUpRefusesHelperHostPool(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	rec := installFor(t, u, testResolverAddr(t))
	if !rec.HostPool.IsValid() || !rec.HostPool.Contains(rec.HostAddr.Addr()) {
		t.Fatalf("the record names no host pool holding the host link: %+v", rec)
	}
	sub := rec.HostAddr.Masked() // the user's own host /30's /24
	sub24, _ := sub.Addr().Prefix(24)
	a4 := sub24.Addr().As4()
	a4[3] = 9
	node := netip.AddrFrom4(a4)
	files := map[string]string{
		"pool.yaml": fmt.Sprintf("subnets:\n  x: %s\nnodes:\n  a: {ip: %s, command: 'true'}\n", sub24, node),
	}
	want := map[string]string{
		"pool.yaml": fmt.Sprintf("pool.yaml:2:6: subnets.x: %s overlaps nsrun-helper's host links %s (host-cidr), so nodes could not reach the host", sub24, rec.HostPool),
	}
	if rec.HostPool6.IsValid() {
		link6 := rec.HostAddr6.Masked()
		files["pool6.yaml"] = fmt.Sprintf("subnets:\n  x: {ipv4: 172.18.1.0/24, ipv6: '%s'}\nnodes:\n  a: {ip: 172.18.1.2, command: 'true'}\n", link6)
		want["pool6.yaml"] = fmt.Sprintf("pool6.yaml:2:34: subnets.x: %s overlaps nsrun-helper's IPv6 host links %s (host-cidr6)", link6, rec.HostPool6)
	} else {
		t.Log("the host has no IPv6: the IPv6 host pool is not checked")
	}
	dir := project(t, files)
	before := u.runDirs()
	for file, w := range want {
		u.upRefused(t, dir, w, "-f", file)
		u.upRefused(t, dir, w, "--dry-run", "-f", file)
		if r := u.up(t, dir, "--isolated", "-f", file); r.Code != 0 {
			t.Errorf("up --isolated -f %s: exit %d, stderr %q; an isolated run has no host link to collide with", file, r.Code, r.Stderr)
		}
	}
	if after := u.runDirs(); len(after) != len(before) {
		t.Errorf("runs left: %v", after)
	}
}

// TestUpPrivilegedPort: a host port below the host's
// net.ipv4.ip_unprivileged_port_start is refused at the file, by the dry
// run too, naming the cause and both fixes; it was reported as "permission
// denied (is another run ... using it?)", and the dry run accepted it.
func TestUpPrivilegedPort(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		t.Fatal(err)
	}
	start, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	need(t, start > 80, fmt.Sprintf("this host lets every user listen on port 80 (net.ipv4.ip_unprivileged_port_start=%d)", start))
	dir := project(t, map[string]string{"priv.yaml": "nodes:\n  a:\n    ip: 172.18.0.2\n    command: 'true'\n    ports: [\"8080:8000\", \"80:8000\"]\n"})
	before := u.runDirs()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-f", "priv.yaml"}, fmt.Sprintf(`priv.yaml:5:26: nodes.a.ports: cannot publish 127.0.0.1:80: port 80 is privileged (only root may listen below net.ipv4.ip_unprivileged_port_start, %d here); publish a port of %d or above, such as "8080:8000", or let users listen on it: sudo sysctl net.ipv4.ip_unprivileged_port_start=80`, start, start)},
		{[]string{"--dry-run", "-f", "priv.yaml"}, fmt.Sprintf(`priv.yaml:5:26: nodes.a.ports: cannot publish 127.0.0.1:80: port 80 is privileged (only root may listen below net.ipv4.ip_unprivileged_port_start, %d here)`, start)},
	} {
		u.upRefused(t, dir, c.want, c.args...)
	}
	if after := u.runDirs(); len(after) != len(before) {
		t.Errorf("runs left: %v", after)
	}
}
