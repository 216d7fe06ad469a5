package supervise

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/control"
	"github.com/nsrun/nsrun/nsfd"
)

// socketVerb creates a socket in a node's network namespace and passes it
// to the caller (control.SocketVerb), which binds, listens or connects it
// as that node.
func (s *supervisor) socketVerb(p *control.Peer) {
	fail := func(err error) { p.Reply(control.Response{Error: err.Error(), ExitCode: 125}) }
	n, ok := s.lookup(p.Req.Node)
	if !ok {
		fail(fmt.Errorf("no node %q in run %s; its nodes: %s", p.Req.Node, s.plan.Run.ID, s.nodeNames()))
		return
	}
	family, typ, proto, err := control.SocketArgs(p.Req)
	if err != nil {
		fail(err)
		return
	}
	if family != unix.AF_INET && family != unix.AF_INET6 {
		fail(fmt.Errorf("socket in node %s: family %d: only IPv4 and IPv6 sockets are made", n.cfg.Name, family))
		return
	}
	if t := typ &^ (unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC); t != unix.SOCK_STREAM && t != unix.SOCK_DGRAM {
		fail(fmt.Errorf("socket in node %s: type %d: only stream and datagram sockets are made", n.cfg.Name, typ))
		return
	}
	if n.ns == nil {
		fail(fmt.Errorf("socket in node %s: the node has no network namespace", n.cfg.Name))
		return
	}
	var fd int
	s.nsUse.RLock()
	defer s.nsUse.RUnlock()
	err = nsfd.Do(n.ns, func() error {
		var err error
		fd, err = unix.Socket(family, typ|unix.SOCK_CLOEXEC, proto)
		return err
	})
	if err != nil {
		fail(fmt.Errorf("socket in node %s: %w", n.cfg.Name, err))
		return
	}
	f := os.NewFile(uintptr(fd), "socket")
	defer f.Close()
	_ = p.ReplyFile(control.Response{Done: true}, f)
}
