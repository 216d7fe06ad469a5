package nsfd

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// sysctlRenew is how many writes a Sysctls makes through one procfs
// instance before it mounts a fresh one: about 60 namespaces' worth.
const sysctlRenew = 256

// Sysctls writes sysctls (the files under /proc/sys) of the calling
// thread's network namespace through a procfs instance of its own, which
// it replaces every sysctlRenew writes; without one (a kernel without
// fsopen, or a mount refused) it writes through /proc. Use one per
// goroutine that writes the sysctls of many namespaces in turn, and Close
// it. A nil *Sysctls writes through /proc.
//
// Why not /proc/sys alone: a procfs instance keeps the dentries of the
// sysctl files of every network namespace it has looked them up in, as
// long as the namespace lives, and the same path in every namespace
// lands in one hash chain, whose every entry a lookup compares under the
// kernel's global sysctl lock. Through the supervisor's /proc, the n-th
// node's namespace walked n-1 dentries per path component: O(n²) for a
// run, the largest cost of wiring 1,000 nodes. A fresh instance sees only
// the namespaces written through it since it was made.
type Sysctls struct {
	mnt    int // the private instance (an fsmount fd); -1 for none
	writes int // through mnt
	noMnt  bool
}

// NewSysctls returns a Sysctls; its first write mounts its instance.
func NewSysctls() *Sysctls { return &Sysctls{mnt: -1} }

// Write writes value to the sysctl key (for example
// "net/ipv6/conf/default/accept_ra") of the calling thread's network
// namespace: call it on a thread that joined the namespace (Do).
func (s *Sysctls) Write(key, value string) error {
	path := "/proc/sys/" + key
	fd, err := s.open(key)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(value)); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// open opens the sysctl file key for writing, through the private
// instance when there is one.
func (s *Sysctls) open(key string) (int, error) {
	if s != nil && !s.noMnt {
		if s.mnt < 0 || s.writes >= sysctlRenew {
			s.renew()
		}
		if s.mnt >= 0 {
			s.writes++
			return unix.Openat(s.mnt, "sys/"+key, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		}
	}
	return unix.Open("/proc/sys/"+key, unix.O_WRONLY|unix.O_CLOEXEC, 0)
}

// renew replaces the private instance with a fresh one (the kernel frees
// the old one's dentries with it); where none can be made, every later
// write goes through /proc.
func (s *Sysctls) renew() {
	s.Close()
	s.writes = 0
	fs, err := unix.Fsopen("proc", unix.FSOPEN_CLOEXEC)
	if err != nil {
		s.noMnt = true
		return
	}
	defer unix.Close(fs)
	if err := unix.FsconfigCreate(fs); err != nil {
		s.noMnt = true
		return
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		s.noMnt = true
		return
	}
	s.mnt = mnt
}

// Close unmounts the private instance. It may be called more than once,
// and on a nil *Sysctls.
func (s *Sysctls) Close() {
	if s != nil && s.mnt >= 0 {
		unix.Close(s.mnt)
		s.mnt = -1
	}
}
