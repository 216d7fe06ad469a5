// Package guest starts a node's process inside the node's namespaces: its
// network namespace, a UTS namespace with the node's hostname, the
// supervisor's mount namespace (where /etc/hosts and /etc/resolv.conf are
// the run's own files) or a copy of it with files of the node's own, and,
// when asked, a nested user namespace that maps the caller's uid and
// gid to the supervisor's uid 0, so the program sees its usual identity.
//
// All of it happens on one locked OS thread that joins or unshares the
// namespaces and then forks the process, which inherits them. The same
// thread waits for the process (PR_SET_PDEATHSIG fires when the forking
// thread exits) and then dies with its goroutine, never unlocked, so the
// namespaces never leak into other goroutines.
//
// The network namespace is joined with nsfd.Enter, not nsfd.Do: the
// thread does not come back. It goes on to unshare a UTS namespace (and
// a mount namespace) of its own, which a thread cannot leave again, and
// it must live as long as the process for the parent-death signal; Go's
// SysProcAttr has no setns, so the fork cannot do it instead.
package guest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/nsfd"
)

// Spec is what to start and where.
type Spec struct {
	NetNS    *os.File          // the node's network namespace
	Hostname string            // set in a fresh UTS namespace
	Mounts   map[string]string // target path -> source file or folder, bind-mounted read-only in a mount namespace of its own (none: the supervisor's)
	// Hide are folders covered by an empty tmpfs (mode 0700) in the
	// process's mount namespace of its own, so that it cannot reach
	// what lies beneath by path (the runs' control sockets). Mounts
	// whose target lies under one are made inside it, from their source
	// as it was before it was covered.
	Hide     []string
	Argv     []string // the command and its arguments
	Env      []string // the complete environment
	Dir      string   // working directory ("" keeps the current one)
	MapUser  bool     // start in a nested user namespace mapping UID/GID to 0
	UID, GID int      // the caller's ids, with MapUser
	AllCaps  bool     // keep every capability across exec (ambient)

	Stdin          *os.File
	Stdout, Stderr *os.File
	Setpgid        bool // put the process in a process group of its own
}

// Process is a started node process.
type Process struct {
	Pid  int
	done chan struct{}
	err  error
	st   *os.ProcessState
}

// ErrNotFound wraps errors of commands that do not exist (exit code 127).
var ErrNotFound = errors.New("command not found")

// ErrNotExecutable wraps errors of commands that exist but cannot be run
// (exit code 126).
var ErrNotExecutable = errors.New("cannot be executed")

// Start starts the process described by s and returns once it runs (or
// failed to start). Wait reports its end.
func Start(s Spec) (*Process, error) {
	if len(s.Argv) == 0 {
		return nil, errors.New("no command given")
	}
	path, err := lookPath(s.Argv[0], s.Env, s.Dir)
	if err != nil {
		return nil, err
	}
	p := &Process{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Deliberately never unlocked: this thread's namespaces are the node's.
		cmd, err := prepare(s, path)
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			started <- err
			return
		}
		p.Pid = cmd.Process.Pid
		started <- nil
		p.err = cmd.Wait()
		p.st = cmd.ProcessState
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// Wait waits for the process to end and returns its state.
func (p *Process) Wait() *os.ProcessState {
	<-p.done
	return p.st
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitCode turns a process state into a shell-style exit code: the exit
// status, or 128+N when the process was killed by signal N.
func ExitCode(st *os.ProcessState) int {
	if st == nil {
		return 125
	}
	ws, ok := st.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

// prepare joins and unshares the namespaces on the current (locked) thread
// and builds the command.
func prepare(s Spec, path string) (*exec.Cmd, error) {
	if err := nsfd.Enter(s.NetNS); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	flags := unix.CLONE_NEWUTS
	if len(s.Mounts) > 0 || len(s.Hide) > 0 {
		flags |= unix.CLONE_NEWNS
	}
	if err := unix.Unshare(flags); err != nil {
		return nil, fmt.Errorf("unshare UTS and mount namespaces: %w", err)
	}
	if s.Hostname != "" {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return nil, fmt.Errorf("set hostname %q: %w", s.Hostname, err)
		}
	}
	if err := mount(s.Mounts, s.Hide); err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:   path,
		Args:   s.Argv,
		Env:    s.Env,
		Dir:    s.Dir,
		Stdin:  s.Stdin,
		Stdout: s.Stdout,
		Stderr: s.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Pdeathsig: syscall.SIGKILL,
			Setpgid:   s.Setpgid,
		},
	}
	if s.AllCaps {
		last, err := lastCap()
		if err != nil {
			return nil, err
		}
		for c := uintptr(0); c <= last; c++ {
			cmd.SysProcAttr.AmbientCaps = append(cmd.SysProcAttr.AmbientCaps, c)
		}
	}
	if s.MapUser {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: s.UID, HostID: 0, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: s.GID, HostID: 0, Size: 1}}
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(s.UID), Gid: uint32(s.GID), NoSetGroups: true}
	}
	return cmd, nil
}

