package supervise

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/exitcode"
	"github.com/nsrun/nsrun/internal/faults"
	"github.com/nsrun/nsrun/internal/output"
	"github.com/nsrun/nsrun/userns"
)

// superviseOne runs `nsrun -- CMD`: signals go to the command, whose exit
// ends the run.
func (s *supervisor) superviseOne(sigs chan os.Signal) int {
	forward := userns.ForwardedSet(s.plan.Run.Terminal)
	n := s.allNodes()[0]
	for {
		_, done := n.process()
		select {
		case sig := <-sigs:
			if pid := n.pid(); forward[sig] && pid != 0 {
				_ = unix.Kill(pid, sig.(syscall.Signal))
			}
		case <-done:
			if !n.running() { // not started again meanwhile
				return n.exitCode()
			}
		}
	}
}

// superviseUp runs `nsrun up`: a first SIGINT/SIGTERM/SIGHUP stops every
// node (SIGTERM, then SIGKILL after the timeout), a second kills them.
// With --abort-on-exit the run ends with the code of the node whose exit
// stopped it (as docker compose's --abort-on-container-exit); with
// --exit-code-from NODE, with NODE's; otherwise 0, or 1 when a node had
// to be killed.
func (s *supervisor) superviseUp(sigs chan os.Signal) int {
	// Nodes without a command hold their namespace until the run is
	// stopped; the others keep it going until they have all exited.
	running, idle := 0, false
	for _, n := range s.allNodes() {
		if n.pid() != 0 {
			running++
		} else {
			idle = true
		}
	}
	timeout := s.plan.Run.StopTimeout
	// With --abort-on-exit, the exit code of the node whose exit stopped
	// the run.
	abortCode, aborted := 0, false
	// In a summarized run, the nodes that ran when the stop began: their
	// exits are printed as counts by exit code once all have ended.
	var stopping []*node
	stopped := make(chan struct{})
	startStop := func(reason string) {
		s.once.Do(func() {
			if s.summarize {
				for _, n := range s.allNodes() {
					if n.running() {
						stopping = append(stopping, n)
					}
				}
			}
			s.endOfRun(reason)
			close(s.abort)
			go func() { s.stopAll(timeout); close(stopped) }()
		})
	}
	for running > 0 || idle {
		select {
		case <-stopped:
			running, idle = 0, false // every process has ended, held nodes included
		case sig := <-sigs:
			switch sig {
			case syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT:
				select {
				case <-s.abort:
					s.out.Note("killing every node")
					s.stopAll(0)
				default:
					s.out.Note(fmt.Sprintf("stopping every node (%s; SIGKILL after %s)", sig, timeout))
					startStop(sig.String())
				}
			default:
				for _, n := range s.allNodes() {
					if pid := n.pid(); pid != 0 {
						_ = unix.Kill(-pid, sig.(syscall.Signal))
					}
				}
			}
		case e := <-s.exited:
			if e.restartGone {
				running--
				continue
			}
			// In a summarized run, the nodes the stop ends are counted
			// below, and info.json (every node) is not written again for
			// each: at 1,000 nodes that is a megabyte a node.
			if !s.summarize || !s.stopRequested() {
				s.out.Event(e.n.cfg.Name, fmt.Sprintf("exited with code %d", e.code))
				s.updateInfo()
			}
			if e.held {
				continue // stopped on request; `nsrun node start` brings it back
			}
			if s.restartLater(e) {
				continue // it comes back, and is still counted
			}
			running--
			if e.code == 0 && s.plan.Completes(e.n.cfg.Name) {
				continue // done, as the nodes that wait for it expect
			}
			if s.plan.Run.AbortOnExit || s.plan.Run.ExitCodeFrom != "" {
				select {
				case <-s.abort: // already stopping: this node was stopped
				default:
					abortCode, aborted = e.code, true
				}
				startStop(fmt.Sprintf("node %s exited with code %d", e.n.cfg.Name, e.code))
			}
		}
	}
	select {
	case <-s.abort:
		<-stopped
	default:
	}
	s.out.Flush()
	// Every process has ended: each node's exit code is its last one.
	byCode := map[int][]string{}
	for _, n := range stopping {
		byCode[n.exitCode()] = append(byCode[n.exitCode()], n.cfg.Name)
	}
	for _, code := range slices.Sorted(maps.Keys(byCode)) {
		s.out.Note(output.Count(byCode[code], fmt.Sprintf("exited with code %d", code)))
	}
	if s.plan.Run.ExitCodeFrom != "" {
		n, _ := s.lookup(s.plan.Run.ExitCodeFrom)
		return n.exitCode()
	}
	if aborted {
		return abortCode
	}
	for _, n := range s.allNodes() {
		if n.wasKilled() {
			return 1
		}
	}
	return 0
}

