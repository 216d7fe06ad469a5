package helper

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/install"
)

// Every path the helper touches under /run/user/UID is reached from a
// folder opened with O_NOFOLLOW and checked (install.OpenVerifiedDir), and
// every change inside goes through that folder's fd: a user who swaps a
// folder or plants a symlink or FIFO gets an error, never a mount, a write
// or a read elsewhere.

// mkdirAt creates the folder name inside parent (an absolute path when
// parent is nil) with mode, owned by uid:gid, unless it exists. The owner
// and mode are set through the new folder's fd, since the name may have
// been swapped meanwhile.
func mkdirAt(parent *os.File, name string, mode uint32, uid, gid int) (made bool, err error) {
	at, path := unix.AT_FDCWD, name
	if parent != nil {
		at, path = int(parent.Fd()), parent.Name()+"/"+name
	}
	if err := unix.Mkdirat(at, name, mode); errors.Is(err, unix.EEXIST) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("create %s: %w", path, err)
	}
	fd, err := unix.Openat(at, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return true, fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	// What the name leads to now must still be the folder just made: root's
	// and empty. (In a folder the user owns, they may have swapped it.)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return true, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Uid != 0 {
		return true, fmt.Errorf("%s is owned by uid %d right after root created it: it was swapped (%w); refusing to chown it", path, st.Uid, install.ErrUnsafe)
	}
	if empty, err := emptyDir(fd); err != nil || !empty {
		return true, fmt.Errorf("%s is not empty right after it was created: it was swapped (%w); refusing to chown it", path, errors.Join(install.ErrUnsafe, err))
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return true, fmt.Errorf("chown %s: %w", path, err)
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return true, fmt.Errorf("chmod %s: %w", path, err)
	}
	return true, nil
}

// mountTarget creates the empty root-owned file name inside d, if missing,
// and opens it (O_PATH, no symlinks) to mount onto. It must be a regular
// file of root's.
func mountTarget(d *os.File, name string) (*os.File, error) {
	fd, err := unix.Openat(int(d.Fd()), name, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0o444)
	if err == nil {
		unix.Close(fd)
	} else if !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create %s/%s: %w", d.Name(), name, err)
	}
	fd, err = unix.Openat(int(d.Fd()), name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", d.Name(), name, err)
	}
	f := os.NewFile(uintptr(fd), d.Name()+"/"+name)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != 0 {
		f.Close()
		return nil, fmt.Errorf("%s is not a root-owned regular file (%w): refusing to mount onto it", f.Name(), install.ErrUnsafe)
	}
	return f, nil
}

// fdPath names an open file by its descriptor, so that the kernel looks no
// path up again.
func fdPath(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// bindMount bind-mounts the namespace held by ns onto target, both by fd.
func bindMount(ns, target *os.File) error {
	if err := unix.Mount(fdPath(ns), fdPath(target), "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mount the gateway namespace onto %s: %w", target.Name(), err)
	}
	return nil
}

// unmountAndRemove detaches every namespace mounted on name inside d, then
// removes it.
func unmountAndRemove(d *os.File, name string) error {
	for install.NamespaceMounted(d, name) {
		fd, err := unix.Openat(int(d.Fd()), name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s/%s: %w", d.Name(), name, err)
		}
		err = unix.Unmount("/proc/self/fd/"+strconv.Itoa(fd), unix.MNT_DETACH)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("unmount %s/%s: %w", d.Name(), name, err)
		}
	}
	if err := unix.Unlinkat(int(d.Fd()), name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s/%s: %w", d.Name(), name, err)
	}
	return nil
}

// writeFile atomically replaces name inside d with data (root's, 0644).
func writeFile(d *os.File, name string, data []byte) error {
	tmp := name + ".tmp"
	_ = unix.Unlinkat(int(d.Fd()), tmp, 0)
	fd, err := unix.Openat(int(d.Fd()), tmp, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("write %s/%s: %w", d.Name(), tmp, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("write %s/%s: %w", d.Name(), tmp, err)
	}
	if err := unix.Renameat(int(d.Fd()), tmp, int(d.Fd()), name); err != nil {
		return fmt.Errorf("rename %s/%s: %w", d.Name(), name, err)
	}
	return nil
}

// removeFile removes name (and a leftover name.tmp) inside d.
func removeFile(d *os.File, name string) error {
	for _, n := range []string{name, name + ".tmp"} {
		if err := unix.Unlinkat(int(d.Fd()), n, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s/%s: %w", d.Name(), n, err)
		}
	}
	return nil
}

// hasFile reports whether name inside d is a root-owned regular file
// holding exactly data.
func hasFile(d *os.File, name string, data []byte) bool {
	if d == nil {
		return false
	}
	b, err := install.ReadRootFile(d, name, install.MaxRecordSize)
	return err == nil && bytes.Equal(b, data)
}

// emptyDir reports whether the open folder fd holds nothing but . and ..
func emptyDir(fd int) (bool, error) {
	buf := make([]byte, 4096)
	n, err := unix.Getdents(fd, buf)
	if err != nil {
		return false, err
	}
	_, _, names := unix.ParseDirent(buf[:n], -1, nil)
	return len(names) == 0, nil
}
