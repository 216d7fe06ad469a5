package supervise

import (
	"errors"
	"github.com/nsrun/nsrun/internal/procpid"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/guest"
)

// handle serves one control request.
func (s *supervisor) handle(p *control.Peer) {
	// Verbs act on wired nodes only (the run is still starting otherwise).
	if err := s.net.WaitAllWired(); err != nil {
		p.Fail(err)
		return
	}
	if err := s.authorize(p); err != nil {
		p.Fail(err)
		return
	}
	// p.Req passed control.Request.Check: its verb is known and it
	// carries that verb's body, checked.
	switch p.Req.Verb {
	case control.ExecVerb:
		s.exec(p)
	case control.NetVerb, control.NodeVerb, control.AttachVerb:
		// They use the bridge's or a node's namespace fd throughout: the
		// run's tear-down waits for them (nsUse).
		s.nsUse.RLock()
		defer s.nsUse.RUnlock()
		switch p.Req.Verb {
		case control.NetVerb:
			s.netVerb(p)
		case control.NodeVerb:
			s.nodeVerb(p)
		default:
			s.attach(p)
		}
	case control.SocketVerb:
		s.socketVerb(p)
	case control.EventsVerb:
		s.eventsVerb(p)
	case control.NoteVerb:
		s.noteVerb(p)
	default: // control.SignalVerb
		p.Fail(control.Errorf(control.ErrBadValue, "%s: only on an exec's connection", p.Req.Verb))
	}
}

// authorize refuses a request from inside the run unless it comes from
// a node with control: true, and `exec --root` from inside the run
// whoever asks. The kernel names the caller (control.Caller). A process
// outside the run's pid namespace (pid 0 here) may do anything if it is
// the user on the host: it sent an open descriptor of the launcher's pid
// namespace (control.Peer.FromPIDNS). Pid 0 alone says nothing: a node
// of another run of the user's is outside this run's pid namespace too,
// and reaches this socket wherever the run's folder is not hidden from
// it (a runtime folder made after the node started, or another
// XDG_RUNTIME_DIR). A process inside is mapped to the node whose network
// namespace it is in, which a process without privilege over the run's
// user namespace cannot change (setns needs it, and a namespace it
// creates is no node's).
func (s *supervisor) authorize(p *control.Peer) error {
	c, err := p.Caller()
	if err != nil {
		return err
	}
	defer c.Close()
	what := "nsrun " + p.Req.Verb
	if c.Pid == os.Getpid() { // the supervisor itself (its fault schedule; tests call in-process)
		return nil
	}
	if c.Pid == 0 {
		if p.FromPIDNS(s.handles.CallerPIDNS) {
			return nil
		}
		return control.Errorf(control.ErrRefused, "%s is refused: the calling process is outside run %s and not in the pid namespace of the nsrun that started it (a node of another run?); call from the host where the run was started, or from a node of this run with control: true", what, s.plan.Run.ID)
	}
	if p.Req.Verb == control.ExecVerb && p.Req.Exec.Root {
		return control.Errorf(control.ErrRefused, "nsrun net exec --root is refused from inside run %s: it would give every capability of the run's user namespace to a process of a node; run it from the host with --run %s", s.plan.Run.ID, s.plan.Run.ID)
	}
	n := s.nodeOf(c.Pid)
	if !c.Alive() {
		return control.Errorf(control.ErrRefused, "%s: the calling process (pid %d) is gone", what, c.Pid)
	}
	switch {
	case n == nil:
		return control.Errorf(control.ErrRefused, "%s is refused: the calling process (pid %d) is inside run %s but in none of its nodes' networks", what, c.Pid, s.plan.Run.ID)
	case !n.cfg.Control:
		return control.Errorf(control.ErrRefused, "%s is refused: node %s has no control of its run; give it `control: true` in the file to let it act on the run (a control node is trusted, like --root), or act from the host with --run %s", what, n.cfg.Name, s.plan.Run.ID)
	}
	return nil
}

