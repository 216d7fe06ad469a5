package helper

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Arg0 values of the helper re-executed to create the gateway namespaces.
const (
	// GatewayArg0 runs as the user and starts the namespace holder.
	GatewayArg0 = "nsrun-helper:gateway"
	// HoldArg0 lives in the new namespaces until its stdin closes.
	HoldArg0 = "nsrun-helper:hold"
)

// gatewayTimeout bounds everything root waits for from the processes that
// run as the user (who may stop or ptrace them).
const gatewayTimeout = 10 * time.Second

// gateway is a freshly created user + network namespace, owned by the user,
// held by descriptors the helper opened and verified itself.
type gateway struct {
	UserNS, NetNS *os.File
	release       io.Closer
	inter         *exec.Cmd
	cancel        context.CancelFunc
}

// createGateway creates the user namespace and gateway network namespace
// for uid. The kernel makes the creator's euid the owner of a user
// namespace, and root cloning on the user's behalf would own it itself
// (clone happens before setuid). So the helper starts itself as the user
// (GatewayArg0), and that process creates the namespaces in a child
// (HoldArg0) with the mapping "0 UID 1". What that process reports is not
// trusted: the namespaces the pid leads to are verified (VerifyGateway).
//
// The creator runs as the user, who may ptrace it or take its descriptors
// (pidfd_getfd): it gets nothing of root's. It starts a session of its own
// (no controlling terminal: /dev/tty fails there), its stdin and stdout
// are pipes to the helper, its stderr a pipe the helper reads (at most
// maxCreatorSays bytes, shown quoted), and every other descriptor the
// helper holds, even one inherited from root's shell without
// close-on-exec, is closed at the exec. Before issue 20 it shared root's
// session and terminal and wrote to root's stderr: a user who took that
// descriptor could push keystrokes into root's shell with TIOCSTI.
func createGateway(uid, gid int) (*gateway, error) {
	if err := closeOnExec(); err != nil {
		return nil, err
	}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer stdinR.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		stdinW.Close()
		return nil, err
	}
	defer outR.Close()
	ctx, cancel := context.WithTimeout(context.Background(), gatewayTimeout)
	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args, cmd.Env, cmd.Dir = []string{GatewayArg0}, []string{}, "/"
	said := &capBuffer{max: maxCreatorSays}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, outW, said
	cmd.WaitDelay = time.Second // also bounds the wait for stderr's pipe
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
		Setsid:     true,
		Pdeathsig:  syscall.SIGKILL,
	}
	err = cmd.Start()
	outW.Close()
	if err != nil {
		stdinW.Close()
		cancel()
		if errors.Is(err, os.ErrPermission) {
			exe, _ := os.Executable()
			return nil, fmt.Errorf("uid %d cannot execute %s (needed to create a user namespace it owns); install nsrun-helper where the user can run it, e.g. `sudo make install`", uid, exe)
		}
		return nil, fmt.Errorf("start namespace creator as uid %d: %w", uid, err)
	}
	g := &gateway{release: stdinW, inter: cmd, cancel: cancel}
	_ = outR.SetReadDeadline(time.Now().Add(gatewayTimeout))
	line, err := bufio.NewReader(io.LimitReader(outR, 32)).ReadString('\n')
	pid, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil || pid <= 0 {
		g.Release()
		if s := said.String(); s != "" {
			return nil, fmt.Errorf("create a user namespace as uid %d: it said %q", uid, s)
		}
		return nil, fmt.Errorf("create a user namespace as uid %d: no answer within %s (is user.max_user_namespaces 0?)", uid, gatewayTimeout)
	}
	g.UserNS, err = os.Open(fmt.Sprintf("/proc/%d/ns/user", pid))
	if err == nil {
		g.NetNS, err = os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	}
	if err == nil {
		err = VerifyGateway(g.UserNS, g.NetNS, uid)
	}
	if err != nil {
		g.Release()
		return nil, fmt.Errorf("gateway namespaces of uid %d: %w", uid, err)
	}
	return g, nil
}

// maxCreatorSays bounds what the helper keeps of the creator's stderr.
const maxCreatorSays = 512

// capBuffer keeps the first max bytes written to it and drops the rest:
// what a process of the user's writes costs root no more memory.
type capBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := min(len(p), c.max-len(c.b)); n > 0 {
		c.b = append(c.b, p[:n]...)
	}
	return len(p), nil
}

