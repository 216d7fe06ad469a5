package supervise

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/internal/plan"
)

// attach plugs an existing process's network namespace (its fd attached
// to the request) into the run: a veth from the subnet's bridge, the
// address and a default route — netsetgo's job. The veth goes with the
// bridge namespace when the run ends; the process is left alone.
func (s *supervisor) attach(p *control.Peer) {
	reply := p.Fail
	if len(p.Files) != 1 {
		reply(errors.New("attach: needs the namespace of the process to plug in (the fd of its network namespace)"))
		return
	}
	c := p.Req.Attach // checked (control.Request.Check): name, families
	ns, name := p.Files[0], c.Name
	s.attachMu.Lock()
	defer s.attachMu.Unlock()
	if _, dup := s.lookup(name); dup {
		reply(control.Errorf(control.ErrBadValue, "--name: the run already has a node %q; pick another name", name))
		return
	}
	addr, addr6, subnet, err := s.attachAddrs(c.Addr, c.Addr6)
	if err != nil {
		reply(err)
		return
	}
	if err := s.checkNamespaceOwner(ns); err != nil {
		reply(err)
		return
	}
	port := plan.VethPort(name)
	if other, taken := s.portOwner(port); taken {
		reply(fmt.Errorf("--name: %s's bridge port would be %s, which is already %s's; pick another name", name, port, other))
		return
	}
	br := s.plan.Bridges[subnet]
	link := plan.Link{Kind: plan.Veth, Node: name, Bridge: subnet, Port: port, Inside: plan.GuestIfName}
	if addr.IsValid() {
		link.Addr, link.Gateway = netip.PrefixFrom(addr, br.Prefix.Bits()), br.Router
	}
	if addr6.IsValid() {
		link.Addr6, link.Gateway6 = netip.PrefixFrom(addr6, br.Prefix6.Bits()), br.Router6
	}
	cfg := plan.Node{Name: name, Hostname: name, Addr: addr, Addr6: addr6, Subnet: subnet, Links: []plan.Link{link}}
	if err := s.net.Wire(&cfg, ns); err != nil {
		reply(fmt.Errorf("attach %s: %w", name, err))
		return
	}
	own, err := dupFile(ns)
	if err != nil {
		reply(err)
		return
	}
	n := newNode(cfg, -1)
	n.ns, n.attached = own, true
	close(n.up)
	s.addNode(n)
	_, _ = s.state.WriteFileInPlace("hosts", hostsFile(s.hostEntries()))
	s.writeInfo()
	p.Reply(control.Response{Done: true, Output: fmt.Sprintf("attached %s as %s on %s", name, n.cfg.Addrs(), br.Name)})
}

// attachAddrs finds the subnet of `nsrun attach --ip ADDR --ip6 ADDR6`
// (either may be invalid, not given; their families are checked) and
// checks them against it: a guest address, not the router's. Without
// --ip6, a node of a dual-stack subnet gets the IPv6 address its IPv4 one
// maps to.
func (s *supervisor) attachAddrs(addr, addr6 netip.Addr) (netip.Addr, netip.Addr, int, error) {
	subnet := -1
	if !addr.IsValid() && !addr6.IsValid() {
		return addr, addr6, subnet, errors.New("attach: give --ip, --ip6 or both")
	}
	if addr.IsValid() {
		for i, br := range s.net.Bridges() {
			if br.Subnet.HasIPv4() && br.Subnet.Prefix.Contains(addr) {
				if err := br.Subnet.CheckGuest("--ip", addr); err != nil {
					return addr, addr6, subnet, err
				}
				subnet = i
			}
		}
		if subnet < 0 {
			return addr, addr6, subnet, fmt.Errorf("--ip: %s is in no subnet of the run (%s)", addr, s.subnetList())
		}
	}
	if addr6.IsValid() {
		if subnet < 0 {
			for i, br := range s.net.Bridges() {
				if br.Subnet.HasIPv6() && br.Subnet.Prefix6.Contains(addr6) {
					subnet = i
				}
			}
			if subnet < 0 {
				return addr, addr6, subnet, fmt.Errorf("--ip6: %s is in no subnet of the run (%s)", addr6, s.subnetList())
			}
		}
		if err := s.net.Bridges()[subnet].Subnet.CheckGuest6("--ip6", addr6); err != nil {
			return addr, addr6, subnet, err
		}
	} else {
		addr6 = s.net.Bridges()[subnet].Subnet.Guest6(addr)
	}
	for _, n := range s.allNodes() {
		if addr.IsValid() && n.cfg.Addr == addr {
			return addr, addr6, subnet, fmt.Errorf("--ip: %s is node %s's address; pick another", addr, n.cfg.Name)
		}
		if addr6.IsValid() && n.cfg.Addr6 == addr6 {
			return addr, addr6, subnet, fmt.Errorf("--ip6: %s is node %s's IPv6 address; pick another (with --ip6)", addr6, n.cfg.Name)
		}
	}
	return addr, addr6, subnet, nil
}

// checkNamespaceOwner explains the one case the kernel refuses: a network
// namespace owned by a user namespace that is not the run's nor below it
// (a plain `unshare -Urn` makes a sibling), which no unprivileged process
// may wire to the run.
func (s *supervisor) checkNamespaceOwner(ns *os.File) error {
	err := nsfd.CanEnter(ns)
	if err == nil {
		return nil
	}
	return fmt.Errorf("attach: this process's network namespace belongs to a user namespace outside the run's (%v). "+
		"A namespace made with plain `unshare -Urn` is a sibling of the run's, and the kernel lets no unprivileged process join the two. "+
		"Start the process inside the run instead, e.g. `nsrun net exec NODE -- unshare -rn CMD`, "+
		"or with nsrun-helper installed, in your gateway: `nsenter --preserve-credentials --user=/run/user/$(id -u)/nsrun/userns unshare -n CMD`", err)
}

func dupFile(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

func (s *supervisor) subnetList() string {
	var out string
	for i, br := range s.net.Bridges() {
		if i > 0 {
			out += ", "
		}
		var ps []string
		if br.Subnet.HasIPv4() {
			ps = append(ps, br.Subnet.Prefix.String())
		}
		if br.Subnet.HasIPv6() {
			ps = append(ps, br.Subnet.Prefix6.String())
		}
		out += strings.Join(ps, " and ")
	}
	return out
}

// portOwner says which node (or nsrun itself) has the bridge port port.
func (s *supervisor) portOwner(port string) (string, bool) {
	for _, b := range s.plan.Bridges {
		if b.Name == port {
			return "the bridge of subnet " + b.Subnet, true
		}
	}
	if u := s.plan.Uplink; u != nil && u.Port == port {
		return "the uplink", true
	}
	for _, n := range s.allNodes() {
		for _, l := range n.cfg.Links {
			if l.Port == port {
				return "node " + n.cfg.Name, true
			}
		}
	}
	return "", false
}
