package nsfd_test

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/internal/testns"
)

// TestMain runs every test of the package in a user and network
// namespace of its own (package testns).
func TestMain(m *testing.M) { testns.Main(m) }

func link(t *testing.T, path string) string {
	t.Helper()
	l, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestDoEnterCanEnter: Do runs its closure in the namespace and leaves
// the caller's thread where it was; Enter moves a locked thread for good;
// WriteSysctl writes the namespace's own file; CanEnter tells a namespace
// this process may join from one it may not.
func TestDoEnterCanEnter(t *testing.T) {
	ns, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	want := link(t, fmt.Sprintf("/proc/self/fd/%d", ns.Fd()))
	here := link(t, "/proc/thread-self/ns/net")
	if want == here {
		t.Fatalf("NewNet gave this thread's namespace %s", here)
	}
	var inside string
	if err := nsfd.Do(ns, func() error {
		inside = link(t, "/proc/thread-self/ns/net")
		return nil
	}); err != nil || inside != want {
		t.Fatalf("Do: in %s (%v), want %s", inside, err, want)
	}
	if now := link(t, "/proc/thread-self/ns/net"); now != here {
		t.Errorf("after Do, the caller is in %s, was %s", now, here)
	}
	if err := nsfd.Do(ns, func() error { return fmt.Errorf("closure failed") }); err == nil || err.Error() != "closure failed" {
		t.Errorf("Do returns the closure's error: %v", err)
	}

	entered := make(chan string, 1)
	go func() {
		runtime.LockOSThread()
		// Deliberately no UnlockOSThread: the thread dies with this goroutine.
		if err := nsfd.Enter(ns); err != nil {
			entered <- err.Error()
			return
		}
		l, _ := os.Readlink("/proc/thread-self/ns/net")
		entered <- l
	}()
	if got := <-entered; got != want {
		t.Errorf("Enter: in %s, want %s", got, want)
	}

	// A new namespace starts with the IPv4 settings of the host's
	// (net.core.devconf_inherit_init_net=0), so neither this namespace
	// nor ns need have forwarding off: write ns the value it does not
	// have, and this namespace must keep the one it has.
	readForward := func() string {
		b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	here4 := readForward()
	var was string
	if err := nsfd.Do(ns, func() error { was = readForward(); return nil }); err != nil {
		t.Fatal(err)
	}
	value := map[string]string{"0": "1", "1": "0"}[was]
	if err := nsfd.WriteSysctl(ns, "net/ipv4/ip_forward", value); err != nil {
		t.Fatal(err)
	}
	if got := readForward(); got != here4 {
		t.Errorf("WriteSysctl in another namespace changed this one's ip_forward from %q to %q", here4, got)
	}
	_ = nsfd.Do(ns, func() error {
		if got := readForward(); got != value {
			t.Errorf("WriteSysctl: ip_forward is %q in the namespace, want %q (was %q)", got, value, was)
		}
		return nil
	})

	if err := nsfd.CanEnter(ns); err != nil {
		t.Errorf("CanEnter of a namespace of ours: %v", err)
	}
	if err := nsfd.CanEnter(testns.Outside()); err == nil {
		t.Error("CanEnter of a namespace outside our user namespace")
	}
	if err := nsfd.Do(testns.Outside(), func() error { return nil }); err == nil {
		t.Error("Do in a namespace outside our user namespace")
	}
}