func (c *capBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.TrimSpace(string(c.b))
}

// closeOnExec marks every descriptor of the helper above stderr
// close-on-exec: the helper's own are already, but one it inherited from
// its caller (root's shell, sudo) may not be, and would pass to the
// processes it starts as the user.
func closeOnExec() error {
	err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("mark descriptors close-on-exec: %w", err)
	}
	// Before Linux 5.11: one by one.
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("mark descriptors close-on-exec: %w", err)
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}
	return nil
}

// Release lets the holder exit (the namespaces live on in their mounts)
// and waits for it, at most gatewayTimeout in all, then kills it.
func (g *gateway) Release() {
	g.release.Close()
	_ = g.inter.Wait()
	g.cancel()
	for _, f := range []*os.File{g.UserNS, g.NetNS} {
		if f != nil {
			f.Close()
		}
	}
}

// VerifyGateway checks, from descriptors the caller opened itself, that
// netNS is a network namespace owned by the user namespace userNS, that
// userNS is a child of the initial user namespace (the helper's own, as
// real root) and that uid owns it. This is what makes a gateway a gateway:
// the pid a user's process reports, or a path the user can swap, could lead
// to the host's own namespace or anybody else's.
func VerifyGateway(userNS, netNS *os.File, uid int) error {
	if err := nsType(userNS, unix.CLONE_NEWUSER); err != nil {
		return err
	}
	if err := nsType(netNS, unix.CLONE_NEWNET); err != nil {
		return err
	}
	owner, err := nsIoctlFile(netNS, unix.NS_GET_USERNS)
	if err != nil {
		return fmt.Errorf("owner of the network namespace: %w", err)
	}
	defer owner.Close()
	if !sameFile(owner, userNS) {
		return errors.New("the network namespace does not belong to the user namespace the user created: refusing it")
	}
	parent, err := nsIoctlFile(userNS, unix.NS_GET_PARENT)
	if err != nil {
		return fmt.Errorf("parent of the user namespace: %w (the initial user namespace has none): refusing it", err)
	}
	defer parent.Close()
	initial, err := os.Open("/proc/self/ns/user")
	if err != nil {
		return err
	}
	defer initial.Close()
	if !sameFile(parent, initial) {
		return errors.New("the user namespace is not a child of the initial user namespace: refusing it")
	}
	got, err := unix.IoctlGetUint32(int(userNS.Fd()), unix.NS_GET_OWNER_UID)
	if err != nil {
		return fmt.Errorf("owner of the user namespace: %w", err)
	}
	if int(got) != uid {
		return fmt.Errorf("the user namespace is owned by uid %d, not %d: refusing it", got, uid)
	}
	return nil
}

func nsType(f *os.File, want int) error {
	got, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil || got != want {
		return fmt.Errorf("%s is not a namespace of the expected type (%#x): refusing it", f.Name(), want)
	}
	return nil
}

func nsIoctlFile(f *os.File, req uint) (*os.File, error) {
	fd, err := unix.IoctlRetInt(int(f.Fd()), req)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "namespace"), nil
}

// sameFile compares two descriptors by device and inode, as namespaces are
// compared.
func sameFile(a, b *os.File) bool {
	var sa, sb unix.Stat_t
	return unix.Fstat(int(a.Fd()), &sa) == nil && unix.Fstat(int(b.Fd()), &sb) == nil &&
		sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// GatewayMain is the re-executed helper running as the user: it creates the
// namespaces in a holder child, prints the holder's pid and waits for it.
func GatewayMain() int {
	uid, gid := os.Getuid(), os.Getgid()
	hold := &exec.Cmd{
		Path:   "/proc/self/exe",
		Args:   []string{HoldArg0},
		Env:    []string{},
		Dir:    "/",
		Stdin:  os.Stdin,
		Stderr: os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}},
			Pdeathsig:   syscall.SIGKILL,
		},
	}
	if err := hold.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "nsrun-helper: create user and network namespaces:", err)
		return 1
	}
	fmt.Println(hold.Process.Pid)
	_ = hold.Wait()
	return 0
}

// HoldMain keeps the new namespaces alive until stdin closes.
func HoldMain() int {
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}
