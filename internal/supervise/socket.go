package supervise

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/nsfd"
)

// socketVerb creates a socket in a node's network namespace and passes it
// to the caller (control.SocketVerb), which binds, listens or connects it
// as that node.
func (s *supervisor) socketVerb(p *control.Peer) {
	fail := p.Fail
	c := p.Req.Socket // checked (control.Request.Check)
	n, ok := s.lookup(c.Node)
	if !ok {
		fail(control.Errorf(control.ErrUnknownNode, "no node %q in run %s; its nodes: %s", c.Node, s.plan.Run.ID, s.nodeNames()))
		return
	}
	if n.ns == nil {
		fail(fmt.Errorf("socket in node %s: the node has no network namespace", n.cfg.Name))
		return
	}
	var fd int
	s.nsUse.RLock()
	defer s.nsUse.RUnlock()
	err := nsfd.Do(n.ns, func() error {
		var err error
		fd, err = unix.Socket(c.Family, c.Type|unix.SOCK_CLOEXEC, c.Proto)
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
