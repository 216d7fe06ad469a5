package helper

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Step is one change to the machine.
type Step struct {
	// Describe says what the step changes, in words and values a person
	// can check (several lines allowed).
	Describe string
	// Done reports whether the change is already in place. It only looks:
	// it changes nothing.
	Done func() (bool, error)
	// Apply makes the change.
	Apply func() error
}

// Plan is the ordered steps of install or uninstall.
type Plan []Step

// Run prints every step and, unless dryRun, applies those not yet done.
// It stops at the first failure, or before the next step once stop
// reports true (a signal came). It returns how many steps it applied.
func (p Plan) Run(w io.Writer, dryRun bool, stop func() bool) (applied int, err error) {
	changed := 0
	for _, s := range p {
		if stop() {
			return applied, errStopped
		}
		done, err := s.Done()
		if err != nil {
			return applied, fmt.Errorf("check %q: %w", firstLine(s.Describe), err)
		}
		switch {
		case done:
			fmt.Fprintf(w, "unchanged  %s\n", indent(s.Describe))
		case dryRun:
			changed++
			fmt.Fprintf(w, "would      %s\n", indent(s.Describe))
		default:
			changed++
			applied++ // even when it fails: it may have changed something
			if err := s.Apply(); err != nil {
				return applied, fmt.Errorf("%s: %w", firstLine(s.Describe), err)
			}
			fmt.Fprintf(w, "done       %s\n", indent(s.Describe))
		}
	}
	switch {
	case changed == 0:
		fmt.Fprintln(w, "nothing to change")
	case dryRun:
		fmt.Fprintf(w, "dry run: %d change(s) listed, nothing changed\n", changed)
	}
	return applied, nil
}

var errStopped = fmt.Errorf("interrupted by a signal")

// holdSignals keeps SIGINT, SIGTERM, SIGHUP and SIGQUIT (a Ctrl-C or
// Ctrl-\ reaches the helper through sudo) from killing the helper in the
// middle of a step: they are only noted, and the returned stop reports
// whether one came. SIGPIPE (a closed output: `nsrun-helper install |
// head -c1`), SIGTSTP, SIGTTIN and SIGTTOU are ignored: neither a lost
// reader nor job control stops a step half-way. It also fixes the
// resource limits the caller may have lowered (fixLimits). The signals
// stay held after restore, until the helper exits: one that comes once the
// last step is done finds the work whole, and must not kill the helper
// then (its exit status would say the install failed).
func holdSignals() (stop func() bool, restore func()) {
	ch := make(chan os.Signal, 4)
	var got atomic.Bool
	held := []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}
	ignored := []os.Signal{syscall.SIGPIPE, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU}
	signal.Notify(ch, held...)
	signal.Ignore(ignored...)
	fixLimits()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				got.Store(true)
			case <-done:
				return
			}
		}
	}()
	return got.Load, func() { close(done) }
}

// limits are the resource limits install and uninstall run with, whatever
// the caller set: a user who lowers them before `sudo nsrun-helper` must
// not make a step fail half-way (out of file descriptors, CPU time or
// file size).
var limits = []struct {
	resource int
	value    uint64
}{
	{unix.RLIMIT_NOFILE, 4096},
	{unix.RLIMIT_CPU, unix.RLIM_INFINITY},
	{unix.RLIMIT_FSIZE, unix.RLIM_INFINITY},
}

// fixLimits sets limits, as far as the kernel lets it (a helper run
// without root gets an error later, at its first change).
func fixLimits() {
	for _, l := range limits {
		_ = unix.Setrlimit(l.resource, &unix.Rlimit{Cur: l.value, Max: l.value})
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n           ") }
