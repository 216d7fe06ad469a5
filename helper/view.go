package helper

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/install"
)

// The gateway's mounts live where the user cannot reach them: the
// namespaces are bind-mounted in /run/nsrun-helper/gw/UID (root's, in a
// folder only root may enter), and /run/user/UID/nsrun is a read-only,
// recursive bind mount of that folder: the user's view. A mount point
// cannot be renamed or removed, so the user can no longer move the
// helper's folder aside and have install make one gateway after another
// (issue 20: 40 renames left 82 namespace mounts after uninstall, each a
// gateway the user kept until reboot). Install reuses the one gateway of
// gw/UID while it is mounted; uninstall finds every view of gw/UID and
// every namespace mount of the user's that an older helper left, wherever
// it now lies, in /proc/self/mountinfo.

// gwDirName is the folder of every user's gateway under stateDir.
const gwDirName = "gw"

// gwPath is /run/nsrun-helper/gw/UID.
func gwPath(uid int) string { return stateDir + "/" + gwDirName + "/" + strconv.Itoa(uid) }

// openGwDir opens /run/nsrun-helper/gw/UID, checked to be root's; with
// create it makes gw (0700) and UID (0755) first. A missing folder is
// (nil, nil).
func (s *state) openGwDir(uid int, create bool) (*os.File, error) {
	if s.dir == nil {
		return nil, nil
	}
	if create {
		if err := unix.Mkdirat(int(s.dir.Fd()), gwDirName, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create %s/%s: %w", stateDir, gwDirName, err)
		}
	}
	gw, err := install.OpenVerifiedDir(s.dir, gwDirName, 0)
	if errors.Is(err, install.ErrNotInstalled) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer gw.Close()
	name := strconv.Itoa(uid)
	if create {
		if err := unix.Mkdirat(int(gw.Fd()), name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create %s: %w", gwPath(uid), err)
		}
	}
	d, err := install.OpenVerifiedDir(gw, name, 0)
	if errors.Is(err, install.ErrNotInstalled) {
		return nil, nil
	}
	return d, err
}

// removeGwDir unmounts and removes what gw/UID holds, then the folder.
func (s *state) removeGwDir(uid int) error {
	d, err := s.openGwDir(uid, false)
	if err != nil || d == nil {
		return err
	}
	defer d.Close()
	for _, name := range []string{"userns", "netns"} {
		if err := unmountAndRemove(d, name); err != nil {
			return err
		}
	}
	if err := removeFile(d, "install.json"); err != nil {
		return err
	}
	gw, err := install.OpenVerifiedDir(s.dir, gwDirName, 0)
	if err != nil {
		return err
	}
	defer gw.Close()
	if err := unix.Unlinkat(int(gw.Fd()), strconv.Itoa(uid), unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", gwPath(uid), err)
	}
	return nil
}

// sameInode reports whether st and the open file f are one file.
func sameInode(f *os.File, st unix.Stat_t) bool {
	var fs unix.Stat_t
	return unix.Fstat(int(f.Fd()), &fs) == nil && fs.Dev == st.Dev && fs.Ino == st.Ino
}