// launcherGoneExit is the supervisor's exit code when the launcher died;
// nobody reads it.
const launcherGoneExit = exitcode.SignalBase + 9

// launcherGone ends the run at once because the launcher died (the
// caller killed nsrun, maybe with SIGKILL): every node is killed, as the
// launcher's death always did, but the capture first writes out what the
// kernel holds, so that every pcap file ends on a whole record. Exiting,
// the supervisor (PID 1 of the run's pid namespace) takes every other
// process of the run with it; it removes the run's state folder first
// (which, if the supervisor itself is killed, the next run or gc does).
func (s *supervisor) launcherGone() {
	// Whoever read nsrun's output may have died with it (a killed test
	// binary of package nstest): a write must not end the supervisor
	// before the run's folder is removed.
	signal.Ignore(syscall.SIGPIPE)
	s.stop("the launcher (nsrun) died")
	// Twice, for a node that was being started the first time round.
	for range 2 {
		for _, n := range s.allNodes() {
			n.kill()
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.cap.Load().Stop()
	// The run's folder goes too, so that nothing is left for gc.
	s.out.Flush()
	s.keepLogs()
	_ = os.RemoveAll(s.plan.Run.Dir)
	os.Exit(launcherGoneExit)
}

// stopRequested says whether the run is being stopped.
func (s *supervisor) stopRequested() bool {
	select {
	case <-s.abort:
		return true
	default:
		return false
	}
}

// stop marks the run as stopping (nodes not yet started never start),
// for reason.
func (s *supervisor) stop(reason string) {
	s.once.Do(func() {
		s.endOfRun(reason)
		close(s.abort)
	})
}

// endOfRun publishes that the run is stopping, for reason, the first
// time it is called.
func (s *supervisor) endOfRun(reason string) {
	s.stopping.Do(func() { s.publish(control.Event{Kind: control.EventRunStopping, Text: reason}) })
}

// stopAll sends SIGTERM to every process of every node (node.terminate),
// waits up to timeout, then kills what is left.
func (s *supervisor) stopAll(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	nodes := s.allNodes()
	if timeout <= 0 {
		endAll(nodes, deadline)
		return
	}
	// In reverse dependency order, as compose stops its services: a node
	// hears SIGTERM once every node that depends on it has ended (or the
	// deadline passed), so that a client never finds its server gone.
	// Nodes nothing depends on, most of them, share one scan of /proc.
	dependents := map[string][]*node{}
	for _, n := range nodes {
		for _, d := range n.cfg.DependsOn {
			dependents[d] = append(dependents[d], n)
		}
	}
	scans := newScans(byNamespace)
	procs := scans.fresh()
	ended := map[*node]chan struct{}{}
	for _, n := range nodes {
		ended[n] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(ended[n])
			own := procs
			if deps := dependents[n.cfg.Name]; len(deps) > 0 {
				timer := time.NewTimer(time.Until(deadline))
				defer timer.Stop()
			wait:
				for _, d := range deps {
					select {
					case <-ended[d]:
					case <-timer.C:
						break wait
					}
				}
				own = scans.fresh() // its processes now, not at the start
			}
			n.terminate(own)
			n.end(time.After(time.Until(deadline)))
		}()
	}
	wg.Wait()
}

// endAll waits for the processes of nodes to end until deadline, then
// kills those left. Each node waits on a timer of its own: one shared
// timer's single tick would go to the first node that reads it, and the
// nodes after it would wait for ever.
func endAll(nodes []*node, deadline time.Time) {
	for _, n := range nodes {
		n.end(time.After(time.Until(deadline)))
	}
}

// runFaults runs the file's fault schedule through the run's own control
// socket (the supervisor may do anything on it) until it ends or the run
// stops; a stopping run is not healed, it is torn down.
func (s *supervisor) runFaults(sched *faults.Schedule) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-s.abort; cancel() }()
	seq, err := sched.Sequence(sched.Seed)
	if err != nil {
		s.out.Note("faults: " + err.Error())
		return
	}
	c := control.ForRun(s.plan.Run.Dir)
	_ = sched.Run(ctx, c, seq, false, func(e faults.Event) {
		s.out.Note(e.String())
		n := e.Note()
		s.publish(control.Event{Kind: n.Kind, Verb: n.Verb, Step: n.Step, Text: n.Text})
	})
}
