package plan

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/nsrun/nsrun/internal/topology"
)

// Write prints the plan for people: what nsrun would create, in the order
// it creates it.
func (p *Plan) Write(w io.Writer) error {
	b := &strings.Builder{}
	pf := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	r := p.Run
	pf("run %s", r.ID)
	if r.File != "" {
		pf(" of %s", r.File)
	}
	pf(" (state folder %s)\n", r.Dir)
	pf("user: %s (uid %d, gid %d)\n", p.User.Mode, p.User.UID, p.User.GID)
	forward := "off"
	if p.Forward {
		forward = "on"
	}
	pf("bridge namespace (forwarding %s):\n", forward)
	for _, br := range p.Bridges {
		switch {
		case br.Prefix.IsValid() && br.Prefix6.IsValid():
			pf("  bridge %-6s subnet %-10s %-18s router %s, %s router %s\n", br.Name, br.Subnet, br.Prefix, br.Router, br.Prefix6, br.Router6)
		case br.Prefix.IsValid():
			pf("  bridge %-6s subnet %-10s %-18s router %s (no IPv6)\n", br.Name, br.Subnet, br.Prefix, br.Router)
		default:
			pf("  bridge %-6s subnet %-10s %-18s router %s (IPv6 only)\n", br.Name, br.Subnet, br.Prefix6, br.Router6)
		}
		if br.Deferred {
			pf("    made only once a second link or a net verb needs it; until then its one port holds the router addresses\n")
		}
	}
	if u := p.Uplink; u != nil {
		pf("  uplink %s <-> %s in the gateway %s: a /30 of %s, default route and NAT", u.Port, u.GatewayPort, u.GatewayNS, u.Pool)
		if u.IPv6 {
			pf(", IPv6 too")
		}
		if u.HostDNS.IsValid() {
			pf(", DNS to %s", u.HostDNS)
		}
		for _, r := range u.DNSRelays {
			pf(", DNS relayed from %s", r)
		}
		pf("\n")
	} else {
		pf("  no uplink: isolated (nodes reach each other only)\n")
	}
	pf("nodes, in start order:\n")
	for i := range p.Nodes {
		n := &p.Nodes[i]
		pf("  %s: %s", n.Name, joinAddrs(n.Addr, n.Addr6))
		if n.Hostname != n.Name {
			pf(", hostname %s", n.Hostname)
		}
		pf("\n")
		for _, l := range n.Links {
			br := p.Bridges[l.Bridge]
			switch l.Kind {
			case Veth:
				pf("    veth %s", l.Inside)
				if l.Addr.IsValid() {
					pf(" %s via %s", l.Addr, l.Gateway)
				}
				if l.Addr6.IsValid() {
					pf(" %s via %s", l.Addr6, l.Gateway6)
				} else {
					pf(" (IPv6 off)")
				}
				pf(", bridge port %s on %s\n", l.Port, br.Name)
			case Tap:
				pf("    tap %s (joined by bridge %s to veth %s), bridge port %s on %s\n", l.Inside, l.TapBridge, l.TapPeer, l.Port, br.Name)
			}
			if l.Capture != "" {
				pf("      captured to %s\n", l.Capture)
			}
		}
		if len(n.Argv) == 0 {
			pf("    no command: holds its namespaces\n")
		} else {
			pf("    command %q", n.Argv)
			if n.Dir != "" {
				pf(" in %s", n.Dir)
			}
			pf("\n")
			if len(n.Env) > 0 {
				pf("    environment: nsrun's, and %s\n", strings.Join(n.Env, " "))
			}
		}
		if m := p.NodeMounts(n); len(m) > 0 {
			for _, mt := range p.Mounts {
				if mt.Subnet == n.Subnet {
					pf("    own mount: %s from %s\n", mt.Target, mt.File)
				}
			}
		}
		if n.Ready.Kind == ReadyTCP {
			pf("    ready when %s accepts TCP (within %s)\n", n.Ready.Addr, n.Ready.Timeout)
		}
		if h := n.Health; h != nil {
			pf("    health check %s every %s (every %s until it passes), timeout %s, unhealthy after %d failures", h, h.Interval, h.StartInterval, h.Timeout, h.Retries)
			if h.StartPeriod > 0 {
				pf(" (not counted in the first %s)", h.StartPeriod)
			}
			pf("\n")
		}
		for _, d := range n.Tmpfs {
			pf("    tmpfs on %s (empty, its own)\n", d)
		}
		switch r := n.Restart; r.Policy {
		case topology.RestartAlways:
			pf("    restarts whenever it exits (restart: always), with a back-off\n")
		case topology.RestartOnFailure:
			limit := "no limit"
			if r.Max > 0 {
				limit = fmt.Sprintf("at most %d times", r.Max)
			}
			pf("    restarts when it exits with a code other than 0 (%s), with a back-off\n", limit)
		}
		if len(n.DependsOn) > 0 {
			var waits []string
			for _, d := range n.DependsOn {
				switch n.Conditions[d] {
				case topology.ServiceHealthy:
					waits = append(waits, d+" is healthy")
				case topology.ServiceCompletedSuccessfully:
					waits = append(waits, d+" exited with code 0")
				default:
					waits = append(waits, d+" is up")
				}
			}
			pf("    starts once %s\n", strings.Join(waits, " and "))
		}
		for _, pb := range n.Publish {
			pf("    publishes %s -> %s\n", pb.HostString(), pb.TargetString())
		}
		if n.Control {
			pf("    controls the run (control: true): sees its control socket, trusted like --root\n")
		}
	}
	pf("files:\n")
	for _, m := range p.Mounts {
		who := "every node"
		if m.Subnet != AllSubnets {
			who = "nodes of " + p.Bridges[m.Subnet].Subnet
		}
		pf("  %s, mounted on %s for %s", m.File, m.Target, who)
		switch m.Kind {
		case ResolvFile:
			pf(": nameserver %s\n", m.Nameserver)
		case GaiFile:
			pf(": IPv4 before unique local IPv6 (RFC 6724), where the host has one\n")
		case HostsFile:
			pf(": localhost and\n")
			for _, h := range p.Hosts {
				pf("    %s\t%s\n", h.Addr, strings.Join(h.Names, " "))
			}
		}
	}
	if c := p.Capture; c != nil {
		pf("capture folder %s (step log %s)\n", c.Dir, c.Log)
	}
	if r.Up {
		pf("on exit: stop every node after %s", r.StopTimeout)
		switch {
		case r.ExitCodeFrom != "":
			pf(" once %s exits; exit with its code", r.ExitCodeFrom)
		case r.AbortOnExit:
			pf(" once one exits; exit with its code")
		}
		pf("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// joinAddrs lists the valid addresses of as.
func joinAddrs(as ...netip.Addr) string {
	var out []string
	for _, a := range as {
		if a.IsValid() {
			out = append(out, a.String())
		}
	}
	return strings.Join(out, " ")
}