// nodeOf is the node whose network namespace process pid is in, or nil.
func (s *supervisor) nodeOf(pid int) *node {
	var st unix.Stat_t
	path, err := procpid.Path(pid, "ns/net")
	if err != nil {
		return nil
	}
	if err := unix.Stat(path, &st); err != nil {
		return nil
	}
	for _, n := range s.allNodes() {
		var ns unix.Stat_t
		if n.ns != nil && unix.Fstat(int(n.ns.Fd()), &ns) == nil && ns.Dev == st.Dev && ns.Ino == st.Ino {
			return n
		}
	}
	return nil
}

// exec runs a command in a node's network, UTS, mount and pid namespaces
// with the caller's stdio, forwarding the signals it sends, and reports the exit
// code.
func (s *supervisor) exec(p *control.Peer) {
	c := p.Req.Exec
	n, ok := s.lookup(c.Node)
	if !ok {
		p.Fail(control.Errorf(control.ErrUnknownNode, "no node %q in run %s; its nodes: %s", c.Node, s.plan.Run.ID, s.nodeNames()))
		return
	}
	if len(p.Files) != 3 {
		p.Fail(control.Errorf(control.ErrBadValue, "exec needs stdin, stdout and stderr"))
		return
	}
	sp := s.spec(n, c.Argv, c.Env, c.Dir)
	if c.Root {
		// Root of the run's user namespace: uid 0 where the run maps it
		// (joined, or --root); in a run that maps the caller's own ids,
		// which has no uid 0, the caller's uid with every capability.
		sp.MapUser = false
		sp.AllCaps = os.Getuid() != 0
	}
	sp.Stdin, sp.Stdout, sp.Stderr = p.Files[0], p.Files[1], p.Files[2]
	// Into the node's own pid namespace (and its mount and UTS ones),
	// while its command runs: what the command runs is then a process of
	// the node, which node stop, pause and restart reach. A node without
	// a command (or stopped) has none: the command gets UTS and mount
	// namespaces of its own, in the run's pid namespace.
	if pid := n.initPid(); pid != 0 {
		j, err := guest.JoinInit(pid)
		if err == nil {
			defer j.Close()
			sp.Join = j
		}
	}
	if sp.Dir != "" {
		if fi, err := os.Stat(sp.Dir); err != nil || !fi.IsDir() {
			sp.Dir = ""
		}
	}
	s.nsUse.RLock()
	proc, err := guest.Start(sp)
	s.nsUse.RUnlock()
	if err != nil {
		p.Reply(control.Response{Error: err.Error(), Kind: string(control.KindOf(err)), ExitCode: exitCodeFor(err)})
		return
	}
	p.Reply(control.Response{Started: true})
	go func() {
		for {
			req, err := p.Next()
			if errors.Is(err, control.ErrBadRequest) {
				continue // not a signal: ignored, the command runs on
			}
			if err != nil {
				return
			}
			if req.Signal != nil { // checked: a signal number
				_ = unix.Kill(proc.Pid, syscall.Signal(req.Signal.Sig))
			}
		}
	}()
	p.Reply(control.Response{Done: true, ExitCode: guest.ExitCode(proc.Wait())})
}

func (s *supervisor) nodeNames() string {
	var names []string
	for _, n := range s.allNodes() {
		names = append(names, n.cfg.Name)
	}
	return strings.Join(names, ", ")
}

// eventsVerb sends the run's events to a subscriber (control.EventsVerb):
// every event after the one it names, then, when it follows, each new one
// until the run ends or the subscriber hangs up; then Done.
func (s *supervisor) eventsVerb(p *control.Peer) {
	c := p.Req.Events // checked (control.Request.Check)
	s.subscribers.Add(1)
	defer s.subscribers.Add(-1)
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		for {
			if _, err := p.Next(); err != nil && !errors.Is(err, control.ErrBadRequest) {
				return
			}
		}
	}()
	after := c.After
	for {
		evs, changed, closed := s.events.Load().After(after)
		for _, e := range evs {
			p.Reply(control.Response{Event: &e})
			after = e.Seq
		}
		if !c.Follow || closed {
			p.Reply(control.Response{Done: true})
			return
		}
		select {
		case <-changed:
		case <-gone:
			return
		}
	}
}
