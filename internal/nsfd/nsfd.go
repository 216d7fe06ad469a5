// Package nsfd creates network namespaces held by file descriptors and runs
// code inside them on a locked OS thread. It is nsrun's one way into a
// network namespace from Go: every setns(2) of a network namespace goes
// through here (netlink handles, sysctls, sockets made in a node, the
// capture's packet sockets, guest processes), always on a locked thread,
// and no thread that is in a foreign namespace is ever handed back to the
// scheduler.
//
// Three shapes, by how long the thread stays:
//   - Do: for the length of a closure, then back (containernetworking's
//     ns.Do); the thread is unlocked only if the return succeeded.
//   - Enter: for good, on a thread the caller has locked and never
//     unlocks (it dies with its goroutine); for a thread that goes on to
//     change what cannot be changed back, as package guest's does before
//     it forks a node's process.
//   - NewNet and CanEnter: on a throwaway thread that dies at once.
//
// User namespaces are not entered here: a Go process is multithreaded, and
// the kernel refuses it (package userns does it before the Go runtime
// starts, in C).
//
// Namespaces are never bind-mounted: a namespace lives as long as some fd or
// process holds it, so everything a run creates disappears with its
// processes, even after SIGKILL.
package nsfd

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// NewNet creates a network namespace and returns an fd that holds it.
//
// The namespace is created by a throwaway OS thread: the thread unshares,
// opens its own namespace file and then exits together with its goroutine
// (it is never unlocked), so no other goroutine ever runs in it.
func NewNet() (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// Deliberately no UnlockOSThread: the thread dies with this goroutine.
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("unshare network namespace: %w", err)}
			return
		}
		path := "/proc/thread-self/ns/net"
		f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("open %s: %w", path, err)}
			return
		}
		ch <- result{f: f}
	}()
	r := <-ch
	return r.f, r.err
}

// Open opens the namespace file at path (for example /proc/PID/ns/net).
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", path, err)
	}
	return f, nil
}

// Do runs fn on a locked OS thread that has joined the network namespace
// held by ns. Afterwards the thread returns to its original namespace; where
// it cannot (the original belongs to a user namespace this process has no
// capabilities in, as the caller's own does for a run), the thread stays
// locked and dies with its goroutine. Either way the foreign namespace never
// leaks into other goroutines. Goroutines that fn starts do not inherit it.
func Do(ns *os.File, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.OpenFile("/proc/thread-self/ns/net", os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open current network namespace: %w", err)
			return // thread dies locked
		}
		defer orig.Close()
		if err := Enter(ns); err != nil {
			errc <- err
			return
		}
		err = fn()
		if setns(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// CanEnter reports whether this process may join the network namespace
// held by ns (it needs CAP_SYS_ADMIN over the namespace's owning user
// namespace), by trying on a throwaway thread that then dies with its
// goroutine, never unlocked.
func CanEnter(ns *os.File) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Deliberately no UnlockOSThread: the thread dies with this goroutine.
		errc <- setns(ns)
	}()
	return <-errc
}

// Enter moves the calling thread into the network namespace held by ns,
// for good. The caller must have locked the thread
// (runtime.LockOSThread) and must never unlock it: the thread then dies
// with its goroutine, and the namespace reaches no other goroutine.
// Code that only needs the namespace for a while uses Do instead.
func Enter(ns *os.File) error {
	if err := setns(ns); err != nil {
		return fmt.Errorf("enter network namespace: %w", err)
	}
	return nil
}

// setns moves the calling thread into the network namespace held by ns.
func setns(ns *os.File) error {
	return unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET)
}

// WriteSysctl writes value to the sysctl file under /proc/sys (for example
// "net/ipv4/ip_forward") as seen from the network namespace ns. Files under
// /proc/sys/net belong to the namespace of the thread that opens them.
func WriteSysctl(ns *os.File, key, value string) error {
	return Do(ns, func() error {
		path := "/proc/sys/" + key
		if err := os.WriteFile(path, []byte(value), 0); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	})
}