// viewOK reports whether /run/user/UID/nsrun (name "nsrun" in userDir) is
// a view of gwDir that shows its namespaces as they are now.
func viewOK(userDir, gwDir *os.File) bool {
	if userDir == nil || gwDir == nil {
		return false
	}
	fd, err := unix.Openat(int(userDir.Fd()), "nsrun", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	view := os.NewFile(uintptr(fd), "view")
	defer view.Close()
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || !sameInode(gwDir, st) {
		return false
	}
	for _, name := range []string{"userns", "netns"} {
		var a, b unix.Stat_t
		if unix.Fstatat(int(gwDir.Fd()), name, &a, unix.AT_SYMLINK_NOFOLLOW) != nil ||
			unix.Fstatat(fd, name, &b, unix.AT_SYMLINK_NOFOLLOW) != nil || a.Dev != b.Dev || a.Ino != b.Ino ||
			!install.NamespaceMounted(view, name) {
			return false
		}
	}
	return true
}

// mountView makes "nsrun" in userDir (/run/user/UID/nsrun) a read-only,
// recursive bind mount of gwDir, private (no mount propagates into it or
// out of it). The mount is attached relative to userDir's descriptor, in
// one call: whatever the user may have swapped in for the folder meanwhile,
// the view lands at that name, where it cannot be renamed.
func mountView(userDir, gwDir *os.File) error {
	tree, err := unix.OpenTree(int(gwDir.Fd()), "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE|unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("clone the mounts of %s: %w", gwDir.Name(), err)
	}
	defer unix.Close(tree)
	attr := &unix.MountAttr{
		Attr_set:    unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC,
		Propagation: unix.MS_PRIVATE,
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("make the view of %s read-only: %w", gwDir.Name(), err)
	}
	if err := unix.MoveMount(tree, "", int(userDir.Fd()), "nsrun", unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount the view of %s on %s/nsrun: %w", gwDir.Name(), userDir.Name(), err)
	}
	return nil
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Dev    uint64 // the filesystem's device (major:minor)
	Root   string // the mount's root within its filesystem
	Point  string // where it is mounted
	FSType string
}

// readMountinfo reads the helper's mount table.
func readMountinfo() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read the mount table: %w", err)
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if len(fields) < 7 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		var major, minor uint32
		if _, err := fmt.Sscanf(fields[2], "%d:%d", &major, &minor); err != nil {
			continue
		}
		out = append(out, mountEntry{Dev: unix.Mkdev(major, minor), Root: unescapeMount(fields[3]), Point: unescapeMount(fields[4]), FSType: fields[sep+1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the mount table: %w", err)
	}
	return out, nil
}

// unescapeMount undoes the octal escapes (\040 for a space, \012 for a
// newline, ...) of a path in the mount table.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// openMountPoint opens a path of the mount table without following any
// symlink (a user may have swapped one in since): flags are O_PATH or
// O_RDONLY.
func openMountPoint(path string, flags uint64) (*os.File, error) {
	flags |= unix.O_CLOEXEC | unix.O_NOFOLLOW
	if flags&unix.O_PATH == 0 {
		flags |= unix.O_NONBLOCK | unix.O_NOCTTY // (openat2 refuses them with O_PATH)
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
		Flags:   flags,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// maxMountScans bounds the passes over the mount table: views stacked on
// one another come off one per pass.
const maxMountScans = 64

// unmountViews detaches every view of gwDir (with the namespace mounts
// inside it), wherever it lies (a user may have moved one, from a mount
// namespace of their own where it was no mount point): mounts of gwDir's
// filesystem whose root is gwDir, checked by device and inode.
func unmountViews(gwDir *os.File) error {
	if gwDir == nil {
		return nil
	}
	return unmountMatching(func(e mountEntry) (bool, error) {
		f := openView(e, gwDir)
		if f == nil {
			return false, nil
		}
		defer f.Close()
		return true, unmountFD(f)
	})
}

// openView opens the mount point of e if the mount is a view of gwDir: a
// mount of its filesystem whose root is that folder, and what its mount
// point leads to now (no symlink followed) is that folder. Else nil.
func openView(e mountEntry, gwDir *os.File) *os.File {
	gw := statOf(gwDir)
	if e.Dev != gw.Dev || !strings.HasSuffix(e.Root, "/"+gwDirName+"/"+filepath.Base(gwDir.Name())) {
		return nil
	}
	f, err := openMountPoint(e.Point, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return nil // gone, or not where the table said any more
	}
	if !sameInode(gwDir, statOf(f)) {
		f.Close()
		return nil
	}
	return f
}

// openNamespaceMount opens the mount e if it is a user or network
// namespace mount (nsfs), else returns nil.
func openNamespaceMount(e mountEntry) *os.File {
	if e.FSType != "nsfs" || !(strings.HasPrefix(e.Root, "user:[") || strings.HasPrefix(e.Root, "net:[")) {
		return nil
	}
	f, err := openMountPoint(e.Point, unix.O_RDONLY)
	if err != nil {
		return nil
	}
	var fs unix.Statfs_t
	if unix.Fstatfs(int(f.Fd()), &fs) != nil || fs.Type != unix.NSFS_MAGIC {
		f.Close()
		return nil
	}
	return f
}

// unmountStrayNamespaces detaches every namespace mount (nsfs) of uid's
// gateway namespaces but those of keep (the gateway in gw/UID, nil for
// none): what helpers before issue 20 mounted in /run/user/UID/nsrun and
// left behind when the user renamed that folder. A mount counts as uid's
// when its user namespace (or, for a network namespace, the user
// namespace owning it) is owned by uid and a child of the initial one:
// only the helper mounts those in the host's mount namespace.
func unmountStrayNamespaces(uid int, keep *os.File) error {
	var kept []unix.Stat_t
	if keep != nil {
		for _, name := range []string{"userns", "netns"} {
			var st unix.Stat_t
			if unix.Fstatat(int(keep.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
				kept = append(kept, st)
			}
		}
	}
	return unmountMatching(func(e mountEntry) (bool, error) {
		f := openNamespaceMount(e)
		if f == nil {
			return false, nil
		}
		defer f.Close()
		st := statOf(f)
		for _, k := range kept {
			if k.Dev == st.Dev && k.Ino == st.Ino {
				return false, nil
			}
		}
		if !gatewayNamespaceOf(f, uid) {
			return false, nil
		}
		return true, unmountFD(f)
	})
}

// gatewayNamespaceOf reports whether the namespace ns (a user or network
// namespace) is one of a gateway of uid's: its user namespace is owned by
// uid and a child of the initial one.
func gatewayNamespaceOf(ns *os.File, uid int) bool {
	typ, err := unix.IoctlRetInt(int(ns.Fd()), unix.NS_GET_NSTYPE)
	if err != nil {
		return false
	}
	userNS := ns
	if typ == unix.CLONE_NEWNET {
		owner, err := nsIoctlFile(ns, unix.NS_GET_USERNS)
		if err != nil {
			return false
		}
		defer owner.Close()
		userNS = owner
	} else if typ != unix.CLONE_NEWUSER {
		return false
	}
	got, err := unix.IoctlGetUint32(int(userNS.Fd()), unix.NS_GET_OWNER_UID)
	if err != nil || int(got) != uid {
		return false
	}
	parent, err := nsIoctlFile(userNS, unix.NS_GET_PARENT)
	if err != nil {
		return false
	}
	defer parent.Close()
	initial, err := os.Open("/proc/self/ns/user")
	if err != nil {
		return false
	}
	defer initial.Close()
	return sameFile(parent, initial)
}

// unmountMatching unmounts, pass after pass, every mount of the table
// that match says to (match unmounts it itself and reports true), until a
// pass finds none.
func unmountMatching(match func(mountEntry) (bool, error)) error {
	for range maxMountScans {
		entries, err := readMountinfo()
		if err != nil {
			return err
		}
		found := false
		for _, e := range entries {
			ok, err := match(e)
			if err != nil {
				return err
			}
			found = found || ok
		}
		if !found {
			return nil
		}
	}
	return fmt.Errorf("mounts of the helper keep coming back after %d passes over the mount table", maxMountScans)
}

func statOf(f *os.File) unix.Stat_t {
	var st unix.Stat_t
	_ = unix.Fstat(int(f.Fd()), &st)
	return st
}

// unmountFD detaches the mount whose root f is.
func unmountFD(f *os.File) error {
	if err := unix.Unmount(fdPath(f), unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", f.Name(), err)
	}
	return nil
}

// hasViews reports whether a view of gwDir is mounted anywhere.
func hasViews(gwDir *os.File) (bool, error) {
	if gwDir == nil {
		return false, nil
	}
	found := false
	err := scanMounts(func(e mountEntry) bool {
		if f := openView(e, gwDir); f != nil {
			found = true
			f.Close()
		}
		return found
	})
	return found, err
}

// hasStrayNamespaces reports whether a namespace mount of a gateway of
// uid's is mounted anywhere.
func hasStrayNamespaces(uid int) (bool, error) {
	found := false
	err := scanMounts(func(e mountEntry) bool {
		if f := openNamespaceMount(e); f != nil {
			found = found || gatewayNamespaceOf(f, uid)
			f.Close()
		}
		return found
	})
	return found, err
}

// scanMounts calls look with each mount of the table until it reports
// true.
func scanMounts(look func(mountEntry) bool) error {
	entries, err := readMountinfo()
	for _, e := range entries {
		if look(e) {
			break
		}
	}
	return err
}
