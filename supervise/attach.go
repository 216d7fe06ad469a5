package supervise

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/control"
	"github.com/nsrun/nsrun/ipam"
	"github.com/nsrun/nsrun/netsetup"
	"github.com/nsrun/nsrun/nsfd"
	"github.com/nsrun/nsrun/plan"
)

// attach plugs an existing process's network namespace (its fd attached
// to the request) into the run: a veth from the subnet's bridge, the
// address and a default route — netsetgo's job. The veth goes with the
// bridge namespace when the run ends; the process is left alone.
func (s *supervisor) attach(p *control.Peer) {
	reply := func(err error) { p.Reply(control.Response{Error: err.Error(), ExitCode: 125}) }
	if len(p.Files) != 1 || len(p.Req.Args) != 2 {
		reply(errors.New("attach: needs the namespace, a name and an address"))
		return
	}
	ns, name, addrText := p.Files[0], p.Req.Args[0], p.Req.Args[1]
	if err := ipam.CheckNodeName("--name", name); err != nil {
		reply(err)
		return
	}
	s.attachMu.Lock()
	defer s.attachMu.Unlock()
	if _, dup := s.lookup(name); dup {
		reply(fmt.Errorf("--name: the run already has a node %q; pick another name", name))
		return
	}
	addr, err := netip.ParseAddr(addrText)
	if err != nil || !addr.Is4() {
		reply(fmt.Errorf("--ip: %q is not an IPv4 address", addrText))
		return
	}
	subnet := -1
	for i, br := range s.net.bridges {
		if br.Subnet.Prefix.Contains(addr) {
			if err := br.Subnet.CheckGuest("--ip", addr); err != nil {
				reply(err)
				return
			}
			subnet = i
		}
	}
	if subnet < 0 {
		reply(fmt.Errorf("--ip: %s is in no subnet of the run (%s)", addr, s.subnetList()))
		return
	}
	for _, n := range s.allNodes() {
		if n.cfg.Addr == addr {
			reply(fmt.Errorf("--ip: %s is node %s's address; pick another", addr, n.cfg.Name))
			return
		}
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
	bh, err := netsetup.Handle(s.net.bridgeNS)
	if err != nil {
		reply(err)
		return
	}
	defer bh.Close()
	if err := netsetup.AddNode(bh, s.net.bridges[subnet], ns, netsetup.Node{PortName: port, Addr: addr}); err != nil {
		reply(fmt.Errorf("attach %s: %w", name, err))
		return
	}
	own, err := dupFile(ns)
	if err != nil {
		reply(err)
		return
	}
	br := s.plan.Bridges[subnet]
	link := plan.Link{Kind: plan.Veth, Node: name, Bridge: subnet, Port: port, Inside: plan.GuestIfName,
		Addr: netip.PrefixFrom(addr, br.Prefix.Bits()), Gateway: br.Router}
	n := newNode(plan.Node{Name: name, Hostname: name, Addr: addr, Subnet: subnet, Links: []plan.Link{link}}, -1)
	n.ns, n.attached = own, true
	close(n.up)
	s.addNode(n)
	_, _ = s.state.WriteFileInPlace("hosts", hostsFile(s.hostEntries()))
	s.writeInfo()
	p.Reply(control.Response{Done: true, Output: fmt.Sprintf("attached %s as %s on %s", name, addr, br.Name)})
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
	for i, br := range s.net.bridges {
		if i > 0 {
			out += ", "
		}
		out += br.Subnet.Prefix.String()
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