// mount makes the mounts of a node's own mount namespace: every source
// is opened first, then the folders hide lists are covered, then each
// source is bind-mounted from its descriptor onto its target (created
// in the covering tmpfs where it lies under one).
func mount(mounts map[string]string, hide []string) error {
	targets := make([]string, 0, len(mounts))
	for t := range mounts {
		targets = append(targets, t)
	}
	slices.Sort(targets) // a folder before what is mounted inside it
	fds := make(map[string]int, len(mounts))
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, t := range targets {
		fd, err := unix.Open(mounts[t], unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s to mount it onto %s: %w", mounts[t], t, err)
		}
		fds[t] = fd
	}
	for _, dir := range hide {
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700"); err != nil {
			return fmt.Errorf("cover %s: %w", dir, err)
		}
	}
	for _, t := range targets {
		if slices.ContainsFunc(hide, func(dir string) bool { return strings.HasPrefix(t, dir+"/") }) {
			if err := makeTarget(t, fds[t]); err != nil {
				return err
			}
		}
		if err := BindReadOnly("/proc/self/fd/"+strconv.Itoa(fds[t]), t); err != nil {
			return fmt.Errorf("%s: %w", mounts[t], err)
		}
	}
	return nil
}

// makeTarget creates the mount point t for the file or folder open as
// fd, with the folders above it.
func makeTarget(t string, fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("mount onto %s: %w", t, err)
	}
	if err := os.MkdirAll(filepath.Dir(t), 0o700); err != nil {
		return fmt.Errorf("mount point %s: %w", t, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if err := os.Mkdir(t, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("mount point %s: %w", t, err)
		}
		return nil
	}
	f, err := os.OpenFile(t, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("mount point %s: %w", t, err)
	}
	return f.Close()
}

// lastCap is the highest capability this kernel knows.
func lastCap() (uintptr, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read the last capability: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("read the last capability: %q", b)
	}
	return uintptr(n), nil
}

// BindReadOnly bind-mounts the file source onto target in the current
// thread's mount namespace (the supervisor's, or a node's copy of it; their
// mounts are private, so nothing propagates back), then makes it read-only where the
// kernel allows: a remount that would clear flags locked on the underlying
// mount is refused, and the file then stays writable to root only.
func BindReadOnly(source, target string) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mount %s onto %s: %w", source, target, err)
	}
	_ = unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
	return nil
}

// lookPath finds argv0 like a shell would, with the PATH of env.
func lookPath(argv0 string, env []string, dir string) (string, error) {
	if strings.Contains(argv0, "/") {
		p := argv0
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		if err := executable(p); err != nil {
			if errors.Is(err, ErrNotFound) {
				return "", fmt.Errorf("%s: %w", argv0, err)
			}
			return "", fmt.Errorf("%s: %w (%w)", argv0, ErrNotExecutable, err)
		}
		return argv0, nil
	}
	pathEnv := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	var denied error
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, argv0)
		err := executable(p)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, os.ErrPermission) && denied == nil {
			denied = fmt.Errorf("%s: %w", p, err)
		}
	}
	if denied != nil {
		return "", fmt.Errorf("%w: %w", ErrNotExecutable, denied)
	}
	return "", fmt.Errorf("%s: %w in PATH", argv0, ErrNotFound)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		// Like a shell: a PATH entry we cannot search is no match.
		return ErrNotFound
	}
	if fi.IsDir() {
		return fmt.Errorf("is a directory: %w", os.ErrPermission)
	}
	if fi.Mode()&0o111 == 0 {
		return fmt.Errorf("not executable: %w", os.ErrPermission)
	}
	return nil
}
