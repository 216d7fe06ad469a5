package helper

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/install"
)

// stateDir is the helper's root-only state: the host-wide lock and the
// authoritative record of each installed user (users/UID.json). Nothing
// under /run/user is ever read by root; the user's install.json is a copy.
const stateDir = "/run/nsrun-helper"

// lockTimeout bounds the wait for another install or uninstall.
const lockTimeout = 2 * time.Minute

// state is the opened, verified state folder, held under the lock.
type state struct {
	dir, users *os.File
	lock       *os.File
	create     bool // not a dry run: the lock file may be made
}

// openState opens the state folder, checking that it and users/ are
// root's; with create it makes them first. Without create a missing
// folder is an empty state (a dry run or status changes nothing).
func openState(create bool) (*state, error) {
	if create {
		if err := os.Mkdir(stateDir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("create %s: %w", stateDir, err)
		}
	}
	d, err := install.OpenVerifiedDir(nil, stateDir, 0)
	if !create && errors.Is(err, install.ErrNotInstalled) {
		return &state{}, nil
	}
	if err != nil {
		return nil, err
	}
	s := &state{dir: d, create: create}
	if create {
		if err := unix.Mkdirat(int(d.Fd()), "users", 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			s.close()
			return nil, fmt.Errorf("create %s/users: %w", stateDir, err)
		}
	}
	if s.users, err = install.OpenVerifiedDir(d, "users", 0); err != nil && !(!create && errors.Is(err, install.ErrNotInstalled)) {
		s.close()
		return nil, err
	}
	return s, nil
}

// acquire takes the host-wide lock: every install and uninstall on the
// host runs one at a time. It waits at most lockTimeout, and gives up when
// stop reports a signal.
func (s *state) acquire(stop func() bool) error {
	if s.dir == nil {
		return nil // dry run on a host without the state folder
	}
	flags := unix.O_RDWR | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if s.create {
		flags |= unix.O_CREAT
	}
	fd, err := unix.Openat(int(s.dir.Fd()), "lock", flags, 0o600)
	if errors.Is(err, unix.ENOENT) {
		return nil // a dry run, and no install has ever run
	}
	if err != nil {
		return fmt.Errorf("open %s/lock: %w", stateDir, err)
	}
	s.lock = os.NewFile(uintptr(fd), stateDir+"/lock")
	for deadline := time.Now().Add(lockTimeout); ; time.Sleep(20 * time.Millisecond) {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case stop():
			return errStopped
		case !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline):
			return fmt.Errorf("lock %s/lock (another nsrun-helper install or uninstall is running): %w", stateDir, err)
		}
	}
}

func (s *state) close() {
	for _, f := range []*os.File{s.lock, s.users, s.dir} {
		if f != nil {
			f.Close() // closing the lock file releases the lock
		}
	}
}

