package supervise

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// limits are what the environment refuses a run that nsrun works around,
// as in a default rootless container (podman, docker): the run then keeps
// its promises (every process ends with the run, node names resolve,
// partitions hold) and says once what differs.
type limits struct {
	// sharedProc: no fresh /proc could be mounted (the kernel refuses one
	// in a user namespace while the container masks paths under the
	// existing /proc: mount_too_revealing), so the run and its nodes keep
	// the container's. Processes are found by pid namespace all the same
	// (package procpid).
	sharedProc bool
	// keepHostname: sethostname is refused (the container's seccomp
	// filter allows it only with CAP_SYS_ADMIN), so nodes keep the
	// container's hostname; their names still resolve through the run's
	// /etc/hosts.
	keepHostname bool
	// noResolv: there is no /etc/resolv.conf to mount the run's over, so
	// nodes use their resolver's default (a nameserver on 127.0.0.1).
	noResolv bool
}

// notice is the one message that says what differs, or "".
func (l limits) notice() string {
	var d []string
	if l.sharedProc {
		d = append(d, "no /proc of its own could be mounted (paths under /proc are masked), so ps in a node shows the container's processes too, and /proc/sys is read-only: nodes keep the kernel's IPv6 defaults and ping needs CAP_NET_RAW")
	}
	if l.keepHostname {
		d = append(d, "sethostname is refused (seccomp), so nodes keep the container's hostname; node names still resolve through the run's /etc/hosts")
	}
	if l.noResolv {
		d = append(d, "there is no /etc/resolv.conf to mount the run's over, so DNS in nodes uses the resolver's default (127.0.0.1); node names resolve through /etc/hosts")
	}
	if len(d) == 0 {
		return ""
	}
	return "nsrun: here " + strings.Join(d, "; ") + ". Processes still end with the run and partitions still hold (nsrun doctor tells more).\n"
}

// mountProc mounts a /proc of the run's pid namespace over /proc, or,
// where the kernel refuses it (EPERM: masked paths under the existing
// /proc), keeps the existing one and notes it.
func (s *supervisor) mountProc() error {
	err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if errors.Is(err, unix.EPERM) && procMasked() {
		s.limits.sharedProc = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("mount /proc of the run's pid namespace: %w", err)
	}
	return nil
}

// procMasked says whether something is mounted under /proc other than on
// an empty folder, which makes the kernel refuse a fresh /proc in a user
// namespace.
func procMasked() bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], "/proc/") {
			return true
		}
	}
	return false
}

// probeHostname says whether sethostname is refused here, trying it in a
// UTS namespace of a throwaway thread's own (the thread dies with its
// goroutine, never unlocked).
func probeHostname() bool {
	refused := make(chan bool, 1)
	go func() {
		runtime.LockOSThread()
		// Deliberately no UnlockOSThread.
		if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
			refused <- false // the node's own unshare will say why
			return
		}
		name, err := os.Hostname()
		if err != nil {
			name = "nsrun"
		}
		refused <- errors.Is(unix.Sethostname([]byte(name)), unix.EPERM)
	}()
	return <-refused
}
