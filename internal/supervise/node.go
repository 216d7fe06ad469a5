package supervise

import (
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/exitcode"
	"github.com/nsrun/nsrun/internal/guest"
	"github.com/nsrun/nsrun/internal/plan"
	"github.com/nsrun/nsrun/internal/runstate"
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
	// notes is the node's annotation socket (listenNotes), opened once
	// before its first start; notesErr why it could not be.
	notesOnce sync.Once
	notes     net.PacketConn
	notesErr  error
	up        chan struct{} // closed once started and ready
	// health is what the node's health check found; nil without one.
	health *health

	ops sync.Mutex // serializes stop, start, restart, pause and resume

	mu     sync.Mutex
	proc   *guest.Process // the node's current (or last) process; nil before the first start
	done   chan struct{}  // closed once proc ended (never, without a process)
	code   int            // proc's exit code, once done
	killed bool           // proc was killed after the stop timeout
	held   bool           // stopped on request: its exit does not end the run
	paused bool           // frozen by node pause (until resume, stop or restart)
	// starts counts the node's processes: every start but the first is a
	// restart (nsrun ps).
	starts int
	// restarts counts the restarts of its restart: policy in a row;
	// ranFor is how long its last process ran, from began.
	restarts int
	ranFor   time.Duration
	began    time.Time
}

// isHeld says whether the node was stopped on request.
func (n *node) isHeld() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.held
}

// exit is the end of one of a node's processes.
type exit struct {
	n    *node
	code int
	held bool // the node was stopped on request: the run goes on
	// restartGone: a restart the node waited for was given up (the run
	// stops, or the start failed); its last exit was already printed.
	restartGone bool
}

func newNode(cfg plan.Node, idx int) *node {
	n := &node{cfg: cfg, idx: idx, up: make(chan struct{}), done: make(chan struct{})}
	if cfg.Health != nil {
		n.health = newHealth()
	}
	return n
}

// begin records p as the node's process and watches it: when it ends, its
// exit code is kept, ended is called with it, the done channel closes and
// the exit is reported on exited.
func (n *node) begin(p *guest.Process, exited chan<- exit, ended func(code int)) {
	n.mu.Lock()
	select {
	case <-n.done: // a process before this one ended
		n.done = make(chan struct{})
	default:
	}
	n.proc, n.held, n.paused = p, false, false
	n.starts++
	n.began = time.Now()
	done := n.done
	n.mu.Unlock()
	go func() {
		code := guest.ExitCode(p.Wait())
		ended(code)
		n.mu.Lock()
		n.code = code
		n.ranFor = time.Since(n.began)
		held := n.held
		close(done)
		n.mu.Unlock()
		exited <- exit{n: n, code: code, held: held}
	}()
}

// info is the node's state for nsrun ps and ls: the node's record but
// for its addresses.
func (n *node) info() runstate.NodeInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	ni := runstate.NodeInfo{Name: n.cfg.Name, Restarts: max(n.starts-1, 0)}
	started := n.proc != nil
	ended := false
	select {
	case <-n.done:
		ended = started
	default:
	}
	select {
	case <-n.up:
	default:
		if !ended {
			ni.State = runstate.StateStarting
			return ni
		}
	}
	switch {
	case ended && n.held:
		ni.State = runstate.StateStopped
	case ended:
		ni.State, ni.ExitCode = runstate.StateExited, n.code
	case n.paused:
		ni.State = runstate.StatePaused
	case started && n.cfg.Ready.Kind != plan.ReadyNone:
		ni.State = runstate.StateReady
	default:
		ni.State = runstate.StateUp
	}
	return ni
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
// process alone when it has no group of its own. (A node's init passes
// what it gets on to its command.)
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

// initPid is the pid of the node's init while it runs; 0 when the node
// runs none (no command, stopped, or started without one).
func (n *node) initPid() int {
	p, done := n.process()
	if p == nil || !p.Init {
		return 0
	}
	select {
	case <-done:
		return 0
	default:
		return p.Pid
	}
}

// signalAll sends sig to every process of the node: every process of its
// init's pid namespace (the init itself only withInit), found in /proc,
// whatever session or process group it made for itself. SIGSTOP is sent
// round after round until a round finds no process it had not stopped
// (one may fork while the round runs), and signalAll returns once every
// process it stopped is stopped. Without an init, sig goes to the
// node's process group.
func (n *node) signalAll(sig unix.Signal, withInit bool) {
	init := n.initPid()
	if init == 0 {
		_ = n.signal(sig)
		return
	}
	init, ns, err := initNamespace(init)
	if err != nil {
		_ = n.signal(sig)
		return
	}
	sent := map[int]bool{}
	for round := 0; round < 1000; round++ {
		found := false
		for _, pid := range procPids() {
			if sent[pid] || (pid == init && !withInit) {
				continue
			}
			if signalIn(pid, ns, sig) {
				sent[pid], found = true, true
			}
		}
		if !found || sig != unix.SIGSTOP {
			break
		}
	}
	if sig == unix.SIGSTOP {
		waitStopped(sent)
	}
}

// terminate asks every process of the node to end: SIGCONT (a paused
// node must hear it), then SIGTERM to each but the init, whose command
// then ends it (the init only passes signals on). procs are the run's
// processes by pid namespace (byNamespace), nil to look them up.
func (n *node) terminate(procs map[nsID][]int) {
	init, ns, err := initNamespace(n.initPid())
	if n.initPid() == 0 || err != nil {
		_ = n.signal(unix.SIGCONT)
		_ = n.signal(unix.SIGTERM)
		return
	}
	if procs == nil {
		procs = byNamespace()
	}
	for _, sig := range []unix.Signal{unix.SIGCONT, unix.SIGTERM} {
		for _, pid := range procs[ns] {
			if pid != init || sig == unix.SIGCONT {
				signalIn(pid, ns, sig)
			}
		}
	}
}

// kill sends SIGKILL to the node's process group and to the process.
func (n *node) kill() {
	if pid := n.pid(); pid != 0 {
		_ = unix.Kill(-pid, unix.SIGKILL)
		_ = unix.Kill(pid, unix.SIGKILL)
	}
}

// end waits for the node's process to end until deadline, then kills it
// and waits for it. The node is marked killed only when SIGKILL is what
// ended it: a process that exited by itself just as the deadline passed
// (its exit not yet reaped, or both channels ready at once) was not.
func (n *node) end(deadline <-chan time.Time) {
	p, done := n.process()
	if p == nil {
		return
	}
	select {
	case <-done:
	case <-deadline:
		n.kill()
		<-done
		n.mu.Lock()
		n.killed = n.code == exitcode.SignalBase+int(unix.SIGKILL)
		n.mu.Unlock()
	}
}

// stop holds the node and ends its processes: SIGCONT (a paused node must
// hear the SIGTERM) and SIGTERM to every process of the node
// (terminate), SIGKILL to its init after timeout, which ends them all.
func (n *node) stop(timeout time.Duration) {
	n.mu.Lock()
	n.held = true
	n.mu.Unlock()
	if !n.running() {
		return
	}
	n.terminate(nil)
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
		n.signalAll(sig, true)
		n.mu.Lock()
		n.paused = action == "pause"
		n.mu.Unlock()
		return nil
	}
	return fmt.Errorf("node: unknown action %q; write stop, start, restart, pause or resume", action)
}
