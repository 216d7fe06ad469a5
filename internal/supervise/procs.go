package supervise

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/procpid"
)

// nsID identifies a namespace: the device and inode of its nsfs file.
type nsID struct{ dev, ino uint64 }

// pidNamespace identifies the pid namespace process pid is in, pid as
// the supervisor's /proc shows it (the run's pid namespace, or the
// container's: initNamespace).
func pidNamespace(pid int) (nsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/pid", pid), &st); err != nil {
		return nsID{}, fmt.Errorf("pid namespace of %d: %w", pid, err)
	}
	return nsID{st.Dev, st.Ino}, nil
}

// initNamespace is the pid namespace of a node's init (pid: as the
// supervisor knows it) and the pid /proc shows the init by: the same pid
// but where the run keeps a container's /proc (package procpid).
func initNamespace(pid int) (procPid int, ns nsID, err error) {
	if procPid, err = procpid.InProc(pid); err != nil {
		return 0, nsID{}, err
	}
	ns, err = pidNamespace(procPid)
	return procPid, ns, err
}

// procPids lists the processes of the run's pid namespace.
func procPids() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 1 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// byNamespace lists the processes of the run's pid namespace by the pid
// namespace each is in: one scan of /proc for every node at once.
func byNamespace() map[nsID][]int {
	out := map[nsID][]int{}
	for _, pid := range procPids() {
		if ns, err := pidNamespace(pid); err == nil {
			out[ns] = append(out[ns], pid)
		}
	}
	return out
}

// scans shares scans of /proc (byNamespace) among callers that each
// need one taken after they asked: nodes whose dependents ended at about
// the same time (in a stop, every node a last one depends on) take one
// or two scans between them, not one each, which at 1,000 nodes made the
// stop quadratic.
type scans struct {
	mu      sync.Mutex
	cond    *sync.Cond
	started uint64 // scans begun
	done    uint64 // the scan that result is from
	running bool
	result  map[nsID][]int
	scan    func() map[nsID][]int // byNamespace
}

func newScans(scan func() map[nsID][]int) *scans {
	s := &scans{scan: scan}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// fresh returns the processes of the run's pid namespace by pid
// namespace, from a scan begun after the call.
func (s *scans) fresh() map[nsID][]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := s.started + 1
	for s.done < want {
		if s.running {
			s.cond.Wait()
			continue
		}
		s.running = true
		s.started++
		n := s.started
		s.mu.Unlock()
		r := s.scan()
		s.mu.Lock()
		s.running, s.done, s.result = false, n, r
		s.cond.Broadcast()
	}
	return s.result
}

// signalIn sends sig to process pid if it is in the pid namespace ns,
// and says whether it did. The process is held by a pidfd while its
// namespace is checked, so that a pid that ended and was taken by
// another process meanwhile is never signalled.
func signalIn(pid int, ns nsID, sig unix.Signal) bool {
	if got, err := pidNamespace(pid); err != nil || got != ns {
		return false // the cheap check first: most processes are others'
	}
	// A /proc/PID folder's descriptor is a pidfd; pidfd_open would take
	// pid in the run's pid namespace, and /proc may show another's
	// (package procpid).
	fd, err := unix.Open(fmt.Sprintf("/proc/%d", pid), unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstatat(fd, "ns/pid", &st, 0); err != nil || (nsID{st.Dev, st.Ino}) != ns {
		return false
	}
	// Alive now means the pid was this process's all along.
	err = unix.PidfdSendSignal(fd, sig, nil, 0)
	if errors.Is(err, unix.ENOSYS) {
		// Before Linux 5.1: no pidfd; the namespace was checked just now.
		return unix.Kill(pid, sig) == nil
	}
	return err == nil
}

// waitStopped waits (up to two seconds) until every process of pids that
// still exists is stopped.
func waitStopped(pids map[int]bool) {
	deadline := time.Now().Add(2 * time.Second)
	for pid := range pids {
		for time.Now().Before(deadline) {
			st := procState(pid)
			if st == "" || st == "T" || st == "t" || st == "Z" || st == "X" {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// procState is the state letter of pid in /proc (R, S, T, Z...), "" when
// it is gone.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}
