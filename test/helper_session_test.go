package test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	nshelper "github.com/nsrun/nsrun/helper"
)

// openPty opens a new pseudo-terminal: its master and its slave, and the
// slave's path. Both are closed when the test ends.
func openPty(t *testing.T) (master, slave *os.File, name string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	name = "/dev/pts/" + strconv.Itoa(int(n))
	s, err := os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s, name
}

// catchExec stops (SIGSTOP), the moment it execs, the first process of
// uid whose command line is argv0 alone, and sends its pid. It listens to
// the kernel's process events (the proc connector, root only), so it sees
// a process that lives a few milliseconds. It stops when the test ends.
func catchExec(t *testing.T, uid int, argv0 string) <-chan int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		t.Fatal(err)
	}
	const cnIdxProc, cnValProc, mcastListen, eventExec = 1, 1, 1, 2
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc, Pid: uint32(os.Getpid())}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	// nlmsghdr, cn_msg {idx, val, seq, ack, len, flags}, op
	msg := make([]byte, 16+20+4)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], unix.NLMSG_DONE)
	binary.NativeEndian.PutUint32(msg[12:], uint32(os.Getpid()))
	binary.NativeEndian.PutUint32(msg[16:], cnIdxProc)
	binary.NativeEndian.PutUint32(msg[20:], cnValProc)
	binary.NativeEndian.PutUint16(msg[32:], 4)
	binary.NativeEndian.PutUint32(msg[36:], mcastListen)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	ch := make(chan int, 1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	t.Cleanup(func() { close(done); unix.Close(fd); wg.Wait() })
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200000})
	want := []byte(argv0 + "\x00")
	go func() {
		defer wg.Done()
		buf := make([]byte, 1<<16)
		for {
			select {
			case <-done:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue // a timeout, or events lost (ENOBUFS) on a busy machine
			}
			for off := 0; off+16 <= n; {
				l := int(binary.NativeEndian.Uint32(buf[off:]))
				if l < 16 || off+l > n {
					break
				}
				m := buf[off : off+l]
				off += (l + 3) &^ 3
				// proc_event after nlmsghdr (16) and cn_msg (20): what, cpu,
				// timestamp, then exec's process_pid, process_tgid
				if len(m) < 16+20+16+8 || binary.NativeEndian.Uint32(m[36:]) != eventExec {
					continue
				}
				pid := int(binary.NativeEndian.Uint32(m[56:]))
				cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				var st unix.Stat_t
				if err != nil || !bytes.Equal(cmdline, want) || unix.Stat(fmt.Sprintf("/proc/%d", pid), &st) != nil || int(st.Uid) != uid {
					continue
				}
				_ = unix.Kill(pid, unix.SIGSTOP)
				ch <- pid
				return
			}
		}
	}()
	return ch
}

// statFields returns the fields of /proc/PID/stat after the command name:
// [0] is the state, [3] the session, [4] the controlling terminal.
func statFields(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
}

// TestHelperCreatorGetsNothingOfRoots: the attack of issue 20 item 1. Root
// runs `nsrun-helper install` on a terminal (a pty the test owns, the
// helper's controlling terminal, as root's shell's is), with a descriptor
// of a root-only file open without close-on-exec (as a shell may leave
// one). The namespace creator that install starts as the user is caught
// the moment it execs; it must be in a session of its own, without a
// controlling terminal (so /dev/tty and TIOCSTI lead nowhere), and every
// descriptor the user takes from it with pidfd_getfd (as the review did,
// before it injected keystrokes into root's shell with TIOCSTI) must be
// neither a terminal nor anything of root's: pipes to the helper only.
func TestHelperCreatorGetsNothingOfRoots(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	master, slave, ptsName := openPty(t)
	secretPath := filepath.Join(binDir, fmt.Sprintf("root-secret-%d", os.Getpid()))
	if err := os.WriteFile(secretPath, []byte("root's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(secretPath) })
	secret, err := os.Open(secretPath)
	if err != nil {
		t.Fatal(err)
	}
	defer secret.Close()
	caught := catchExec(t, u.UID, nshelper.GatewayArg0)

	h.mu.Lock()
	h.installed[u.Name] = true
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := h.helperCmd(ctx, filepath.Join(binDir, "nsrun-helper"), "install", "--user", u.Name, "--resolver", "127.0.0.1:15399")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.ExtraFiles = []*os.File{secret} // fd 3, inherited without close-on-exec
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	var out bytes.Buffer
	var outMu sync.Mutex
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			outMu.Lock()
			out.Write(buf[:n])
			outMu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	helperPid := cmd.Process.Pid
	var pid int
	select {
	case pid = <-caught:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("the namespace creator never ran")
	}
	stat := statFields(t, pid)
	if stat[3] == strconv.Itoa(helperPid) || stat[4] != "0" {
		t.Errorf("the creator (pid %d) is in session %s (the helper's is %d) with controlling terminal %s; want a session of its own and none", pid, stat[3], helperPid, stat[4])
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, e := range fds {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		// (Descriptors the creator opened itself, its Go runtime's reads
		// of the cgroup's CPU quota, are its own.)
		std := e.Name() == "0" || e.Name() == "1" || e.Name() == "2"
		if std && !strings.HasPrefix(target, "pipe:") || target == ptsName || target == secretPath || target == "/dev/tty" {
			t.Errorf("the creator holds fd %s: %s (want pipes to the helper, and nothing of root's)", e.Name(), target)
		}
	}
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	stolen := run(t, u.command(sctx, filepath.Join(binDir, "probe"), "steal-fds", strconv.Itoa(pid)))
	scancel()
	if stolen.Code != 0 || !strings.Contains(stolen.Stdout, "fd 0 pipe:") {
		t.Errorf("probe steal-fds %d as %s (the attack's first step must work): exit %d %q %q", pid, u.Name, stolen.Code, stolen.Stdout, stolen.Stderr)
	}
	if strings.Contains(stolen.Stdout, " tty") || strings.Contains(stolen.Stdout, ptsName) || strings.Contains(stolen.Stdout, secretPath) {
		t.Errorf("the user took a terminal or a file of root's from the creator:\n%s", stolen.Stdout)
	}
	_ = unix.Kill(pid, unix.SIGCONT)
	werr := cmd.Wait()
	slave.Close()
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
	}
	outMu.Lock()
	defer outMu.Unlock()
	if werr != nil {
		t.Fatalf("install on the terminal: %v\n%s", werr, out.String())
	}
}
