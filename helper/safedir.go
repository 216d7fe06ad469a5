package helper

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// errUnsafePath marks a path the helper refuses to follow.
var errUnsafePath = errors.New("refusing to follow it")

// dir is a directory opened without following symlinks; all work inside it
// goes through its fd.
type dir struct {
	fd   int
	path string // for messages only
}

func (d *dir) Close() { unix.Close(d.fd) }

// openDir opens name inside parent (or the absolute path when parent is
// nil) as a directory, refusing symlinks. With create, a missing directory
// is made with mode and then chowned to uid:gid.
func openDir(parent *dir, name string, create bool, mode uint32, uid, gid int) (*dir, bool, error) {
	at, path := unix.AT_FDCWD, name
	if parent != nil {
		at, path = parent.fd, filepath.Join(parent.path, name)
	}
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	made := false
	fd, err := unix.Openat(at, name, flags, 0)
	if errors.Is(err, unix.ENOENT) && create {
		if err := unix.Mkdirat(at, name, mode); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, false, fmt.Errorf("create %s: %w", path, err)
		}
		made = true
		fd, err = unix.Openat(at, name, flags, 0)
		if err == nil {
			// Through the fd: the name may have been swapped meanwhile.
			if err := unix.Fchown(fd, uid, gid); err != nil {
				unix.Close(fd)
				return nil, false, fmt.Errorf("chown %s: %w", path, err)
			}
			if err := unix.Fchmod(fd, mode); err != nil {
				unix.Close(fd)
				return nil, false, fmt.Errorf("chmod %s: %w", path, err)
			}
		}
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil, false, fmt.Errorf("%s is a symlink or not a directory: %w; remove it and run install again", path, errUnsafePath)
	}
	if err != nil {
		return nil, false, fmt.Errorf("open %s: %w", path, err)
	}
	return &dir{fd: fd, path: path}, made, nil
}

// owner returns the directory's owner and mode.
func (d *dir) owner() (uid int, mode uint32, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return 0, 0, fmt.Errorf("stat %s: %w", d.path, err)
	}
	return int(st.Uid), st.Mode, nil
}

// requireOwner refuses a directory owned by anyone but uid, or writable by
// group or others.
func (d *dir) requireOwner(uid int) error {
	got, mode, err := d.owner()
	if err != nil {
		return err
	}
	if got != uid {
		return fmt.Errorf("%s is owned by uid %d, expected %d: refusing to use it; remove it and run install again", d.path, got, uid)
	}
	if mode&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %o): refusing to use it", d.path, mode&0o777)
	}
	return nil
}

// openFile opens name inside d for mounting onto (O_PATH, no symlinks),
// creating an empty root-owned file first if create is set. It must be a
// regular root-owned file.
func (d *dir) openFile(name string, create bool) (*os.File, error) {
	if create {
		fd, err := unix.Openat(d.fd, name, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0o444)
		if err == nil {
			unix.Close(fd)
		} else if !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create %s/%s: %w", d.path, name, err)
		}
	}
	fd, err := unix.Openat(d.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", d.path, name, err)
	}
	f := os.NewFile(uintptr(fd), d.path+"/"+name)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != 0 {
		f.Close()
		return nil, fmt.Errorf("%s/%s is not a root-owned regular file (a symlink?): refusing to use it", d.path, name)
	}
	return f, nil
}

// writeFile atomically writes name inside d (root-owned, mode 0644).
func (d *dir) writeFile(name string, data []byte) error {
	tmp := name + ".tmp"
	fd, err := unix.Openat(d.fd, tmp, unix.O_CREAT|unix.O_TRUNC|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("write %s/%s: %w", d.path, tmp, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr != nil || cerr != nil {
		return fmt.Errorf("write %s/%s: %w", d.path, tmp, errors.Join(werr, cerr))
	}
	if err := unix.Renameat(d.fd, tmp, d.fd, name); err != nil {
		return fmt.Errorf("rename %s/%s: %w", d.path, name, err)
	}
	return nil
}

// readFile reads name inside d, not following symlinks.
func (d *dir) readFile(name string) ([]byte, error) {
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return io.ReadAll(f)
}

// bindMount bind-mounts source onto the file target (opened by openFile),
// through /proc/self/fd so that no path is looked up again.
func bindMount(source string, target *os.File) error {
	dst := "/proc/self/fd/" + strconv.Itoa(int(target.Fd()))
	if err := unix.Mount(source, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mount %s onto %s: %w", source, target.Name(), err)
	}
	return nil
}

// unmountFile detaches whatever is mounted on name inside d, then removes it.
func (d *dir) unmountAndRemove(name string) error {
	for {
		fd, err := unix.Openat(d.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("open %s/%s: %w", d.path, name, err)
		}
		var st unix.Statfs_t
		isNS := unix.Fstatfs(fd, &st) == nil && st.Type == unix.NSFS_MAGIC
		if !isNS {
			unix.Close(fd)
			break
		}
		err = unix.Unmount("/proc/self/fd/"+strconv.Itoa(fd), unix.MNT_DETACH)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("unmount %s/%s: %w", d.path, name, err)
		}
	}
	if err := unix.Unlinkat(d.fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s/%s: %w", d.path, name, err)
	}
	return nil
}
