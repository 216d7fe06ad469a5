package main

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// leakMount makes the host's file or socket src reachable at dst in the
// mount namespace of process pid, as a leak would: a copy of its mount
// (open_tree) moved to dst there. dst is created as uid:gid, since a
// node's tmpfs belongs to its run's user namespace, which maps only the
// user. It runs in a process of its own, so no thread of the test is left
// in pid's namespace (a thread that joins it for good and is the main one
// would change what /proc/self/mounts shows the test from then on).
func leakMount(pid int, src, dst string, uid, gid int) int {
	runtime.LockOSThread()
	if err := leak(pid, src, dst, uid, gid); err != nil {
		fmt.Fprintln(os.Stderr, "probe leak-mount:", err)
		return 1
	}
	return 0
}

func leak(pid int, src, dst string, uid, gid int) error {
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", src, err)
	}
	defer unix.Close(tree)
	ns, err := unix.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(ns)
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare CLONE_FS: %w", err)
	}
	if err := unix.Setns(ns, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("join the mount namespace of %d: %w", pid, err)
	}
	unix.Setfsgid(gid)
	unix.Setfsuid(uid)
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount onto %s: %w", dst, err)
	}
	return nil
}
