package doctor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/install"
)

// ProbeArg is the argument (after `doctor`) that makes nsrun the probe's
// child (ProbeChild).
const ProbeArg = "--probe-child"

// probeError is an error of the probe's child, kept with its errno across
// the pipe.
type probeError struct {
	Msg   string `json:"msg"`
	Errno int    `json:"errno,omitempty"`
}

func (e *probeError) Error() string { return e.Msg }

// Unwrap makes errors.Is(err, unix.EPERM) work.
func (e *probeError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return unix.Errno(e.Errno)
}

func toProbeError(err error) *probeError {
	if err == nil {
		return nil
	}
	pe := &probeError{Msg: err.Error()}
	var errno unix.Errno
	if errors.As(err, &errno) {
		pe.Errno = int(errno)
	}
	return pe
}

func fromProbeError(pe *probeError) error {
	if pe == nil {
		return nil
	}
	return pe
}

// probeReport is what the child writes on its stdout.
type probeReport struct {
	MountProc   *probeError `json:"mount_proc,omitempty"`
	Sethostname *probeError `json:"sethostname,omitempty"`
	Netem       *probeError `json:"netem,omitempty"`
	Tbf         *probeError `json:"tbf,omitempty"`
}

// Host is the Env of this machine or container: self is the nsrun
// executable the probe's child runs (/proc/self/exe).
func Host(self string) Env {
	return Env{
		ReadFile: os.ReadFile,
		Getenv:   os.Getenv,
		OpenTun: func() error {
			f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
			if err != nil {
				return err
			}
			return f.Close()
		},
		Probe:  func() Probe { return runProbe(self) },
		Helper: func() error { _, err := install.Load(os.Getuid()); return err },
	}
}

// runProbe starts self as the probe's child in fresh user (this user as
// root), mount, pid, UTS and network namespaces and reads its report.
func runProbe(self string) Probe {
	cmd := exec.Command(self, "doctor", ProbeArg)
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return Probe{Clone: fmt.Errorf("the probe in new namespaces failed: %v: %s", err, ee.Stderr)}
		}
		return Probe{Clone: fmt.Errorf("create user, mount, pid, UTS and network namespaces: %w", err)}
	}
	var r probeReport
	if err := json.Unmarshal(out, &r); err != nil {
		return Probe{Clone: fmt.Errorf("read the probe's report: %w", err)}
	}
	return Probe{MountProc: fromProbeError(r.MountProc), Sethostname: fromProbeError(r.Sethostname),
		Netem: fromProbeError(r.Netem), Tbf: fromProbeError(r.Tbf)}
}

// ProbeChild is the probe's child, PID 1 of its own namespaces: it tries
// what a run does and reports on w.
func ProbeChild(w io.Writer) error {
	var r probeReport
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	r.MountProc = toProbeError(unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""))
	r.Sethostname = toProbeError(unix.Sethostname([]byte("nsrun-doctor")))
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		r.Netem, r.Tbf = toProbeError(err), toProbeError(err)
	} else {
		attrs := netlink.QdiscAttrs{LinkIndex: lo.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT}
		netem := netlink.NewNetem(attrs, netlink.NetemQdiscAttrs{Latency: 1000})
		if err := netlink.QdiscAdd(netem); err != nil {
			r.Netem = toProbeError(fmt.Errorf("add a netem qdisc: %w", err))
		} else {
			_ = netlink.QdiscDel(netem)
		}
		tbf := &netlink.Tbf{QdiscAttrs: attrs, Rate: 1 << 20, Limit: 1 << 16, Buffer: 1 << 14}
		if err := netlink.QdiscAdd(tbf); err != nil {
			r.Tbf = toProbeError(fmt.Errorf("add a tbf qdisc: %w", err))
		}
	}
	return json.NewEncoder(w).Encode(r)
}
