package userns

import (
	"os"
	"syscall"
)

// TerminalSignals are delivered by the terminal to the whole foreground
// process group (nsrun, the supervisor and the command alike). When stdin is
// the caller's foreground terminal they are caught and dropped by nsrun and
// the supervisor, since the command already received them; otherwise they
// are forwarded like the rest.
var TerminalSignals = []os.Signal{syscall.SIGINT, syscall.SIGQUIT}

// ForwardedSignals lists the signals nsrun and the supervisor pass on to the
// command. SIGTSTP, SIGTTIN and SIGTTOU are left alone so that job control
// stops and continues the whole process group together.
func ForwardedSignals(terminal bool) []os.Signal {
	s := []os.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2}
	if !terminal {
		s = append(s, TerminalSignals...)
	}
	return s
}

// ForwardedSet is ForwardedSignals as a set.
func ForwardedSet(terminal bool) map[os.Signal]bool {
	m := map[os.Signal]bool{}
	for _, s := range ForwardedSignals(terminal) {
		m[s] = true
	}
	return m
}
