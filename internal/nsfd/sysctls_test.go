package nsfd_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/nsfd"
)

// sysctlsChild marks the copy of the test binary that runs
// TestSysctls in a pid and mount namespace of its own.
const sysctlsChild = "NSRUN_NSFD_SYSCTLS_CHILD"

// TestSysctls: Sysctls writes each namespace's own file, the calling
// thread's, across the renewals of its procfs instance, and a nil one
// writes through /proc. Where the process may mount a proc (as the
// supervisor may: PID 1 of a pid namespace of its user namespace), the
// writes go through a private instance: the test runs again in a pid
// and mount namespace of its own to see that path.
func TestSysctls(t *testing.T) {
	if os.Getenv(sysctlsChild) == "1" {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			t.Fatal(err)
		}
		checkSysctls(t, true)
		return
	}
	checkSysctls(t, false)
	cmd := exec.Command(os.Args[0], "-test.run=^TestSysctls$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), sysctlsChild+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestSysctls") {
		t.Fatalf("in a pid namespace of its own: %v\n%s", err, out)
	}
}

// checkSysctls writes accept_ra of two namespaces in turn, more times
// than one procfs instance serves, and reads each back; private says the
// writes must go through a private instance.
func checkSysctls(t *testing.T, private bool) {
	const key = "net/ipv6/conf/default/accept_ra"
	var nss []*os.File
	for range 2 {
		ns, err := nsfd.NewNet()
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		nss = append(nss, ns)
	}
	read := func(ns *os.File) string {
		var b []byte
		if err := nsfd.Do(ns, func() (err error) { b, err = os.ReadFile("/proc/sys/" + key); return err }); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	s := nsfd.NewSysctls()
	defer s.Close()
	for i := range 300 {
		for v, ns := range nss {
			if err := nsfd.Do(ns, func() error { return s.Write(key, fmt.Sprint(v)) }); err != nil {
				t.Fatal(err)
			}
		}
		if got := nsfd.PrivateSysctls(s); got != private {
			t.Fatalf("write %d: through a private procfs instance: %v, want %v", i, got, private)
		}
	}
	for v, ns := range nss {
		if got := read(ns); got != fmt.Sprint(v) {
			t.Errorf("namespace %d: %s is %s, want %d", v, key, got, v)
		}
	}
	var none *nsfd.Sysctls
	if err := nsfd.Do(nss[0], func() error { return none.Write(key, "2") }); err != nil {
		t.Fatal(err)
	}
	if got := read(nss[0]); got != "2" {
		t.Errorf("a nil Sysctls wrote %s: it is %s, want 2", key, got)
	}
	if err := nsfd.Do(nss[0], func() error { return s.Write("net/ipv6/conf/default/no_such_key", "1") }); err == nil || !strings.Contains(err.Error(), "/proc/sys/net/ipv6/conf/default/no_such_key") {
		t.Errorf("a write of a missing key: %v, want an error naming /proc/sys/net/ipv6/conf/default/no_such_key", err)
	}
}
