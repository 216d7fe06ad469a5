package supervise

import (
	"fmt"
	"time"

	"github.com/nsrun/nsrun/internal/topology"
)

// Back-off of restarts, as docker's: 100 ms before the first, doubling
// up to a minute; a process that ran restartReset resets it.
const (
	restartFirstDelay = 100 * time.Millisecond
	restartMaxDelay   = time.Minute
	restartReset      = 10 * time.Second
)

// restartDelay is the wait before restart number n (1-based).
func restartDelay(n int) time.Duration {
	d := restartFirstDelay
	for i := 1; i < n && d < restartMaxDelay; i++ {
		d *= 2
	}
	return min(d, restartMaxDelay)
}

// restartLater says whether exit e's node is started again under its
// `restart:` policy, and if so starts it after the back-off: its next
// exit (or, when the run stops first, an exit marked given up) comes on
// s.exited as before.
func (s *supervisor) restartLater(e exit) bool {
	r := e.n.cfg.Restart
	switch {
	case e.restartGone, r.Policy == topology.RestartNo, r.Policy == "":
		return false
	case r.Policy == topology.RestartOnFailure && e.code == 0:
		return false
	}
	select {
	case <-s.abort:
		return false
	default:
	}
	n := e.n
	n.mu.Lock()
	if n.ranFor >= restartReset {
		n.restarts = 0
	}
	if r.Max > 0 && n.restarts >= r.Max {
		n.mu.Unlock()
		s.out.Event(n.cfg.Name, fmt.Sprintf("not restarted: it exited with code %d after %d restarts (restart: on-failure:%d)", e.code, r.Max, r.Max))
		return false
	}
	n.restarts++
	count := n.restarts
	n.mu.Unlock()
	delay := restartDelay(count)
	of := ""
	if r.Max > 0 {
		of = fmt.Sprintf(" of %d", r.Max)
	}
	s.out.Event(n.cfg.Name, fmt.Sprintf("restarting in %s (restart %d%s)", delay, count, of))
	go func() {
		select {
		case <-time.After(delay):
		case <-s.abort:
			s.exited <- exit{n: n, code: e.code, restartGone: true}
			return
		}
		n.ops.Lock()
		defer n.ops.Unlock()
		select {
		case <-s.abort:
			s.exited <- exit{n: n, code: e.code, restartGone: true}
			return
		default:
		}
		if n.running() || n.isHeld() {
			// Started (or stopped) by a node verb meanwhile: counted
			// by its own exit.
			if !n.running() {
				s.exited <- exit{n: n, code: e.code, restartGone: true}
			}
			return
		}
		if err := s.launch(n, s.nodeSpec(n)); err != nil {
			s.out.Event(n.cfg.Name, fmt.Sprintf("restart failed: %v", err))
			s.exited <- exit{n: n, code: e.code, restartGone: true}
			return
		}
		s.out.Event(n.cfg.Name, fmt.Sprintf("restarted (pid %d)", n.pid()))
		select {
		case <-s.abort: // the run began to stop while it started
			n.kill()
		default:
		}
	}()
	return true
}
