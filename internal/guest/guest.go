// Package guest starts a node's process inside the node's namespaces: its
// network namespace, a UTS namespace with the node's hostname, the
// supervisor's mount namespace (where /etc/hosts and /etc/resolv.conf are
// the run's own files) or a copy of it with files of the node's own, and,
// when asked, a nested user namespace that maps the caller's uid and
// gid to the supervisor's uid 0, so the program sees its usual identity.
//
// All of it happens on one locked OS thread that joins or unshares the
// namespaces (which a thread cannot leave again: it is never unlocked,
// and dies with its goroutine, so the namespaces never leak into other
// goroutines).
//
// A node's own command (Spec.PIDNS) is not forked directly: it runs
// under nsrun's init (C code of package launch, nodeinit.c), PID 1 of a
// new pid namespace, in a mount namespace of the node's own where it
// mounts the node's /proc; the init starts the command, reaps, passes
// signals on and exits with the command's code, and the kernel ends the
// node's every other process with it. In a supervisor, the run's spawner
// (launch.SpawnInit) forks the init: the thread unshares the node's UTS
// and mount namespaces and hands them over with the network namespace,
// the standard files and the init's pipes; the init is a child of the
// supervisor's, and nothing is exec'd but the command. Elsewhere (no
// spawner), the thread joins the network namespace and forks nsrun again
// (/proc/self/exe with InitMarker), whose C constructor runs the same
// init; PR_SET_PDEATHSIG ties it to that thread, which waits for it. A
// command run in a live node (Spec.Join, `nsrun net exec`) is started
// that way from inside the node's namespaces, by the init's code in a
// starter that is not PID 1.
package guest

import (
	"encoding/json"
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

	"github.com/nsrun/nsrun/internal/exitcode"
	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/internal/procpid"
	"github.com/nsrun/nsrun/userns/launch"
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
	Hide []string
	// Tmpfs are folders covered by an empty, writable tmpfs of the
	// node's own (mode 1777), as compose's tmpfs:; gone with the node's
	// mount namespace.
	Tmpfs    []string
	Argv     []string // the command and its arguments
	Env      []string // the complete environment
	Dir      string   // working directory ("" keeps the current one)
	MapUser  bool     // start in a nested user namespace mapping UID/GID to 0
	UID, GID int      // the caller's ids, with MapUser
	AllCaps  bool     // keep every capability across exec (ambient)

	Stdin          *os.File
	Stdout, Stderr *os.File
	Setpgid        bool // put the process in a process group of its own

	// PIDNS starts the command under an init of nsrun's (InitMarker) as
	// PID 1 of a pid namespace of its own, with its own /proc: every
	// process the command starts, whatever it does with sessions and
	// process groups, stays in that namespace, and ends with the init.
	// Process.Pid is then the init's. Terminal says that SIGINT and
	// SIGQUIT reach the command from the terminal (the init does not
	// pass them on).
	PIDNS    bool
	Terminal bool
	// SharedProc: the node's init keeps the run's /proc rather than
	// mounting one of its node's pid namespace (the kernel refuses a fresh
	// /proc where the container masks paths under it).
	SharedProc bool
	// KeepHostname: the hostname is not set (a seccomp filter refuses
	// sethostname); the node keeps the run's.
	KeepHostname bool
	// Join, when set, starts the command inside a node's running init's
	// namespaces (pid, mount and UTS; NetNS is still the network one)
	// instead of UTS and mount namespaces of its own: `nsrun net exec`.
	// Hostname, Mounts and Hide are then not used. A starter of nsrun's
	// (the init's code, InitMarker) starts it there and passes signals on:
	// Process.Pid is the starter's. (The supervisor cannot fork the
	// command there itself: a nested user namespace's id maps are
	// written through /proc/PID, and the node's /proc has the node's
	// pids.)
	Join *Joined
}

// Joined are the namespaces of a node's init, held open.
type Joined struct {
	PID, Mount, UTS *os.File
}

