// Package capture records a run's links to pcap files (`nsrun up
// --capture DIR`), as alpy does: one AF_PACKET socket per captured link,
// bound to the link's bridge port in the bridge namespace (so it sees
// every frame to and from the node), handed to the nsrun-capture process,
// which writes one pcap file per link.
package capture

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/internal/runlog"
)

// Link is one link to capture.
type Link struct {
	Node string // the node's name, for errors and the log
	Port string // the link's bridge port, in the bridge namespace
	File string // the pcap file to write
}

// Capture is the nsrun-capture process writing one pcap file per
// captured link.
type Capture struct {
	cmd      *exec.Cmd
	stopOnce sync.Once
}

// Start opens a packet socket on every link's bridge port in the bridge
// namespace ns and hands them to nsrun-capture, which writes each link's
// file. It returns once every file has its header, so that a node started
// afterwards has all its traffic recorded; every port must exist by then.
// With no links it starts nothing and returns nil, which Stop accepts.
func Start(ns *os.File, links []Link, log *slog.Logger) (*Capture, error) {
	if len(links) == 0 {
		return nil, nil
	}
	var socks []*os.File
	var files []string
	defer func() {
		for _, f := range socks {
			f.Close()
		}
	}()
	for _, l := range links {
		done := runlog.Step(log, "open packet socket", "node", l.Node, "port", l.Port)
		f, err := packetSocket(ns, l.Port)
		done(err)
		if err != nil {
			return nil, fmt.Errorf("capture %s: %w", l.Node, err)
		}
		socks = append(socks, f)
		files = append(files, l.File)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// Next to nsrun; else (a Go test binary serving as nsrun, package
	// nstest) on PATH.
	bin := filepath.Join(filepath.Dir(exe), "nsrun-capture")
	if _, err := os.Stat(bin); err != nil {
		found, perr := exec.LookPath("nsrun-capture")
		if perr != nil {
			return nil, fmt.Errorf("capture: %s not found, nor nsrun-capture on PATH; it is installed next to nsrun (sudo make install)", bin)
		}
		bin = found
	}
	cmd := exec.Command(bin, files...)
	cmd.Args[0] = "nsrun-capture"
	cmd.ExtraFiles = socks
	cmd.Stderr = os.Stderr
	// No Pdeathsig: it would fire when the forking thread exits, and this
	// thread may later be locked by a node and die with it. The run's pid
	// namespace ends nsrun-capture with the supervisor.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	done := runlog.Step(log, "start nsrun-capture", "files", strings.Join(files, " "))
	if err := cmd.Start(); err != nil {
		done(err)
		return nil, fmt.Errorf("capture: %w", err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		err := errors.New("nsrun-capture did not start")
		done(err)
		return nil, err
	}
	done(nil)
	return &Capture{cmd: cmd}, nil
}

// captureStopTimeout bounds how long nsrun-capture may take to write out
// what it holds once asked to stop; it needs about two ring timeouts.
const captureStopTimeout = 3 * time.Second

// Stop ends the capture, leaving every file on a whole record, and
// returns once nsrun-capture has exited. It may be called more than once,
// from more than one goroutine, and on a nil Capture.
func (c *Capture) Stop() {
	if c == nil {
		return
	}
	c.stopOnce.Do(func() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		kill := time.AfterFunc(captureStopTimeout, func() { _ = c.cmd.Process.Kill() })
		_ = c.cmd.Wait()
		kill.Stop()
	})
}

// packetSocket opens an AF_PACKET socket bound to ifname in ns.
func packetSocket(ns *os.File, ifname string) (*os.File, error) {
	var f *os.File
	err := nsfd.Do(ns, func() error {
		iface, err := netInterface(ifname)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: iface}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket to %s: %w", ifname, err)
		}
		f = os.NewFile(uintptr(fd), "capture-"+ifname)
		return nil
	})
	return f, err
}

// netInterface returns the index of the interface name in the current
// thread's network namespace (not /sys, which shows its mounter's).
func netInterface(name string) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("interface %s: %w", name, err)
	}
	return int(ifr.Uint32()), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
