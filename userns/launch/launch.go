// Package launch puts nsrun into a run's namespaces before the Go runtime
// starts, so that a run costs one start of the Go runtime, not two.
//
// Go cannot create or join a user namespace once its runtime runs (it has
// threads before main). So, as runc's libcontainer/nsenter does, a C
// constructor runs first, while the process is still single-threaded. For
// the command lines that start a run (`nsrun [flags] -- CMD`, `nsrun up`)
// it:
//
//   - joins the user namespace of nsrun-helper's gateway when the helper is
//     installed and --isolated is not given;
//   - clones the supervisor: a child in a new pid and mount namespace (and,
//     unless joined, a new user namespace mapping the caller's uid and gid to
//     themselves, or to 0 with --root), which continues into the Go runtime
//     as PID 1 of the run;
//   - gives the supervisor a network namespace of its own, which becomes
//     the run's bridge namespace;
//   - stays behind as the launcher, in plain C, in the caller's network
//     namespace: it forwards signals to the supervisor, binds published
//     ports (on 127.0.0.1 unless the file names an address) when the supervisor asks (BindPort), and exits with
//     the supervisor's exit code. It never runs Go.
//
// Every other command line (ls, net, --help, a bad flag, a first word that
// is neither a command nor a path and follows no --) is left alone, and Go
// handles it as usual.
//
// A binary other than nsrun that links this package (a test binary that
// imports package nstest) serves as nsrun only when asked: it sets
// nsrun_launch_on_request from a C constructor of higher priority, and the
// launcher then acts only when EnvAsNsrun is set in the environment. Get reports what happened. The flag rules of the C
// side mirror package flag's, and a test holds the two together.
package launch

