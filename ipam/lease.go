package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Leases hands out the /30 blocks of Pool, one per owner (a run id), as in
// CNI's host-local IPAM: one file per lease, named after the block and
// created with O_EXCL, under a flock on the folder. A lease whose owner is
// no longer alive is taken over by the next Acquire.
type Leases struct {
	Dir   string
	Pool  netip.Prefix
	Alive func(owner string) bool
}

// Acquire leases a free /30 to owner.
func (l *Leases) Acquire(owner string) (netip.Prefix, error) {
	unlock, err := l.lock()
	if err != nil {
		return netip.Prefix{}, err
	}
	defer unlock()
	blocks := l.blocks()
	if blocks == 0 {
		return netip.Prefix{}, fmt.Errorf("uplink pool %s is smaller than a /30", l.Pool)
	}
	start := l.hint() % blocks
	for i := 0; i < blocks; i++ {
		n := (start + i) % blocks
		p := l.block(n)
		path := filepath.Join(l.Dir, p.Addr().String())
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
		if errors.Is(err, os.ErrExist) {
			b, rerr := os.ReadFile(path)
			if rerr != nil || l.Alive(strings.TrimSpace(string(b))) {
				continue
			}
			// The owner is dead: take the lease over.
			f, err = os.OpenFile(path, os.O_TRUNC|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
		}
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("lease %s: %w", p, err)
		}
		_, werr := f.WriteString(owner + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(path)
			return netip.Prefix{}, fmt.Errorf("lease %s: %w", p, werr)
		}
		_ = os.WriteFile(filepath.Join(l.Dir, "last"), []byte(fmt.Sprint(n+1)), 0o600)
		return p, nil
	}
	return netip.Prefix{}, fmt.Errorf("all %d uplinks of %s are used by live runs; end some runs (nsrun ls), or reinstall with a larger --runs-cidr", blocks, l.Pool)
}

// Release gives p back if owner still holds it.
func (l *Leases) Release(p netip.Prefix, owner string) error {
	unlock, err := l.lock()
	if err != nil {
		return err
	}
	defer unlock()
	path := filepath.Join(l.Dir, p.Addr().String())
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(b)) != owner {
		return nil
	}
	return os.Remove(path)
}

// Held lists the leases and their owners.
func (l *Leases) Held() (map[netip.Prefix]string, error) {
	ents, err := os.ReadDir(l.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[netip.Prefix]string{}
	for _, e := range ents {
		a, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(l.Dir, e.Name()))
		out[netip.PrefixFrom(a, 30)] = strings.TrimSpace(string(b))
	}
	return out, nil
}

// GC removes the leases of owners that are no longer alive.
func (l *Leases) GC() ([]netip.Prefix, error) {
	unlock, err := l.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	held, err := l.Held()
	if err != nil {
		return nil, err
	}
	var removed []netip.Prefix
	for p, owner := range held {
		if !l.Alive(owner) {
			if err := os.Remove(filepath.Join(l.Dir, p.Addr().String())); err == nil {
				removed = append(removed, p)
			}
		}
	}
	return removed, nil
}

func (l *Leases) lock() (func(), error) {
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create lease folder: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(l.Dir, ".lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lease lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock leases: %w", err)
	}
	return func() { f.Close() }, nil
}

func (l *Leases) blocks() int {
	if l.Pool.Bits() > 30 {
		return 0
	}
	return 1 << (30 - l.Pool.Bits())
}

func (l *Leases) block(n int) netip.Prefix {
	a := l.Pool.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(n) * 4
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 30)
}

func (l *Leases) hint() int {
	b, err := os.ReadFile(filepath.Join(l.Dir, "last"))
	if err != nil {
		return 0
	}
	var n int
	_, _ = fmt.Sscan(string(b), &n)
	if n < 0 {
		return 0
	}
	return n
}
