// Package parent is the caller's side of the re-exec protocol: it starts the
// run supervisor inside the run's namespaces, sends it the run's
// configuration, forwards signals to it and returns its exit code.
// See package userns for the whole protocol.
package parent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/userns"
	"github.com/nsrun/nsrun/userns/messages"
)

// Mode says how the supervisor gets its user namespace.
type Mode int

const (
	// Isolated creates a fresh user namespace for the run: no uplink.
	Isolated Mode = iota
	// Joined means this process already joined the helper's persisted user
	// and gateway namespaces (package nsenter); the supervisor inherits them.
	Joined
)

// Run starts the supervisor for cfg, waits for it and returns the exit code
// nsrun should exit with. Setup failures reported by the supervisor are
// returned as errors together with their exit code.
//
// extra are files passed down to the supervisor as fds 5, 6, ... (the
// listening sockets of published ports).
func Run(cfg messages.Config, mode Mode, extra []*os.File) (int, error) {
	// PR_SET_PDEATHSIG fires when the forking *thread* exits: fork and wait
	// from one locked thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return messages.ExitSetupFailed, fmt.Errorf("create config pipe: %w", err)
	}
	statR, statW, err := os.Pipe()
	if err != nil {
		return messages.ExitSetupFailed, fmt.Errorf("create status pipe: %w", err)
	}
	attr := &syscall.SysProcAttr{
		Pdeathsig:  syscall.SIGKILL,
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
		// `nsrun up` reads no terminal: its supervisor gets a process group
		// of its own, so that signals sent to nsrun's group (Ctrl-C,
		// timeout(1)) reach it once, forwarded by nsrun.
		Setpgid: cfg.Up,
	}
	if mode == Isolated {
		attr.Cloneflags |= syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
	}
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        []string{userns.SupervisorArg0},
		Env:         []string{},
		Stdin:       os.Stdin,
		Stdout:      os.Stdout,
		Stderr:      os.Stderr,
		ExtraFiles:  append([]*os.File{cfgR, statW}, extra...), // fd 3, 4, then 5... in the child
		SysProcAttr: attr,
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, userns.ForwardedSignals(cfg.Terminal)...)
	signal.Notify(sigs, userns.TerminalSignals...)
	defer signal.Stop(sigs)

	if err := cmd.Start(); err != nil {
		cfgR.Close()
		cfgW.Close()
		statR.Close()
		statW.Close()
		return messages.ExitSetupFailed, explainStartError(err, mode)
	}
	cfgR.Close()
	statW.Close()
	go func() {
		_ = json.NewEncoder(cfgW).Encode(cfg)
		cfgW.Close()
	}()
	status := make(chan messages.Status, 1)
	go func() {
		var st messages.Status
		dec := json.NewDecoder(statR)
		for dec.Decode(&st) == nil && st.Error == "" {
		}
		status <- st
		_, _ = io.Copy(io.Discard, statR)
		statR.Close()
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	forward := userns.ForwardedSet(cfg.Terminal)
	for {
		select {
		case s := <-sigs:
			if forward[s] {
				_ = cmd.Process.Signal(s)
			}
		case <-waited:
			st := <-status
			if st.Error != "" {
				return st.ExitCode, errors.New(st.Error)
			}
			return exitCode(cmd.ProcessState), nil
		}
	}
}

func exitCode(st *os.ProcessState) int {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

// explainStartError turns a failed clone into advice.
func explainStartError(err error, mode Mode) error {
	if mode == Isolated && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EACCES)) {
		return fmt.Errorf("create user namespace: %w\n%s", err, userns.DiagnoseUserNS())
	}
	return fmt.Errorf("start run supervisor: %w", err)
}
