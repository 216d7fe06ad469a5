// Package testns runs a package's tests against the real kernel without
// root, as containernetworking/plugins tests its netlink code: the test
// binary runs itself again in a new user namespace (where it is uid 0,
// with every capability over it) and a new network namespace, and that
// copy runs the tests. The copy is to the tests what the launcher makes
// of the supervisor: root of a user namespace of its own, in a network
// namespace of its own (the bridge namespace).
//
// Use it as the package's TestMain:
//
//	func TestMain(m *testing.M) { testns.Main(m) }
//
// Without unprivileged user namespaces the tests fail when CI=true and
// are skipped, with the reason, otherwise.
package testns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/nsfd"
)

// insideEnv marks the copy of the test binary that runs in the
// namespaces of its own; outsideEnv is the number of its fd that holds
// the network namespace of the test binary that started it.
const (
	insideEnv  = "NSRUN_TESTNS_INSIDE"
	outsideEnv = "NSRUN_TESTNS_OUTSIDE_FD"
)

// Main runs m's tests in a copy of the test binary that has a user and a
// network namespace of its own, and exits with its exit code.
func Main(m *testing.M) {
	if os.Getenv(insideEnv) == "1" {
		os.Exit(m.Run())
	}
	// The parent-death signal follows the thread that starts the copy.
	runtime.LockOSThread()
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), insideEnv+"=1")
	if outside, err := os.Open("/proc/thread-self/ns/net"); err == nil {
		defer outside.Close()
		cmd.ExtraFiles = []*os.File{outside}
		cmd.Env = append(cmd.Env, outsideEnv+"=3")
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		// The copy dies with this process (a test binary killed at its
		// timeout takes it along).
		Pdeathsig: syscall.SIGKILL,
	}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.ExitCode())
	case err != nil && os.Getenv("CI") == "true":
		fmt.Fprintf(os.Stderr, "FAIL: cannot run in CI: no user namespace for these tests: %v\n", err)
		os.Exit(1)
	case err != nil:
		fmt.Printf("skipped: no user namespace for these tests: %v\nok\n", err)
	}
	os.Exit(0)
}

// Outside returns the network namespace of the test binary that started
// this copy (nil outside the copy): it belongs to a user namespace outside
// the copy's, as one made by a plain `unshare -Urn` belongs to a sibling
// of a run's, and the copy may not enter it. The caller must not close
// it.
func Outside() *os.File { return outside() }

// outside wraps the inherited fd once: a second *os.File of the same fd
// would close it when the first is collected.
var outside = sync.OnceValue(func() *os.File {
	fd, err := strconv.Atoi(os.Getenv(outsideEnv))
	if !Inside() || err != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), "outside-netns")
})

// Inside reports whether this test binary is the copy in namespaces of
// its own.
func Inside() bool { return os.Getenv(insideEnv) == "1" }

// InNewNet runs fn on a locked OS thread that has a new network
// namespace of its own, as the launcher gives the supervisor one: code
// that takes "this thread's namespace" (runnet.Build's bridge
// namespace) gets a fresh one for each test. The thread then dies with
// its goroutine, never unlocked, so the namespace reaches no other
// goroutine.
func InNewNet(fn func() error) error {
	ns, err := nsfd.NewNet()
	if err != nil {
		return err
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Deliberately no UnlockOSThread: the thread dies with this goroutine.
		if err := nsfd.Enter(ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}
