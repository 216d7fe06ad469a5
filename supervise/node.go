package supervise

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/guest"
	"github.com/nsrun/nsrun/plan"
)

// node is one node of the run and the life of its process: started once
// its link is wired, stopped on request (held: its exit does not end the
// run), paused, resumed, started again in the same namespaces. Its lock
// guards the process's fields, which the supervisor's goroutines (the run
// loop, control verbs, the launcher's death, tear-down) all read; ops
// serializes the verbs that change them.
type node struct {
	cfg plan.Node
	idx int // in the plan's nodes (unused for attached nodes)
	// attached nodes were plugged in by `nsrun attach`: their namespace
	// belongs to a process of the user's.
	attached bool
	// ns is set before the node's wired channel closes (network.waitWired),
	// or before an attached node is listed; it is read only after that.
	ns *os.File
	up chan struct{} // closed once started and ready

	ops sync.Mutex // serializes stop, start, restart, pause and resume

	mu     sync.Mutex
	proc   *guest.Process // the node's current (or last) process; nil before the first start
	done   chan struct{}  // closed once proc ended (never, without a process)
	code   int            // proc's exit code, once done
	killed bool           // proc was killed after the stop timeout
	held   bool           // stopped on request: its exit does not end the run
}

// exit is the end of one of a node's processes.
type exit struct {
	n    *node
	code int
	held bool // the node was stopped on request: the run goes on
}

func newNode(cfg plan.Node, idx int) *node {
	return &node{cfg: cfg, idx: idx, up: make(chan struct{}), done: make(chan struct{})}
}

// begin records p as the node's process and watches it: when it ends, its
// exit code is kept, the done channel closes and the exit is reported on
// exited.
func (n *node) begin(p *guest.Process, exited chan<- exit) {
	n.mu.Lock()
	select {
	case <-n.done: // a process before this one ended
		n.done = make(chan struct{})
	default:
	}
	n.proc, n.held = p, false
	done := n.done
	n.mu.Unlock()
	go func() {
		code := guest.ExitCode(p.Wait())
		n.mu.Lock()
		n.code = code
		held := n.held
		close(done)
		n.mu.Unlock()
		exited <- exit{n: n, code: code, held: held}
	}()
}

// failedFirstStart ends the wait for a first process that never started.
func (n *node) failedFirstStart() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		close(n.done)
	}
}

// process returns the node's current process (nil before the first
// start) and the channel that closes when it ends.
func (n *node) process() (*guest.Process, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc, n.done
}

// pid is the current process's pid, 0 before the first start.
func (n *node) pid() int {
	if p, _ := n.process(); p != nil {
		return p.Pid
	}
	return 0
}

// running says whether the node's process runs now.
func (n *node) running() bool {
	p, done := n.process()
	if p == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// exitCode is the last process's exit code.
func (n *node) exitCode() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.code
}

// wasKilled says whether the node's process had to be killed when the
// run was stopped.
func (n *node) wasKilled() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.killed
}

// signal sends sig to the process group of the node's process, or to the
// process alone when it has no group of its own.
func (n *node) signal(sig unix.Signal) error {
	pid := n.pid()
	if pid == 0 {
		return nil
	}
	if unix.Kill(-pid, sig) == nil {
		return nil
	}
	return unix.Kill(pid, sig)
}

// kill sends SIGKILL to the node's process group and to the process.
func (n *node) kill() {
	if pid := n.pid(); pid != 0 {
		_ = unix.Kill(-pid, unix.SIGKILL)
		_ = unix.Kill(pid, unix.SIGKILL)
	}
}

// end waits for the node's process to end until deadline, then kills it
// (and marks it killed) and waits for it.
func (n *node) end(deadline <-chan time.Time) {
	p, done := n.process()
	if p == nil {
		return
	}
	select {
	case <-done:
	case <-deadline:
		n.mu.Lock()
		n.killed = true
		n.mu.Unlock()
		n.kill()
		<-done
	}
}

// stop holds the node and ends its process: SIGCONT (a paused node must
// hear the SIGTERM), SIGTERM, SIGKILL after timeout.
func (n *node) stop(timeout time.Duration) {
	n.mu.Lock()
	n.held = true
	n.mu.Unlock()
	if !n.running() {
		return
	}
	_ = n.signal(unix.SIGCONT)
	_ = n.signal(unix.SIGTERM)
	_, done := n.process()
	select {
	case <-done:
	case <-time.After(timeout):
		n.kill()
		<-done
	}
}

// start starts the node's command again with launch, unless it runs.
func (n *node) start(launch func(*node) error) error {
	if n.running() {
		return fmt.Errorf("node start: %q is already running", n.cfg.Name)
	}
	if err := launch(n); err != nil {
		return fmt.Errorf("node start: %w", err)
	}
	return nil
}

// do carries out one node verb: stop, start, restart, pause or resume.
// timeout bounds a stop; launch starts the node's command.
func (n *node) do(action string, timeout time.Duration, launch func(*node) error) error {
	n.ops.Lock()
	defer n.ops.Unlock()
	switch action {
	case "stop":
		n.stop(timeout)
		return nil
	case "start":
		return n.start(launch)
	case "restart":
		n.stop(timeout)
		return n.start(launch)
	case "pause", "resume":
		sig := unix.SIGSTOP
		if action == "resume" {
			sig = unix.SIGCONT
		}
		if !n.running() {
			return fmt.Errorf("node %s: %q is not running", action, n.cfg.Name)
		}
		return n.signal(sig)
	}
	return fmt.Errorf("node: unknown action %q; write stop, start, restart, pause or resume", action)
}
