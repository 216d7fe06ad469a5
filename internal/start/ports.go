package start

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/plan"
	"github.com/nsrun/nsrun/internal/topology"
	"github.com/nsrun/nsrun/userns/launch"
)

// unprivilegedPortStartPath is the sysctl net.ipv4.ip_unprivileged_port_start
// of this process's network namespace: the lowest port that a process
// without CAP_NET_BIND_SERVICE there may listen on.
const unprivilegedPortStartPath = "/proc/sys/net/ipv4/ip_unprivileged_port_start"

// defaultUnprivilegedPortStart is the kernel's default of that sysctl.
const defaultUnprivilegedPortStart = 1024

// readUnprivilegedPortStart reads the sysctl, or returns its default.
func readUnprivilegedPortStart() int {
	b, err := os.ReadFile(unprivilegedPortStartPath)
	if err != nil {
		return defaultUnprivilegedPortStart
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return defaultUnprivilegedPortStart
	}
	return n
}

// checkPrivilegedPorts refuses host ports below start (the caller's
// net.ipv4.ip_unprivileged_port_start), which the launcher, running as the
// caller (uid), could not bind; root may. A real run gets start from
// the launcher, which reads it where it binds (0 for root, who may bind
// any port there).
func checkPrivilegedPorts(p *plan.Plan, uid, start int) error {
	if uid == 0 || start <= 0 {
		return nil
	}
	for _, n := range p.Nodes {
		for _, pb := range n.Publish {
			if int(pb.Host.Port()) < start {
				return privilegedPort(p.Run.File, n.Name, pb, start)
			}
		}
	}
	return nil
}

// privilegedPort is the error for a host port below the limit (0: not
// known here).
func privilegedPort(file, node string, pb plan.Publish, limit int) error {
	port := int(pb.Host.Port())
	suggest := port
	for suggest < max(limit, defaultUnprivilegedPortStart) {
		suggest += 8000 // 80 -> 8080, 443 -> 8443
	}
	below, above, proto := "", "1024 or above", ""
	if limit > 0 {
		below, above = fmt.Sprintf(", %d here", limit), fmt.Sprintf("%d or above", limit)
	}
	if pb.Proto == topology.UDP {
		proto = "/udp"
	}
	return topology.ErrorAt(file, pb.Pos, "nodes.%s.ports: cannot publish %s: port %d is privileged (only root may listen below net.ipv4.ip_unprivileged_port_start%s); "+
		"publish a port of %s, such as \"%d:%d%s\", or let users listen on it: sudo sysctl net.ipv4.ip_unprivileged_port_start=%d",
		node, pb.HostString(), port, below, above, suggest, pb.Target.Port(), proto, port)
}

// bindPorts binds every published port (on the caller's 127.0.0.1 unless
// the file names an address) with bind (launcherBind: through the
// launcher, as this process is already in the run's bridge namespace).
// An error names the port's place in the file and its cause: a
// privileged port, one in use, or an address the host does not have.
func bindPorts(p *plan.Plan, bind func(pb plan.Publish) (*os.File, error)) (map[plan.Publish]*os.File, error) {
	out := map[plan.Publish]*os.File{}
	for _, n := range p.Nodes {
		for _, pb := range n.Publish {
			f, err := bind(pb)
			if err == nil {
				out[pb] = f
				continue
			}
			for _, f := range out {
				f.Close()
			}
			switch {
			case errors.Is(err, unix.EACCES) && int(pb.Host.Port()) < defaultUnprivilegedPortStart:
				err = privilegedPort(p.Run.File, n.Name, pb, 0)
			case errors.Is(err, unix.EADDRNOTAVAIL):
				err = topology.ErrorAt(p.Run.File, pb.Pos, "nodes.%s.ports: cannot publish %s: no interface of this host has that address; use 127.0.0.1, ::1 or one of the host's own addresses", n.Name, pb.HostString())
			case errors.Is(err, unix.EADDRINUSE):
				err = topology.ErrorAt(p.Run.File, pb.Pos, "nodes.%s.ports: cannot publish %s: it is in use, by another run of this file or another program; change the host port, or end the other (nsrun ls)", n.Name, pb.HostString())
			default:
				err = topology.ErrorAt(p.Run.File, pb.Pos, "nodes.%s.ports: cannot publish %s: %v", n.Name, pb.HostString(), err)
			}
			return nil, err
		}
	}
	return out, nil
}

// launcherBind binds pb's host socket through the launcher: a listening
// TCP socket, or a bound UDP one.
func launcherBind(pb plan.Publish) (*os.File, error) {
	if pb.Proto == topology.UDP {
		return launch.BindUDPPort(pb.Host)
	}
	return launch.BindPort(pb.Host)
}
