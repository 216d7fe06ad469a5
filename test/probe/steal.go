package main

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// stealFDs takes every descriptor of process pid with pidfd_getfd, as a
// user who may ptrace it can, and prints one line per descriptor:
// "fd N TARGET tty" if it is a terminal (TCGETS works on it), else
// "fd N TARGET", or "fd N refused: ERROR" when the kernel refuses it. It
// exits 1 if the process cannot be opened at all.
func stealFDs(pid int) int {
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pidfd_open:", err)
		return 1
	}
	defer unix.Close(pfd)
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, n))
		fd, err := unix.PidfdGetfd(pfd, n, 0)
		if err != nil {
			fmt.Printf("fd %d %s refused: %v\n", n, target, err)
			continue
		}
		tty := ""
		if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err == nil {
			tty = " tty"
		}
		unix.Close(fd)
		fmt.Printf("fd %d %s%s\n", n, target, tty)
	}
	return 0
}
