package install

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestReadOwnedFile(t *testing.T) {
	dir := t.TempDir()
	me := os.Getuid()
	write := func(name string, data []byte, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("ok", []byte("{}"), 0o644)
	write("big", make([]byte, 100), 0o644)
	write("writable", []byte("{}"), 0o666)
	if err := os.Symlink(filepath.Join(dir, "ok"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if b, err := ReadOwnedFile(d, "ok", me, 64); err != nil || string(b) != "{}" {
		t.Errorf("a regular file of the owner: %q, %v", b, err)
	}
	if _, err := ReadOwnedFile(d, "missing", me, 64); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	start := time.Now()
	for _, c := range []struct {
		name  string
		owner int
	}{{"link", me}, {"fifo", me}, {"big", me}, {"writable", me}, {"ok", me + 1}, {"ok", NotCaller}} {
		b, err := ReadOwnedFile(d, c.name, c.owner, 64)
		if !errors.Is(err, ErrUnsafe) || b != nil {
			t.Errorf("%s (owner %d): %q, %v; want ErrUnsafe and nothing read", c.name, c.owner, b, err)
		}
	}
	if time.Since(start) > time.Second {
		t.Errorf("refusals took %s: something blocked (the FIFO?)", time.Since(start))
	}
}

func TestOpenVerifiedDir(t *testing.T) {
	dir := t.TempDir()
	me := os.Getuid()
	if err := os.Mkdir(filepath.Join(dir, "mine"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "mine"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "open"), 0o777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(filepath.Join(dir, "open"), 0o777)
	parent, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	d, err := OpenVerifiedDir(parent, "mine", me)
	if err != nil {
		t.Fatalf("own folder: %v", err)
	}
	d.Close()
	if _, err := OpenVerifiedDir(parent, "nothing", me); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("missing folder: %v", err)
	}
	for _, c := range []struct {
		name  string
		owner int
	}{{"link", me}, {"open", me}, {"mine", me + 1}, {"mine", NotCaller}} {
		if _, err := OpenVerifiedDir(parent, c.name, c.owner); !errors.Is(err, ErrUnsafe) {
			t.Errorf("%s (owner %d): %v; want ErrUnsafe", c.name, c.owner, err)
		}
	}
}

// TestHostPools: a record names its host pools; an older helper's record,
// without them, gives the default pools where they hold its host link,
// else the link's own prefix.
func TestHostPools(t *testing.T) {
	pp := netip.MustParsePrefix
	for _, c := range []struct {
		rec    Record
		v4, v6 string
	}{
		{Record{HostAddr: pp("10.9.0.1/30"), HostPool: pp("10.9.0.0/24"), HostAddr6: pp("fd01::1/64"), HostPool6: pp("fd01::/48")}, "10.9.0.0/24", "fd01::/48"},
		{Record{HostAddr: pp("172.18.255.1/30"), HostAddr6: pp("fd6e:7372::1/64")}, "172.18.255.0/24", "fd6e:7372::/48"},
		{Record{HostAddr: pp("10.9.0.5/30"), HostAddr6: pp("fd01::1/64")}, "10.9.0.4/30", "fd01::/64"},
		{Record{HostAddr: pp("172.18.255.1/30")}, "172.18.255.0/24", "invalid Prefix"},
	} {
		v4, v6 := c.rec.HostPools()
		if v4.String() != c.v4 || v6.String() != c.v6 {
			t.Errorf("%+v: %s %s, want %s %s", c.rec, v4, v6, c.v4, c.v6)
		}
	}
}