// JoinInit opens the pid, mount and UTS namespaces of the process pid
// (a node's init, as the supervisor sees it; /proc may show it by another
// pid, see package procpid).
func JoinInit(pid int) (*Joined, error) {
	var j Joined
	inProc, err := procpid.InProc(pid)
	if err != nil {
		return nil, fmt.Errorf("find the node's init: %w", err)
	}
	for _, ns := range []struct {
		name string
		f    **os.File
	}{{"pid", &j.PID}, {"mnt", &j.Mount}, {"uts", &j.UTS}} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", inProc, ns.name))
		if err != nil {
			j.Close()
			return nil, fmt.Errorf("open the node's %s namespace: %w", ns.name, err)
		}
		*ns.f = f
	}
	return &j, nil
}

// Close closes the namespaces' files.
func (j *Joined) Close() {
	for _, f := range []*os.File{j.PID, j.Mount, j.UTS} {
		if f != nil {
			f.Close()
		}
	}
}

// Process is a started node process.
type Process struct {
	Pid int
	// Init says that Pid is a node's init (Spec.PIDNS), PID 1 of the
	// node's own pid namespace.
	Init bool
	done chan struct{}
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
	p := &Process{done: make(chan struct{}), Init: s.PIDNS}
	started := make(chan error, 1)
	if s.PIDNS && s.Join == nil && launch.HasSpawner() {
		go p.spawn(s, path, started)
	} else {
		go p.fork(s, path, started)
	}
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// fork starts s's command (or its init) as a child of a locked thread
// that has joined and unshared the node's namespaces, and waits for it;
// it says on started whether it runs.
func (p *Process) fork(s Spec, path string, started chan<- error) {
	runtime.LockOSThread()
	// Deliberately never unlocked: this thread's namespaces are the node's.
	cmd, err := prepare(s, path)
	var init *initPipes
	if err == nil && (s.PIDNS || s.Join != nil) {
		init, err = asInit(cmd, s, path)
	}
	if err == nil {
		err = cmd.Start()
	}
	if err == nil && init != nil {
		if err = init.handOver(); err != nil {
			_ = cmd.Wait() // the init exits once it has said why
		}
	}
	if err != nil {
		started <- err
		return
	}
	p.Pid = cmd.Process.Pid
	started <- nil
	_ = cmd.Wait() // its state is in ProcessState
	p.st = cmd.ProcessState
	close(p.done)
}

// spawn starts s's command under an init that the run's spawner forks
// (launch.SpawnInit): a locked thread makes the node's UTS and mount
// namespaces, which the init joins with its network one; the thread then
// ends with its goroutine, and the init, a child of the supervisor's,
// lives on. It says on started whether the command runs, then waits for
// the init.
func (p *Process) spawn(s Spec, path string, started chan<- error) {
	proc, err := spawnInit(s, path)
	if errors.Is(err, launch.ErrSpawnerUnavailable) {
		// The spawner is gone, or the kernel refused the descriptors
		// (a user's descriptors in flight are capped, and a node runs
		// as the user): fork and exec the init instead, from a fresh
		// thread (this one's namespaces are made already).
		go p.fork(s, path, started)
		return
	}
	if err != nil {
		started <- err
		return
	}
	p.Pid = proc.Pid
	started <- nil
	p.st, _ = proc.Wait() // a child of this process: Wait gives its state
	close(p.done)
}

// spawnInit has the spawner fork s's init in namespaces this goroutine's
// thread makes (and never leaves: it ends with the goroutine), hands the
// init its configuration and waits for its report.
func spawnInit(s Spec, path string) (*os.Process, error) {
	runtime.LockOSThread() // never unlocked: the thread's namespaces are the node's
	if err := unshare(s); err != nil {
		return nil, err
	}
	var opened []*os.File
	defer func() {
		for _, f := range opened {
			f.Close()
		}
	}()
	open := func(name string, flag int) (*os.File, error) {
		f, err := os.OpenFile(name, flag|unix.O_CLOEXEC, 0)
		if err == nil {
			opened = append(opened, f)
		}
		return f, err
	}
	uts, err := open("/proc/thread-self/ns/uts", os.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("node init: %w", err)
	}
	mnt, err := open("/proc/thread-self/ns/mnt", os.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("node init: %w", err)
	}
	files := launch.SpawnFiles{NetNS: s.NetNS, UTSNS: uts, MountNS: mnt, Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr}
	// As exec.Cmd: a missing standard file is /dev/null.
	for _, std := range []struct {
		f    **os.File
		flag int
	}{{&files.Stdin, os.O_RDONLY}, {&files.Stdout, os.O_WRONLY}, {&files.Stderr, os.O_WRONLY}} {
		if *std.f == nil {
			if *std.f, err = open(os.DevNull, std.flag); err != nil {
				return nil, err
			}
		}
	}
	ip, err := newInitPipes(s, path)
	if err != nil {
		return nil, err
	}
	files.ConfigRead, files.StatusWrite = ip.ends[0], ip.ends[1]
	pid, err := launch.SpawnInit(initFlags(s), s.Setpgid, files)
	if err != nil {
		ip.close()
		return nil, err
	}
	proc, err := os.FindProcess(pid)
	if err != nil { // never on Linux
		ip.close()
		return nil, err
	}
	if err := ip.handOver(); err != nil {
		_, _ = proc.Wait() // the init exits once it has said why
		return nil, err
	}
	return proc, nil
}

// initPipes are the supervisor's ends of a node init's pipes.
type initPipes struct {
	argv0  string
	config []byte   // launch.InitConfig
	cw     *os.File // write end of the init's fd 3
	status *os.File // read end of the init's fd 4
	ends   []*os.File
}

// asInit turns cmd, prepared to run s's command at path, into one that
// runs nsrun's init (launch.InitArgs) as PID 1 of a new pid namespace,
// which then starts the command; the init gets every capability of the
// run's user namespace to mount the node's /proc.
func asInit(cmd *exec.Cmd, s Spec, path string) (*initPipes, error) {
	ip, err := newInitPipes(s, path)
	if err != nil {
		return nil, err
	}
	// The init starts in / of the node's mount namespace; the command in
	// its own folder. Its environment is the command's.
	cmd.Path, cmd.Args, cmd.Dir = "/proc/self/exe", launch.InitArgs(initFlags(s)), "/"
	cmd.ExtraFiles = ip.ends // fds 3 and 4
	// Pdeathsig: the init dies with this thread.
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: s.Setpgid, Cloneflags: syscall.CLONE_NEWPID}
	if s.Join != nil {
		// An exec's starter: in the node's pid namespace already
		// (join). It ends with the node's init, which ends with the
		// supervisor.
		attr = &syscall.SysProcAttr{Setpgid: s.Setpgid}
	}
	if err := credentials(attr, false, 0, 0, os.Getuid() != 0); err != nil {
		ip.close()
		return nil, err
	}
	cmd.SysProcAttr = attr
	return ip, nil
}

