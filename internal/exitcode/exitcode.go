// Package exitcode names nsrun's exit codes, the one place they are
// written as numbers. A run's command gives its own code; nsrun's own
// failures use the codes of docker run and podman run, so scripts that
// know those know these.
package exitcode

import (
	"os"
	"syscall"
)

const (
	// OK is success.
	OK = 0
	// SetupFailed is nsrun's code when it failed itself: the run could not
	// be set up, a verb was refused, or a flag or value was wrong.
	SetupFailed = 125
	// CannotExecute is the code for a command that exists but cannot be
	// run (not executable).
	CannotExecute = 126
	// NotFound is the code for a command that does not exist.
	NotFound = 127
	// SignalBase plus N is the code of a command killed by signal N.
	SignalBase = 128
)

// Of turns a process state into a shell-style exit code: the exit status,
// or SignalBase+N when the process was killed by signal N; SetupFailed
// when there is no state (the process never ran).
func Of(st *os.ProcessState) int {
	if st == nil {
		return SetupFailed
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return SignalBase + int(ws.Signal())
	}
	return st.ExitCode()
}
