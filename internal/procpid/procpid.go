// Package procpid finds a process in the /proc this process has mounted,
// by the pid it knows the process by.
//
// Where a fresh /proc of the run's pid namespace cannot be mounted (in a
// container that masks paths under /proc, the kernel refuses it), /proc
// keeps showing an outer pid namespace's pids: the pid a process of the run
// knows another by names a different process there, or none. The kernel
// tells the pid a pidfd's process has in the pid namespace of the /proc its
// fdinfo is read from.
package procpid

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// InProc is the pid that process pid (in this process's pid namespace)
// has in /proc: pid itself where /proc is of this pid namespace.
func InProc(pid int) (int, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0, fmt.Errorf("open process %d: %w", pid, err)
	}
	defer unix.Close(fd)
	b, err := os.ReadFile("/proc/thread-self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return 0, fmt.Errorf("read process %d's pidfd information: %w", pid, err)
	}
	got, ok := fdinfoPid(b)
	if !ok {
		return 0, fmt.Errorf("process %d is not in /proc's pid namespace", pid)
	}
	return got, nil
}

// Path is /proc/PID/name for process pid (in this process's pid
// namespace), PID its pid in /proc.
func Path(pid int, name string) (string, error) {
	p, err := InProc(pid)
	if err != nil {
		return "", err
	}
	return "/proc/" + strconv.Itoa(p) + "/" + name, nil
}

// fdinfoPid is the Pid: line of a pidfd's fdinfo (0 or -1 when the
// process is not in that pid namespace, or has ended).
func fdinfoPid(b []byte) (int, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("Pid:")); ok {
			n, err := strconv.Atoi(string(bytes.TrimSpace(rest)))
			return n, err == nil && n > 0
		}
	}
	return 0, false
}