// newInitPipes makes the pipes of the init that starts s's command at
// path: its configuration (fd 3) and its report (fd 4).
func newInitPipes(s Spec, path string) (*initPipes, error) {
	if s.MapUser && s.AllCaps {
		return nil, errors.New("node init: a mapped user with every capability is not supported")
	}
	config, err := launch.InitConfig(path, s.Dir, s.UID, s.GID, s.Argv, s.Env)
	if err != nil {
		return nil, err
	}
	cr, cw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("node init: %w", err)
	}
	sr, sw, err := os.Pipe()
	if err != nil {
		cr.Close()
		cw.Close()
		return nil, fmt.Errorf("node init: %w", err)
	}
	return &initPipes{argv0: s.Argv[0], config: config, cw: cw, status: sr, ends: []*os.File{cr, sw}}, nil
}

// handOver, once the init runs, sends it its configuration and waits for
// its report: the command runs, or why it does not.
func (ip *initPipes) handOver() error {
	defer ip.close()
	for _, f := range ip.ends {
		f.Close() // the init's ends
	}
	ip.ends = nil
	_, werr := ip.cw.Write(ip.config)
	ip.cw.Close()
	// An init that failed before it read its configuration (it could
	// not join a namespace) has said why: its report comes first.
	var st initStatus
	if err := json.NewDecoder(ip.status).Decode(&st); err != nil {
		if werr != nil {
			return fmt.Errorf("node init: send its configuration: %w", werr)
		}
		return fmt.Errorf("node init: no report from it: %w", err)
	}
	if st.Error != "" {
		return fmt.Errorf("%s: %w", ip.argv0, errors.New(st.Error))
	}
	return nil
}

