package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/exitcode"
	"github.com/nsrun/nsrun/userns"
	"github.com/nsrun/nsrun/userns/launch"
)

// InitMarker is argv[1] of a node's init: nsrun run again (/proc/self/exe)
// as PID 1 of the node's own pid namespace (Spec.PIDNS), or as the
// starter of a command run in a node's namespaces (Spec.Join). No command
// line of nsrun's starts with it; the C launcher starts no run for it,
// but catches its signals until Go listens (launch.Signals).
var InitMarker = launch.NodeInitMarker

// Fds of a node's init, after stdin, stdout and stderr.
const (
	initConfigFd = 3 // the supervisor writes initConfig as JSON, then closes
	initStatusFd = 4 // the init writes initStatus as JSON, then closes
)

// initConfig is the command a node's init starts and how.
type initConfig struct {
	Path     string   `json:"path"` // found by lookPath in the supervisor
	Argv     []string `json:"argv"`
	Env      []string `json:"env"`
	Dir      string   `json:"dir,omitempty"`
	MapUser  bool     `json:"map_user,omitempty"`
	UID      int      `json:"uid"`
	GID      int      `json:"gid"`
	AllCaps  bool     `json:"all_caps,omitempty"`
	Setpgid  bool     `json:"setpgid,omitempty"`
	Terminal bool     `json:"terminal,omitempty"` // SIGINT and SIGQUIT come from the terminal
	// Exec: not the node's init but an exec's starter (Spec.Join), in
	// the node's pid and mount namespaces already: it mounts nothing and
	// passes on every signal it gets.
	Exec bool `json:"exec,omitempty"`
	// SharedProc: keep the run's /proc (Spec.SharedProc).
	SharedProc bool `json:"shared_proc,omitempty"`
}

// initStatus is the init's report once the command started, or why it
// did not.
type initStatus struct {
	Pid   int    `json:"pid,omitempty"` // in the node's pid namespace
	Error string `json:"error,omitempty"`
}

// exitInitFailed is a node init's exit code when it could not start the
// command (it has said why on its status pipe).
const exitInitFailed = exitcode.SetupFailed

// InitMain makes this process a node's init when it was started as one
// (os.Args[1] is InitMarker) and never returns then; otherwise it returns
// at once. nsrun's main calls it first, and so does package nstest in a
// test binary that serves as nsrun.
func InitMain() {
	if len(os.Args) < 2 || os.Args[1] != InitMarker {
		return
	}
	os.Exit(runInit())
}

// runInit is a node's init: it mounts the node's /proc, starts the
// command, forwards signals to it, reaps every process of the node that
// ends (orphans are re-parented to it), and exits with the command's exit
// code (128+N when a signal N killed it) once the command has ended. As
// PID 1 of the node's pid namespace, its exit kills every other process
// of the node: a node is its command, as a container is.
func runInit() int {
	// The command is forked from this thread, whose capabilities are
	// changed below.
	runtime.LockOSThread()
	cfgFile, status := os.NewFile(initConfigFd, "init config"), os.NewFile(initStatusFd, "init status")
	unix.CloseOnExec(initConfigFd)
	unix.CloseOnExec(initStatusFd)
	report := func(st initStatus) {
		_ = json.NewEncoder(status).Encode(st)
		status.Close()
	}
	var cfg initConfig
	err := json.NewDecoder(cfgFile).Decode(&cfg)
	cfgFile.Close()
	if err != nil {
		report(initStatus{Error: fmt.Sprintf("node init: read its configuration: %v", err)})
		return exitInitFailed
	}
	name := "nsrun-init"
	if cfg.Exec {
		name = "nsrun-exec"
	} else if cfg.SharedProc {
		// The run's /proc, as the supervisor's: ps shows more than the node.
	} else if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		// The node's own /proc, in the node's own mount namespace: ps
		// and /proc/PID show the node's processes, by the pids they know.
		report(initStatus{Error: fmt.Sprintf("node init: mount /proc of the node's pid namespace: %v", err)})
		return exitInitFailed
	}
	// ps shows it by this name (it was started as /proc/self/exe).
	_ = os.WriteFile("/proc/self/comm", []byte(name), 0)
	forward := userns.ForwardedSet(cfg.Terminal)
	caught := userns.ForwardedSignals(false)
	if cfg.Exec {
		caught = append(caught, execSignals...)
		for _, sig := range caught {
			forward[sig] = true
		}
	}
	sigs := launch.Signals()
	signal.Notify(sigs, append(caught, syscall.SIGCHLD)...)
	if !cfg.AllCaps {
		// The init was given every capability of the run's user namespace
		// (ambient, to mount /proc); the command gets what it had before
		// nodes had an init: none, unless it runs as uid 0 there.
		if err := dropInheritedCaps(); err != nil {
			report(initStatus{Error: fmt.Sprintf("node init: %v", err)})
			return exitInitFailed
		}
	}
	cmd := &exec.Cmd{
		Path: cfg.Path, Args: cfg.Argv, Env: cfg.Env, Dir: cfg.Dir,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: cfg.Setpgid},
	}
	if err := credentials(cmd.SysProcAttr, cfg.MapUser, cfg.UID, cfg.GID, cfg.AllCaps); err != nil {
		report(initStatus{Error: err.Error()})
		return exitInitFailed
	}
	// The signals that came before the command started: it would have had
	// them, from the terminal or from here, had it run; it gets them once
	// it runs. (Dropped, a Ctrl-C at the start was lost: the command ran
	// on.)
	var missed []syscall.Signal
drain:
	for {
		select {
		case sig := <-sigs:
			if sig != syscall.SIGCHLD {
				missed = append(missed, sig.(syscall.Signal))
			}
		default:
			break drain
		}
	}
	if err := cmd.Start(); err != nil {
		report(initStatus{Error: err.Error()})
		return exitInitFailed
	}
	pid := cmd.Process.Pid
	report(initStatus{Pid: pid})
	for _, sig := range missed {
		target := pid
		if cfg.Setpgid {
			target = -pid
		}
		_ = unix.Kill(target, sig)
	}
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			if forward[sig] {
				target := pid
				if cfg.Setpgid {
					target = -pid
				}
				_ = unix.Kill(target, sig.(syscall.Signal))
			}
			continue // SIGINT, SIGQUIT at a terminal: the command has them
		}
		if code, ended := reap(pid); ended {
			return code
		}
	}
	return exitInitFailed
}

// execSignals are passed on by an exec's starter besides the forwarded
// ones: `nsrun net exec` sends whatever signal its caller gets.
var execSignals = []os.Signal{syscall.SIGWINCH, syscall.SIGCONT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGALRM}

// reap collects every child that has ended, and says whether the command
// (pid) was one, with its exit code.
func reap(pid int) (code int, ended bool) {
	for {
		var ws unix.WaitStatus
		w, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || w <= 0 {
			return code, ended
		}
		if w == pid {
			ended = true
			code = ws.ExitStatus()
			if ws.Signaled() {
				code = exitcode.SignalBase + int(ws.Signal())
			}
		}
	}
}

// dropInheritedCaps clears the ambient and inheritable capabilities of
// the calling thread, so that a command it forks and execs keeps no
// capability unless it runs as uid 0 (as when the supervisor forked it).
func dropInheritedCaps() error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear inheritable capabilities: %w", err)
	}
	return nil
}