/*
#cgo CFLAGS: -Wall -Wextra -O2
#include <stdlib.h>
#include "launch.h"

static struct nsrun_launch *nsrun_launch_get(void) { return &nsrun_launch_state; }
static const char *nsrun_node_init_marker(void) { return NSRUN_NODE_INIT_MARKER; }
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// EnvAsNsrun, set in the environment of a binary that serves as nsrun on
// request (see the package comment), makes it act as nsrun.
const EnvAsNsrun = "NSRUN_AS_NSRUN" // NSRUN_AS_NSRUN in launch.h

// Kind is the kind of command line.
type Kind int

const (
	// None is any command line that starts no run.
	None Kind = C.NSRUN_KIND_NONE
	// Run is `nsrun [flags] -- CMD`.
	Run Kind = C.NSRUN_KIND_RUN
	// Up is `nsrun up`.
	Up Kind = C.NSRUN_KIND_UP
)

// State is what the launcher did.
type State struct {
	Kind Kind
	// Launched is set in the supervisor: this process is PID 1 of the run's
	// pid namespace, with all capabilities in the run's user namespace.
	Launched bool
	// Joined: the user namespace is nsrun-helper's gateway's.
	Joined bool
	// Root: uid 0 of the user namespace (--root); otherwise, when not
	// joined, the caller's own uid and gid.
	Root bool
	// Terminal: stdin is the caller's foreground terminal, which delivers
	// SIGINT and SIGQUIT to the command itself.
	Terminal bool
	// UID and GID are the caller's on the host.
	UID, GID int
	// NsrunPid is the launcher's pid, the one the caller sees.
	NsrunPid int
	// UnprivPort is the lowest port BindPort can bind (the caller's
	// net.ipv4.ip_unprivileged_port_start; 0 for root outside the
	// gateway); -1 when unknown, or for a command line other than `up`.
	UnprivPort int
	// Err says why launching failed; the process is then still the
	// caller's (joined to the gateway's user namespace if that step
	// succeeded).
	Err error
}

// Get returns what the launcher did.
func Get() State {
	s := C.nsrun_launch_get()
	st := State{
		Kind:       Kind(s.kind),
		Launched:   s.launched != 0,
		Joined:     s.joined != 0,
		Root:       s.root != 0,
		Terminal:   s.terminal != 0,
		UID:        int(s.uid),
		GID:        int(s.gid),
		NsrunPid:   int(s.nsrun_pid),
		UnprivPort: int(s.unpriv_port),
	}
	if s.err_step != nil {
		st.Err = fmt.Errorf("%s: %w", C.GoString(s.err_step), syscall.Errno(s.err_errno))
	}
	return st
}

// Decide runs the launcher's reading of a command line (args without the
// program name): which kind of run it starts, and its --root and --isolated.
func Decide(args []string) (kind Kind, root, isolated bool) {
	argv := make([]*C.char, len(args)+2)
	argv[0] = C.CString("nsrun")
	for i, a := range args {
		argv[i+1] = C.CString(a)
	}
	defer func() {
		for _, p := range argv[:len(args)+1] {
			C.free(unsafe.Pointer(p))
		}
	}()
	var r, iso C.int
	k := C.nsrun_launch_decide(C.int(len(args)+1), &argv[0], &r, &iso)
	return Kind(k), r != 0, iso != 0
}

// BindPort asks the launcher, which stays in the caller's network
// namespace, for a TCP socket listening on addr there (an IPv6 one is
// IPv6-only). Only the supervisor may call it, one call at a time. The
// error is the errno of socket, bind or listen (EADDRINUSE, EACCES,
// EADDRNOTAVAIL) where one failed.
func BindPort(addr netip.AddrPort) (*os.File, error) { return bindPort(addr, false) }

// BindUDPPort is BindPort for a UDP socket bound on addr.
func BindUDPPort(addr netip.AddrPort) (*os.File, error) { return bindPort(addr, true) }

func bindPort(addr netip.AddrPort, udp bool) (*os.File, error) {
	fd := int(C.nsrun_launch_get().port_fd)
	if fd < 0 {
		return nil, errors.New("no launcher to bind published ports")
	}
	var req C.struct_nsrun_port_req
	if udp {
		req.udp = 1
	}
	req.family = 4
	if addr.Addr().Is6() {
		req.family = 6
	}
	req.port = C.ushort(addr.Port())
	ip := addr.Addr().AsSlice()
	for i, b := range ip {
		req.addr[i] = C.uchar(b)
	}
	b := C.GoBytes(unsafe.Pointer(&req), C.int(unsafe.Sizeof(req)))
	if _, err := unix.Write(fd, b); err != nil {
		return nil, fmt.Errorf("ask the launcher: %w", err)
	}
	var reply [4]byte
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(fd, reply[:], oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil || n != len(reply) {
		return nil, fmt.Errorf("hear from the launcher: %v", err)
	}
	if errno := binary.NativeEndian.Uint32(reply[:]); errno != 0 {
		return nil, syscall.Errno(errno)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("the launcher sent no socket: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("the launcher sent no socket: %v", err)
	}
	return os.NewFile(uintptr(fds[0]), addr.String()), nil
}

// CallerPIDNS returns the pid namespace of the launcher (the caller's,
// on the host), opened before the run's was made; nil outside the
// supervisor or where /proc could not give it. Each call returns a
// descriptor of its own, which the caller closes.
func CallerPIDNS() *os.File {
	fd := int(C.nsrun_launch_get().caller_pidns_fd)
	if !Get().Launched || fd < 0 {
		return nil
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	return os.NewFile(uintptr(dup), "caller's pid namespace")
}

// earlySignals are the signals the launcher forwards (userns.ForwardedSignals
// and userns.TerminalSignals).
var earlySignals = []os.Signal{syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2}

// NodeInitMarker is argv[1] of a node's init (package guest): nsrun run
// again, which runs the node's init in C from the launcher's constructor
// (nodeinit.c) and never starts the Go runtime. Its arguments are
// InitArgs.
var NodeInitMarker = C.GoString(C.nsrun_node_init_marker())

// InitFlags say how a node's init starts its command.
type InitFlags int

// The flags of a node's init (launch.h).
const (
	// InitMapUser: the command runs in a user namespace of its own that
	// maps the given uid and gid to uid and gid 0 of the run's.
	InitMapUser InitFlags = C.NSRUN_INIT_MAP_USER
	// InitAllCaps: the command keeps every capability of the run's user
	// namespace (ambient); otherwise none unless it runs as uid 0.
	InitAllCaps InitFlags = C.NSRUN_INIT_ALL_CAPS
	// InitSetpgid: the command runs in a process group of its own, to
	// which signals are passed on.
	InitSetpgid InitFlags = C.NSRUN_INIT_SETPGID
	// InitTerminal: SIGINT and SIGQUIT reach the command from the
	// terminal, and the init does not pass them on.
	InitTerminal InitFlags = C.NSRUN_INIT_TERMINAL
	// InitExec: not a node's init but the starter of a command run in a
	// running node (`nsrun net exec`): it mounts nothing and passes every
	// signal it gets on.
	InitExec InitFlags = C.NSRUN_INIT_EXEC
	// InitSharedProc: keep the run's /proc rather than mount the node's.
	InitSharedProc InitFlags = C.NSRUN_INIT_SHARED_PROC
)

// InitArgs is the argv of a node's init with flags.
func InitArgs(flags InitFlags) []string {
	name := "nsrun-init"
	if flags&InitExec != 0 {
		name = "nsrun-exec"
	}
	return []string{name, NodeInitMarker, strconv.Itoa(int(flags))}
}

// InitConfig is what a node's init reads on its fd 3 to its end: it
// starts the command argv at path with environment env, in dir ("" keeps
// the init's, /), as uid and gid with InitMapUser. (Not in its argv, where
// ps and pkill -f would find the command's words twice.) Its fd 4 is the
// write end of a pipe on which it reports {"pid":N} once the command runs,
// or {"error":"..."}.
// A NUL byte in a field is refused, as exec refuses it: it would end the
// field there and shift the rest.
func InitConfig(path, dir string, uid, gid int, argv, env []string) ([]byte, error) {
	var b []byte
	head := []string{path, dir, strconv.Itoa(uid), strconv.Itoa(gid), strconv.Itoa(len(argv))}
	for _, list := range []struct {
		what   string
		fields []string
	}{{"path or folder", head[:2]}, {"", head[2:]}, {"argument", argv}, {"environment variable", env}} {
		for _, f := range list.fields {
			if strings.IndexByte(f, 0) >= 0 {
				return nil, fmt.Errorf("%s %q contains a NUL byte", list.what, f)
			}
			b = append(append(b, f...), 0)
		}
	}
	return b, nil
}

// The spawner's end, once known: reaped once (its pid may be another
// process's after that, a node's init among them), and no longer asked.
var (
	spawnerReap sync.Mutex
	spawnerGone atomic.Bool
)

// reapSpawner collects the spawner's exit status if it has ended (killed
// by a process of the run's user, or out of memory), so that it does not
// stay a zombie under the supervisor, and marks it gone.
func reapSpawner() {
	spawnerReap.Lock()
	defer spawnerReap.Unlock()
	pid := int(C.nsrun_launch_get().spawner_pid)
	if pid <= 0 || spawnerGone.Load() {
		return
	}
	if w, err := unix.Wait4(pid, nil, unix.WNOHANG, nil); err == nil && w == pid {
		spawnerGone.Store(true)
	}
}

// HasSpawner says whether this process is a supervisor with a spawner
// (SpawnInit) that has not been found dead.
func HasSpawner() bool { return C.nsrun_launch_get().spawner_fd >= 0 && !spawnerGone.Load() }

// ErrSpawnerUnavailable wraps SpawnInit's errors where the spawner
// cannot take the request (there is none, it is gone, or the kernel
// refused the descriptors: a user's descriptors in flight are capped at
// RLIMIT_NOFILE, and a node runs as the user): the caller starts the
// init itself.
var ErrSpawnerUnavailable = errors.New("the spawner is unavailable")

// SpawnFiles are the descriptors a node's init forked by the spawner gets:
// the node's namespaces to join, its fds 0-2, and the init's ends of its
// configuration pipe (fd 3) and status pipe (fd 4). SpawnInit does not
// close them.
type SpawnFiles struct {
	NetNS, UTSNS, MountNS   *os.File
	Stdin, Stdout, Stderr   *os.File
	ConfigRead, StatusWrite *os.File
}

// SpawnInit has the spawner (spawner.c), a small C process the supervisor
// forked before Go started, fork a node's init with flags, in a process
// group of its own with setpgid: PID 1 of a new pid namespace, a child of
// the supervisor, in the namespaces of f. It returns the init's pid in the
// run's pid namespace. The init then reads its configuration (InitConfig)
// as an exec'd one does. Any goroutine may call it.
func SpawnInit(flags InitFlags, setpgid bool, f SpawnFiles) (int, error) {
	sock := int(C.nsrun_launch_get().spawner_fd)
	if !HasSpawner() {
		return 0, ErrSpawnerUnavailable
	}
	rr, rw, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("spawn a node's init: %w", err)
	}
	defer rr.Close()
	files := [C.NSRUN_SPAWN_NFDS]*os.File{ // in enum nsrun_spawn_fd's order
		C.NSRUN_SPAWN_REPLY: rw, C.NSRUN_SPAWN_NET: f.NetNS, C.NSRUN_SPAWN_UTS: f.UTSNS, C.NSRUN_SPAWN_MNT: f.MountNS,
		C.NSRUN_SPAWN_STDIN: f.Stdin, C.NSRUN_SPAWN_STDOUT: f.Stdout, C.NSRUN_SPAWN_STDERR: f.Stderr,
		C.NSRUN_SPAWN_CONFIG: f.ConfigRead, C.NSRUN_SPAWN_STATUS: f.StatusWrite,
	}
	var fds [C.NSRUN_SPAWN_NFDS]int
	for i, file := range files {
		if file == nil {
			rw.Close()
			return 0, fmt.Errorf("spawn a node's init: descriptor %d missing", i)
		}
		fds[i] = int(file.Fd())
	}
	var req C.struct_nsrun_spawn_req
	req.flags = C.int(flags)
	if setpgid {
		req.setpgid = 1
	}
	head := C.GoBytes(unsafe.Pointer(&req), C.int(unsafe.Sizeof(req)))
	err = unix.Sendmsg(sock, head, unix.UnixRights(fds[:]...), nil, 0)
	runtime.KeepAlive(f)
	rw.Close()
	if err != nil {
		reapSpawner()
		return 0, fmt.Errorf("%w: send the request: %w", ErrSpawnerUnavailable, err)
	}
	var reply [4]byte
	if _, err := io.ReadFull(rr, reply[:]); err != nil {
		// It died with the request: if it had forked the init, the
		// init reads no configuration and exits.
		reapSpawner()
		return 0, fmt.Errorf("%w: no reply: %w", ErrSpawnerUnavailable, err)
	}
	pid := int(int32(binary.NativeEndian.Uint32(reply[:])))
	if pid <= 0 {
		return 0, fmt.Errorf("%w: clone: %w", ErrSpawnerUnavailable, syscall.Errno(-pid))
	}
	return pid, nil
}

// early hears earlySignals in the supervisor from this package's init on;
// nil elsewhere. It is state of the process, as
// its signals are.
var early chan os.Signal

func init() {
	s := C.nsrun_launch_get()
	if s.launched == 0 {
		return
	}
	early = make(chan os.Signal, 32)
	signal.Notify(early, earlySignals...)
	// One the C code caught before the Go runtime did (the kernel drops a
	// signal to PID 1 of a pid namespace while its action is the default).
	if sig := C.nsrun_launch_early_signal(); sig != 0 {
		early <- syscall.Signal(sig)
	}
	// The launcher holds what it gets until it hears that Go listens: a
	// port request of family 0, which it does not answer.
	word(C.NSRUN_WORD_LISTENING, 0)
}

// word sends the launcher a word of the supervisor's (launch.h's
// NSRUN_WORD_*), in the supervisor only.
func word(kind C.ushort, arg byte) {
	s := C.nsrun_launch_get()
	if s.launched == 0 || s.port_fd < 0 {
		return
	}
	var req C.struct_nsrun_port_req
	req.port = kind
	req.addr[0] = C.uchar(arg)
	_, _ = unix.Write(int(s.port_fd), C.GoBytes(unsafe.Pointer(&req), C.int(unsafe.Sizeof(req))))
}

// Exiting tells the launcher, in the supervisor, that it is about to exit
// with code. An exit of 2 the supervisor did not announce, after a stop
// signal, is Go's (its default action for a signal heard before
// signal.Notify, in PID 1 of a pid namespace, which cannot die by it),
// and the launcher reports the signal instead. Elsewhere it does nothing.
func Exiting(code int) { word(C.NSRUN_WORD_EXITING, byte(code)) }

// Signals returns, in the supervisor, the channel on
// which it has heard the signals the launcher forwards (SIGINT, SIGQUIT,
// SIGTERM, SIGHUP, SIGUSR1, SIGUSR2) since before the Go runtime started,
// so that a Ctrl-C in a run's first milliseconds stops it: the caller
// adds the other signals it wants with signal.Notify on the same channel.
// Elsewhere, a new channel that has heard nothing.
func Signals() chan os.Signal {
	if early == nil {
		return make(chan os.Signal, 32)
	}
	return early
}

// LauncherGone returns a channel closed when the launcher dies, even by
// SIGKILL; nil outside the supervisor. The kernel sends the supervisor
// NSRUN_LAUNCHER_GONE then (its parent-death signal, which ends the
// process until Go listens for it); a launcher that died before this call
// is seen by its end of the port socket having hung up.
func LauncherGone() <-chan struct{} {
	fd := int(C.nsrun_launch_get().port_fd)
	if !Get().Launched || fd < 0 {
		return nil
	}
	gone := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.Signal(C.NSRUN_LAUNCHER_GONE))
	// POLLRDHUP only: a reply to BindPort does not count.
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
	if n, _ := unix.Poll(fds, 0); n > 0 {
		close(gone)
		return gone
	}
	go func() {
		<-sig
		close(gone)
	}()
	return gone
}
