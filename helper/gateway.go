package helper

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Arg0 values of the helper re-executed to create the gateway namespaces.
const (
	// GatewayArg0 runs as the user and starts the namespace holder.
	GatewayArg0 = "nsrun-helper:gateway"
	// HoldArg0 lives in the new namespaces until its stdin closes.
	HoldArg0 = "nsrun-helper:hold"
)

// gateway is a freshly created user + network namespace, owned by the user
// and held by a process until Release.
type gateway struct {
	UserNS, NetNS *os.File
	pid           int
	release       io.Closer
	inter         *exec.Cmd
}

// createGateway creates the user namespace and gateway network namespace
// for uid. The kernel makes the creator's euid the owner of a user
// namespace, and root cloning on the user's behalf would own it itself
// (clone happens before setuid). So the helper starts itself as the user
// (GatewayArg0), and that process creates the namespaces in a child
// (HoldArg0) with the mapping "0 UID 1".
func createGateway(uid, gid int) (*gateway, error) {
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer stdinR.Close()
	cmd := &exec.Cmd{
		Path:   "/proc/self/exe",
		Args:   []string{GatewayArg0},
		Env:    []string{},
		Dir:    "/",
		Stdin:  stdinR,
		Stderr: os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		stdinW.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		stdinW.Close()
		if errors.Is(err, os.ErrPermission) {
			exe, _ := os.Executable()
			return nil, fmt.Errorf("uid %d cannot execute %s (needed to create a user namespace it owns); install nsrun-helper where the user can run it, e.g. `sudo make install`", uid, exe)
		}
		return nil, fmt.Errorf("start namespace creator as uid %d: %w", uid, err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	pid, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		stdinW.Close()
		_ = cmd.Wait()
		return nil, fmt.Errorf("create user namespace as uid %d failed (is user.max_user_namespaces 0?)", uid)
	}
	g := &gateway{pid: pid, release: stdinW, inter: cmd}
	if g.UserNS, err = os.Open(fmt.Sprintf("/proc/%d/ns/user", pid)); err == nil {
		g.NetNS, err = os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	}
	if err != nil {
		g.Release()
		return nil, fmt.Errorf("open gateway namespaces: %w", err)
	}
	owner, err := nsOwner(g.UserNS)
	if err != nil || owner != uid {
		g.Release()
		return nil, fmt.Errorf("user namespace owner is uid %d (%v), expected %d", owner, err, uid)
	}
	return g, nil
}

// Release lets the holder exit; the namespaces live on in their mounts.
func (g *gateway) Release() {
	g.release.Close()
	_ = g.inter.Wait()
	if g.UserNS != nil {
		g.UserNS.Close()
	}
	if g.NetNS != nil {
		g.NetNS.Close()
	}
}

// nsOwner returns the owner uid of the user namespace f (NS_GET_OWNER_UID).
func nsOwner(f *os.File) (int, error) {
	var uid uint32
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), uintptr(unix.NS_GET_OWNER_UID), uintptr(unsafe.Pointer(&uid)))
	if errno != 0 {
		return -1, errno
	}
	return int(uid), nil
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
