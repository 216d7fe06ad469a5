package supervise

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/nsfd"
)

// capture is the nsrun-capture process writing one pcap file per captured
// node link.
type capture struct {
	cmd      *exec.Cmd
	stopOnce sync.Once
}

// startCapture opens a packet socket on every captured node's bridge port
// (in the bridge namespace: it sees each frame to and from the node) and
// hands them to nsrun-capture, which writes DIR/NODE.pcap. It returns once
// every file has its header, before any node starts.
func (s *supervisor) startCapture() (*capture, error) {
	var socks []*os.File
	var files []string
	defer func() {
		for _, f := range socks {
			f.Close()
		}
	}()
	wired := false
	for _, n := range s.allNodes() {
		for _, l := range n.cfg.Links {
			if l.Capture == "" {
				continue
			}
			if !wired { // capture starts on every link before any node does
				if err := s.net.waitAllWired(); err != nil {
					return nil, err
				}
				wired = true
			}
			done := step(s.log, "open packet socket", "node", n.cfg.Name, "port", l.Port)
			f, err := packetSocket(s.net.bridgeNS, l.Port)
			done(err)
			if err != nil {
				return nil, fmt.Errorf("capture %s: %w", n.cfg.Name, err)
			}
			socks = append(socks, f)
			files = append(files, l.Capture)
		}
	}
	if len(files) == 0 {
		return nil, nil
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
	done := step(s.log, "start nsrun-capture", "files", strings.Join(files, " "))
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
	return &capture{cmd: cmd}, nil
}

// captureStopTimeout bounds how long nsrun-capture may take to write out
// what it holds once asked to stop; it needs about two ring timeouts.
const captureStopTimeout = 3 * time.Second

// stop ends the capture, leaving every file on a whole record, and
// returns once it has exited. It may be called more than once, and from
// more than one goroutine.
func (c *capture) stop() {
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
