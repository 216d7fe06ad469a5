package netsetup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/nsfd"
)

// TestMappedGroups reads the bounds of ping_group_range from gid maps.
func TestMappedGroups(t *testing.T) {
	for in, want := range map[string][2]uint64{
		"         0          0 4294967295\n": {0, maxPingGroup},
		"      1007          0          1\n": {1007, 1007},
		"0 1000 1\n1 100000 65536\n":         {0, 65536},
		"1000 1000 1\n5 200 10\n":            {5, 1000},
	} {
		path := filepath.Join(t.TempDir(), "gid_map")
		if err := os.WriteFile(path, []byte(in), 0o644); err != nil {
			t.Fatal(err)
		}
		lo, hi, err := mappedGroups(path)
		if err != nil || lo != want[0] || hi != want[1] {
			t.Errorf("%q: %d %d %v, want %v", in, lo, hi, err, want)
		}
	}
	path := filepath.Join(t.TempDir(), "gid_map")
	_ = os.WriteFile(path, nil, 0o644)
	if _, _, err := mappedGroups(path); err == nil {
		t.Error("an empty gid map gave a range")
	}
}

// echo sends one ICMP echo request to 127.0.0.1 through an unprivileged
// ICMP socket in the current thread's namespace and waits for the reply.
func echo() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2}); err != nil {
		return err
	}
	req := []byte{8, 0, 0, 0, 0, 0, 0, 1, 'n', 's'} // echo request; the kernel fills id and checksum
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return err
	}
	if n < 8 || buf[0] != 0 {
		return errors.New("no echo reply")
	}
	return nil
}

// TestPrepareNamespaceAllowsPing: a fresh namespace refuses ICMP echo
// sockets to every group; once prepared, an echo goes and comes back,
// and every port is open to unprivileged programs.
func TestPrepareNamespaceAllowsPing(t *testing.T) {
	ns, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := loUp(h); err != nil {
		t.Fatal(err)
	}
	if err := nsfd.Do(ns, echo); !errors.Is(err, unix.EACCES) {
		t.Fatalf("ping in a fresh namespace: %v, want EACCES", err)
	}
	portStart := func() string {
		var b []byte
		_ = nsfd.Do(ns, func() error {
			var err error
			b, err = os.ReadFile("/proc/sys/" + unprivilegedPortStart)
			return err
		})
		return strings.TrimSpace(string(b))
	}
	if got := portStart(); got != "1024" {
		t.Fatalf("ip_unprivileged_port_start in a fresh namespace: %q, want the kernel's 1024", got)
	}
	if err := PrepareNamespace(ns, true); err != nil {
		t.Fatal(err)
	}
	if err := nsfd.Do(ns, echo); err != nil {
		t.Errorf("ping in a prepared namespace: %v", err)
	}
	// A node's unprivileged program may listen on 53 or 80 there.
	if got := portStart(); got != "0" {
		t.Errorf("ip_unprivileged_port_start in a prepared namespace: %q, want 0", got)
	}
}