func (ip *initPipes) close() {
	for _, f := range append(ip.ends, ip.cw, ip.status) {
		f.Close()
	}
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
func ExitCode(st *os.ProcessState) int { return exitcode.Of(st) }

// prepare joins and unshares the namespaces on the current (locked) thread
// and builds the command.
func prepare(s Spec, path string) (*exec.Cmd, error) {
	if err := nsfd.Enter(s.NetNS); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if s.Join != nil {
		if err := join(s.Join); err != nil {
			return nil, err
		}
	} else if err := unshare(s); err != nil {
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
	if err := credentials(cmd.SysProcAttr, s.MapUser, s.UID, s.GID, s.AllCaps); err != nil {
		return nil, err
	}
	return cmd, nil
}

// unshare gives the current thread UTS and mount namespaces of its own,
// with s's hostname, mounts and hidden folders. A node with an init
// (PIDNS) always gets a mount namespace of its own, for its /proc.
func unshare(s Spec) error {
	flags := unix.CLONE_NEWUTS
	if len(s.Mounts) > 0 || len(s.Hide) > 0 || len(s.Tmpfs) > 0 || s.PIDNS {
		flags |= unix.CLONE_NEWNS
	}
	if err := unix.Unshare(flags); err != nil {
		return fmt.Errorf("unshare UTS and mount namespaces: %w", err)
	}
	if s.Hostname != "" && !s.KeepHostname {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return fmt.Errorf("set hostname %q: %w", s.Hostname, err)
		}
	}
	for _, dir := range s.Tmpfs {
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
			return fmt.Errorf("tmpfs on %s: %w", dir, err)
		}
	}
	return mount(s.Mounts, s.Hide)
}

// join moves the current thread into a node init's mount and UTS
// namespaces, and makes its children start in the init's pid namespace.
// A thread shares its root and working folder with the process's other
// threads until it unshares them, and setns refuses a mount namespace to
// a thread that shares them.
func join(j *Joined) error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare the thread's filesystem attributes: %w", err)
	}
	for _, ns := range []struct {
		f    *os.File
		kind int
		name string
	}{{j.Mount, unix.CLONE_NEWNS, "mount"}, {j.UTS, unix.CLONE_NEWUTS, "UTS"}, {j.PID, unix.CLONE_NEWPID, "pid"}} {
		if err := unix.Setns(int(ns.f.Fd()), ns.kind); err != nil {
			return fmt.Errorf("join the node's %s namespace: %w", ns.name, err)
		}
	}
	return nil
}

// credentials sets who a process runs as: with mapUser, in a nested user
// namespace that maps uid and gid to the run's uid 0, as uid and gid;
// with allCaps, with every capability of its user namespace (ambient).
func credentials(attr *syscall.SysProcAttr, mapUser bool, uid, gid int, allCaps bool) error {
	if allCaps {
		last, err := lastCap()
		if err != nil {
			return err
		}
		for c := uintptr(0); c <= last; c++ {
			attr.AmbientCaps = append(attr.AmbientCaps, c)
		}
	}
	if mapUser {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: 0, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: 0, Size: 1}}
		attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
	}
	return nil
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
		if err := pinAbove(dir); err != nil {
			return err
		}
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

// pinAbove makes each folder above dir that the node could rename or
// remove (its parent is the user's, or writable by anyone: ~/.cache
// above the fallback runtime folder, a folder of the user's given as
// XDG_RUNTIME_DIR) a mount point of the node's mount namespace, by a
// recursive bind onto itself. A process cannot rename or remove a mount
// point of its mount namespace (EBUSY), nor of one it makes from it (its
// copy has the mount too). The covered folder itself is the tmpfs's
// mount point. Without this a node, which runs as the user, renamed a
// folder above its covered run folder, which moved the run's folder
// with it on the host, and could put a folder and a control socket of
// its own where nsrun looks for the run. A symlink above dir is not
// pinned: the node could point it elsewhere
// (see docs/verbs.md: "Who controls a run").
func pinAbove(dir string) error {
	uid := uint32(os.Getuid())
	for p := filepath.Dir(dir); p != "/" && p != "."; p = filepath.Dir(p) {
		var parent unix.Stat_t
		if err := unix.Stat(filepath.Dir(p), &parent); err != nil {
			return fmt.Errorf("pin the folders above %s: %w", dir, err)
		}
		if parent.Uid != uid && parent.Mode&0o002 == 0 {
			continue
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("pin %s, above %s: %w", p, dir, err)
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
