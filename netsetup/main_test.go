package netsetup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// insideEnv marks the copy of the test binary that runs in namespaces of
// its own.
const insideEnv = "NSRUN_NETSETUP_TEST_INSIDE"

// TestMain runs every test of the package against the real kernel without
// root, as containernetworking/plugins tests its netlink code: the test
// binary runs itself again in a new user namespace (where it is uid 0,
// with every capability) and a new network namespace, and that copy runs
// the tests. Without unprivileged user namespaces the tests fail when
// CI=true and are skipped, with the reason, otherwise.
func TestMain(m *testing.M) {
	if os.Getenv(insideEnv) == "1" {
		os.Exit(m.Run())
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), insideEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.ExitCode())
	case err != nil && os.Getenv("CI") == "true":
		fmt.Fprintf(os.Stderr, "FAIL: cannot run in CI: no user namespace for the netsetup tests: %v\n", err)
		os.Exit(1)
	case err != nil:
		fmt.Printf("skipped: no user namespace for the netsetup tests: %v\nok\n", err)
	}
	os.Exit(0)
}
