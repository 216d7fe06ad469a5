package start

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/plan"
	"github.com/nsrun/nsrun/internal/topology"
)

// portsPlan is a plan whose node web publishes host ports, each written at
// line 5+i, column 13 of f.yaml.
func portsPlan(hosts ...uint16) *plan.Plan {
	web := plan.Node{Name: "web"}
	for i, h := range hosts {
		web.Publish = append(web.Publish, plan.Publish{
			Host:   netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), h),
			Target: netip.MustParseAddrPort("172.18.0.2:8000"),
			Pos:    topology.Pos{Line: 5 + i, Column: 13},
		})
	}
	return &plan.Plan{Run: plan.Run{File: "f.yaml"}, Nodes: []plan.Node{web}}
}

// TestPrivilegedPortsRefused: a dry run refuses a host port below the
// caller's net.ipv4.ip_unprivileged_port_start at the file, naming both
// fixes; root, or a lower limit, may have it.
func TestPrivilegedPortsRefused(t *testing.T) {
	p := portsPlan(8080, 80)
	err := checkPrivilegedPorts(p, 1000, 1024)
	want := `f.yaml:6:13: nodes.web.ports: cannot publish 127.0.0.1:80: port 80 is privileged (only root may listen below net.ipv4.ip_unprivileged_port_start, 1024 here); ` +
		`publish a port of 1024 or above, such as "8080:8000", or let users listen on it: sudo sysctl net.ipv4.ip_unprivileged_port_start=80`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	udp := portsPlan(53)
	udp.Nodes[0].Publish[0].Proto = topology.UDP
	want = `f.yaml:5:13: nodes.web.ports: cannot publish 127.0.0.1:53/udp: port 53 is privileged (only root may listen below net.ipv4.ip_unprivileged_port_start, 1024 here); ` +
		`publish a port of 1024 or above, such as "8053:8000/udp", or let users listen on it: sudo sysctl net.ipv4.ip_unprivileged_port_start=53`
	if err := checkPrivilegedPorts(udp, 1000, 1024); err == nil || err.Error() != want {
		t.Errorf("a UDP port: got  %v\nwant %s", err, want)
	}
	for _, c := range []struct{ uid, start int }{{0, 1024}, {1000, 80}, {1000, 0}} {
		if err := checkPrivilegedPorts(p, c.uid, c.start); err != nil {
			t.Errorf("uid %d, limit %d: %v", c.uid, c.start, err)
		}
	}
}

// TestBindPortsErrors: a failed bind is reported at the port's place in
// the file with its cause, and the ports already bound are closed.
func TestBindPortsErrors(t *testing.T) {
	for _, c := range []struct {
		errno unix.Errno
		port  uint16
		want  string
	}{
		{unix.EACCES, 443, `f.yaml:6:13: nodes.web.ports: cannot publish 127.0.0.1:443: port 443 is privileged (only root may listen below net.ipv4.ip_unprivileged_port_start); publish a port of 1024 or above, such as "8443:8000", or let users listen on it: sudo sysctl net.ipv4.ip_unprivileged_port_start=443`},
		{unix.EADDRINUSE, 9000, `f.yaml:6:13: nodes.web.ports: cannot publish 127.0.0.1:9000: it is in use, by another run of this file or another program; change the host port, or end the other (nsrun ls)`},
		{unix.EADDRNOTAVAIL, 9000, `f.yaml:6:13: nodes.web.ports: cannot publish 127.0.0.1:9000: no interface of this host has that address; use 127.0.0.1, ::1 or one of the host's own addresses`},
		{unix.EMFILE, 9000, `f.yaml:6:13: nodes.web.ports: cannot publish 127.0.0.1:9000: too many open files`},
	} {
		var opened []*os.File
		bind := func(pb plan.Publish) (*os.File, error) {
			if pb.Host.Port() == c.port {
				return nil, c.errno
			}
			f, err := os.Open(os.DevNull)
			opened = append(opened, f)
			return f, err
		}
		_, err := bindPorts(portsPlan(8080, c.port), bind)
		if err == nil || err.Error() != c.want {
			t.Errorf("%v:\ngot  %v\nwant %s", c.errno, err, c.want)
		}
		for _, f := range opened {
			if err := f.Close(); err == nil || !strings.Contains(err.Error(), "already closed") {
				t.Errorf("%v: a bound port was left open", c.errno)
			}
		}
	}
	got, err := bindPorts(portsPlan(8080, 8081), func(plan.Publish) (*os.File, error) { return os.Open(os.DevNull) })
	if err != nil || len(got) != 2 {
		t.Errorf("two free ports: %v, %v", got, err)
	}
	for _, f := range got {
		f.Close()
	}
}
