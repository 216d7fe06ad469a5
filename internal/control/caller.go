package control

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Caller is the process that sent a request, as the kernel reports it
// (SO_PEERCRED, SO_PEERPIDFD): nothing the client sends.
type Caller struct {
	// Pid is the caller's pid in the server's pid namespace: 0 for a
	// process outside it (the user on the host, through the socket's
	// path), which the server's pid namespace cannot name.
	Pid int
	// pidfd refers to the caller's process itself (-1 where the kernel
	// has no SO_PEERPIDFD, before Linux 6.5): while it lives, Pid is
	// still its pid, never a later process's.
	pidfd int
}

// Caller returns who sent the request. The caller must Close it.
func (p *Peer) Caller() (Caller, error) {
	raw, err := p.c.SyscallConn()
	if err != nil {
		return Caller{}, fmt.Errorf("who is calling: %w", err)
	}
	c := Caller{pidfd: -1}
	var serr error
	err = raw.Control(func(fd uintptr) {
		var cred *unix.Ucred
		if cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); serr != nil {
			return
		}
		c.Pid = int(cred.Pid)
		if c.Pid == 0 {
			return
		}
		if pidfd, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
			unix.CloseOnExec(pidfd)
			c.pidfd = pidfd
		} else if !errors.Is(err, unix.ENOPROTOOPT) {
			serr = fmt.Errorf("SO_PEERPIDFD: %w", err)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		c.Close()
		return Caller{}, fmt.Errorf("who is calling: %w", err)
	}
	return c, nil
}

// Alive reports whether the caller's process still lives, so that what
// was read of /proc/Pid since the request came was the caller's. Without
// a pidfd (an old kernel) it reports whether Pid exists.
func (c Caller) Alive() bool {
	if c.pidfd >= 0 {
		return unix.PidfdSendSignal(c.pidfd, 0, nil, 0) == nil
	}
	return c.Pid != 0 && unix.Kill(c.Pid, 0) == nil
}

// Close releases the caller's pidfd.
func (c Caller) Close() {
	if c.pidfd >= 0 {
		unix.Close(c.pidfd)
	}
}