// record reads uid's authoritative record; ok is false when there is none.
func (s *state) record(uid int) (r install.Record, ok bool, err error) {
	if s.users == nil {
		return r, false, nil
	}
	b, err := install.ReadRootFile(s.users, strconv.Itoa(uid)+".json", install.MaxRecordSize)
	if errors.Is(err, os.ErrNotExist) {
		return r, false, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil {
		return r, false, fmt.Errorf("%s/users/%d.json is not a valid record: %w", stateDir, uid, err)
	}
	return r, true, nil
}

// others returns the records of every installed user but uid.
func (s *state) others(uid int) ([]install.Record, error) {
	if s.users == nil {
		return nil, nil
	}
	names, err := s.users.Readdirnames(-1)
	if _, serr := s.users.Seek(0, 0); err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("list %s/users: %w", stateDir, err)
	}
	var out []install.Record
	for _, n := range names {
		id, err := strconv.Atoi(strings.TrimSuffix(n, ".json"))
		if err != nil || !strings.HasSuffix(n, ".json") || id == uid {
			continue
		}
		if r, ok, err := s.record(id); err == nil && ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// marshalRecord is the record's one encoding, in both copies.
func marshalRecord(r install.Record) []byte {
	b, _ := json.MarshalIndent(r, "", "  ")
	return append(b, '\n')
}

// netNS is the inode of the helper's network namespace.
func netNS() (nsID, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		return nsID{}, fmt.Errorf("stat /proc/self/ns/net: %w", err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nsID{}, fmt.Errorf("socket for the network namespace's cookie: %w", err)
	}
	defer unix.Close(fd)
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		cookie = 0 // before Linux 5.14: the inode alone
	}
	return nsID{Ino: st.Ino, Cookie: cookie}, nil
}

// nsID names a network namespace: by its inode, which the kernel gives
// to the next new namespace once this one is gone, and by its cookie,
// which it never gives twice (0 where the kernel has none).
type nsID struct{ Ino, Cookie uint64 }

// local returns the records of every user but uid installed into the
// helper's network namespace (a record of a helper that wrote none counts
// as the host's: init's network namespace).
func (s *state) local(uid int, ns nsID) ([]install.Record, error) {
	all, err := s.others(uid)
	var out []install.Record
	for _, r := range all {
		if inNS(r, ns) {
			out = append(out, r)
		}
	}
	return out, err
}

// hostState is what the first install in a network namespace found there,
// before it changed anything, so that the last uninstall can put it back:
// writing ip_forward changes net.ipv4.conf.all.accept_redirects too.
type hostState struct {
	IPForward              string `json:"ip_forward"`
	AllAcceptRedirects     string `json:"all_accept_redirects"`
	DefaultAcceptRedirects string `json:"default_accept_redirects"`
	// IPv6Forward is net.ipv6.conf.all.forwarding ("" where the host has
	// no IPv6, or the state was saved by a helper that never changed it).
	IPv6Forward string `json:"ipv6_forwarding,omitempty"`
	// IPv4ForwardingOn and IPv6ForwardingOn are the interfaces (and
	// "default") whose own forwarding was on while the family's switch
	// for all was off: writing that switch writes every interface's, so
	// the last uninstall, after turning it off, turns these on again.
	IPv4ForwardingOn []string `json:"ipv4_forwarding_on,omitempty"`
	IPv6ForwardingOn []string `json:"ipv6_forwarding_on,omitempty"`
}

// hostSysctls are the sysctls hostState saves, by key.
var hostSysctls = []string{"net/ipv4/ip_forward", "net/ipv4/conf/all/accept_redirects", "net/ipv4/conf/default/accept_redirects"}

func hostStateName(ns uint64) string { return "host-" + strconv.FormatUint(ns, 10) + ".json" }

// readHostState reads the saved host state of the namespace ns; ok is
// false when there is none.
func (s *state) readHostState(ns uint64) (h hostState, ok bool, err error) {
	if s.dir == nil {
		return h, false, nil
	}
	b, err := install.ReadRootFile(s.dir, hostStateName(ns), install.MaxRecordSize)
	if errors.Is(err, os.ErrNotExist) {
		return h, false, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &h)
	}
	if err != nil {
		return h, false, fmt.Errorf("%s/%s is not a valid host state: %w", stateDir, hostStateName(ns), err)
	}
	return h, true, nil
}

// currentHostState reads the live values hostState saves.
func currentHostState() hostState {
	h := hostState{IPForward: sysctl(hostSysctls[0]), AllAcceptRedirects: sysctl(hostSysctls[1]), DefaultAcceptRedirects: sysctl(hostSysctls[2]), IPv6Forward: sysctl(forward6)}
	if h.IPForward == "0" {
		h.IPv4ForwardingOn = forwardingOn("ipv4")
	}
	if h.IPv6Forward == "0" {
		h.IPv6ForwardingOn = forwardingOn("ipv6")
	}
	return h
}

// forwardingOn lists the interfaces of family ("ipv4" or "ipv6"), and
// "default", whose own forwarding is 1.
func forwardingOn(family string) []string {
	entries, err := os.ReadDir("/proc/sys/net/" + family + "/conf")
	if err != nil {
		return nil
	}
	var on []string
	for _, e := range entries {
		if e.Name() != "all" && sysctl(forwardingKey(family, e.Name())) == "1" {
			on = append(on, e.Name())
		}
	}
	return on
}

// forwardingKey is the forwarding sysctl of interface ifname ("default"
// included) of family.
func forwardingKey(family, ifname string) string {
	return "net/" + family + "/conf/" + ifname + "/forwarding"
}

// restoreForwarding turns forwarding on again on the interfaces of
// family that had it on by themselves (hostState.IPv4ForwardingOn); an
// interface gone since is skipped, and so is a name that is none.
func restoreForwarding(family string, names []string) error {
	for _, name := range names {
		if name == "" || name == "." || name == ".." || name == "all" || strings.ContainsRune(name, '/') {
			continue
		}
		if err := setSysctl(forwardingKey(family, name), "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func (h hostState) values() []string {
	return []string{h.IPForward, h.AllAcceptRedirects, h.DefaultAcceptRedirects}
}

func marshalHostState(h hostState) []byte {
	b, _ := json.MarshalIndent(h, "", "  ")
	return append(b, '\n')
}

// inNS reports whether the install r records was into the network
// namespace ns: by the cookie, else (a record of an older helper) by the
// inode; one of a helper that recorded neither was into init's. (A record
// left by a namespace that died without its uninstall names an inode that
// a later namespace may get, but never its cookie.)
func inNS(r install.Record, ns nsID) bool {
	switch {
	case r.NetNSCookie != 0 && ns.Cookie != 0:
		return r.NetNSCookie == ns.Cookie
	case r.NetNS != 0:
		return r.NetNS == ns.Ino
	}
	var st unix.Stat_t
	return unix.Stat("/proc/1/ns/net", &st) == nil && st.Ino == ns.Ino
}
