package main

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// holdInflight puts as many descriptors in flight as the kernel lets its
// user (SCM_RIGHTS messages on socketpairs that nobody reads: the kernel
// counts them per user, up to RLIMIT_NOFILE, which it raises to the hard
// limit first), prints "holding N" once the kernel refuses more
// (ETOOMANYREFS) and holds them until it is killed. It exits 1 if it
// could not reach the limit.
func holdInflight() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	fds := make([]int, 253) // SCM_MAX_FD
	for i := range fds {
		fds[i] = 0
	}
	rights := unix.UnixRights(fds...)
	held := 0
	for {
		sv, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "socketpair:", err)
			return 1
		}
		for {
			err := unix.Sendmsg(sv[0], nil, rights, nil, unix.MSG_DONTWAIT)
			if errors.Is(err, unix.ETOOMANYREFS) {
				fmt.Printf("holding %d\n", held)
				select {}
			}
			if err != nil { // this pair's queue is full: the next one
				break
			}
			held += len(fds)
		}
	}
}
