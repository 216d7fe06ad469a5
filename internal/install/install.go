// Package install describes what nsrun-helper installs for a user and where:
// the folder of persisted namespaces under /run/user/UID/nsrun (a
// read-only view the helper mounts of its own /run/nsrun-helper/gw/UID)
// and the record (install.json) that nsrun and `nsrun-helper status` read,
// without root, to join the gateway and reach the host.
//
// install.json is the user's copy of the record, for nsrun's convenience.
// The helper itself (root) never reads it: its authoritative copy lives in
// the root-only /run/nsrun-helper.
package install

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Defaults of nsrun-helper install.
var (
	DefaultHostPool = netip.MustParsePrefix("172.18.255.0/24")
	DefaultRunsCIDR = netip.MustParsePrefix("172.18.192.0/19")
	// DefaultHostPool6 is the ULA pool of the host links' IPv6 /64s: the
	// user whose host /30 is the Nth of the host pool gets its Nth /64.
	DefaultHostPool6 = netip.MustParsePrefix("fd6e:7372::/48")
)

// GatewayUplink is the gateway's end of the host veth, inside the gateway.
const GatewayUplink = "uplink"

// GatewayLinkLocal is the link-local address the helper gives the
// gateway's end (the kernel generates none there): the host accepts
// neighbour discovery from it and from the gateway's static address only.
var GatewayLinkLocal = netip.MustParsePrefix("fe80::2/64")

// Record is what install.json holds.
type Record struct {
	User      string         `json:"user"`
	UID       int            `json:"uid"`
	GID       int            `json:"gid"`
	Interface string         `json:"interface"`         // host end of the veth
	HostAddr  netip.Prefix   `json:"host_addr"`         // e.g. 172.18.255.1/30
	Gateway   netip.Prefix   `json:"gateway_addr"`      // e.g. 172.18.255.2/30
	RunsCIDR  netip.Prefix   `json:"runs_cidr"`         // run uplinks are /30s of it
	Resolver  netip.AddrPort `json:"resolver,omitzero"` // DNS target on the host, if any
	Table     string         `json:"table"`             // host nftables table (family inet)
	MadeDir   bool           `json:"made_run_user_dir"` // install created /run/user/UID
	// HostAddr6 and Gateway6 are the static IPv6 addresses of the host
	// veth's two ends (PREFIX::1/64 and PREFIX::2/64 of the user's /64 of
	// the admin's host-cidr6); none where the host has no IPv6, and then
	// the host drops all IPv6 from the gateway.
	HostAddr6 netip.Prefix `json:"host_addr6,omitzero"`
	Gateway6  netip.Prefix `json:"gateway_addr6,omitzero"`
	// HostPool and HostPool6 are the pools every user's host link comes
	// from (the admin's host-cidr and host-cidr6): a run's subnet must not
	// overlap them, or its nodes would take the host for a neighbour.
	// Records of older helpers have none (see HostPools).
	HostPool  netip.Prefix `json:"host_pool,omitzero"`
	HostPool6 netip.Prefix `json:"host_pool6,omitzero"`
	// NetNS is the inode of the network namespace the helper installed
	// into (the host's; a test's simulated host has its own): the guard
	// table of a namespace lists the records of that namespace only.
	NetNS uint64 `json:"netns,omitzero"`
	// NetNSCookie is that namespace's cookie (SO_NETNS_COOKIE), which,
	// unlike its inode, the kernel never gives to another namespace: a
	// namespace made after this one died often gets its inode.
	NetNSCookie uint64 `json:"netns_cookie,omitzero"`
}

// HostPools returns the record's host pools; for a record without them
// (an older helper's), the default pool where it holds the host link, else
// the host link's own prefix (v6: invalid without an IPv6 host link).
func (r Record) HostPools() (v4, v6 netip.Prefix) {
	v4, v6 = r.HostPool, r.HostPool6
	if !v4.IsValid() {
		v4 = r.HostAddr.Masked()
		if DefaultHostPool.Contains(r.HostAddr.Addr()) {
			v4 = DefaultHostPool
		}
	}
	if !v6.IsValid() && r.HostAddr6.IsValid() {
		v6 = r.HostAddr6.Masked()
		if DefaultHostPool6.Contains(r.HostAddr6.Addr()) {
			v6 = DefaultHostPool6
		}
	}
	return v4, v6
}

// MaxRecordSize bounds what is read of a record.
const MaxRecordSize = 64 << 10

// RunUserDir is /run/user/UID.
func RunUserDir(uid int) string { return filepath.Join("/run/user", strconv.Itoa(uid)) }

// Dir is the root-owned folder of persisted namespaces and the record:
// the user's read-only view of the helper's own folder.
func Dir(uid int) string { return filepath.Join(RunUserDir(uid), "nsrun") }

// UserNSPath is the bind mount of the gateway's user namespace.
func UserNSPath(uid int) string { return filepath.Join(Dir(uid), "userns") }

// NetNSPath is the bind mount of the gateway network namespace.
func NetNSPath(uid int) string { return filepath.Join(Dir(uid), "netns") }

// RecordPath is the install record.
func RecordPath(uid int) string { return filepath.Join(Dir(uid), "install.json") }

// InterfaceName is the host end of uid's gateway veth.
func InterfaceName(uid int) string { return "nsrun" + strconv.Itoa(uid) }

// TableName is uid's nftables table in the host namespace.
func TableName(uid int) string { return "nsrun-" + strconv.Itoa(uid) }

// ErrNotInstalled means nsrun-helper install has not run for this user
// since boot (or was uninstalled).
var ErrNotInstalled = errors.New("nsrun-helper is not installed for this user")

// ErrUnsafe marks a path that is not what the helper made: a symlink, a
// FIFO, or a folder or file of the wrong owner.
var ErrUnsafe = errors.New("not what nsrun-helper made")

// Load reads uid's record and checks that the namespaces are still
// mounted. It needs no privilege. Nothing is read through a symlink, a
// FIFO or a folder that is not root's: those are ErrUnsafe.
func Load(uid int) (Record, error) {
	var r Record
	// Inside nsrun's own user namespace the caller is root and root is
	// nobody: the checks are "the caller's" and "not the caller's".
	ud, err := OpenVerifiedDir(nil, RunUserDir(uid), os.Geteuid())
	if err != nil {
		return r, err
	}
	defer ud.Close()
	d, err := OpenVerifiedDir(ud, "nsrun", NotCaller)
	if err != nil {
		return r, err
	}
	defer d.Close()
	b, err := ReadOwnedFile(d, "install.json", NotCaller, MaxRecordSize)
	if errors.Is(err, os.ErrNotExist) {
		return r, ErrNotInstalled
	}
	if err != nil {
		return r, fmt.Errorf("%s: %w", RecordPath(uid), err)
	}
	if err := json.Unmarshal(b, &r); err != nil || r.UID != uid {
		return Record{}, fmt.Errorf("%s is not a valid install record; run `sudo nsrun-helper install` again", RecordPath(uid))
	}
	for _, name := range []string{"userns", "netns"} {
		if !NamespaceMounted(d, name) {
			return r, fmt.Errorf("%w: %s is no longer a mounted namespace (gone after a reboot or logout); run `sudo nsrun-helper install` again", ErrNotInstalled, filepath.Join(Dir(uid), name))
		}
	}
	return r, nil
}

// NotCaller, as an owner to check, is any uid but the caller's own.
const NotCaller = -1

func ownerOK(got uint32, want int) bool {
	if want == NotCaller {
		return int(got) != os.Geteuid()
	}
	return int(got) == want
}

// OpenVerifiedDir opens name inside parent (an absolute path when parent
// is nil) as a directory without following a symlink, and checks that it
// belongs to owner (or, with NotCaller, not to the caller) and is not
// writable by group or others. A missing folder is ErrNotInstalled.
func OpenVerifiedDir(parent *os.File, name string, owner int) (*os.File, error) {
	at, path := unix.AT_FDCWD, name
	if parent != nil {
		at, path = int(parent.Fd()), filepath.Join(parent.Name(), name)
	}
	fd, err := unix.Openat(at, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, fmt.Errorf("%w: %s does not exist", ErrNotInstalled, path)
	case errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR):
		return nil, fmt.Errorf("%s is a symlink or not a folder (%w): refusing to use it; remove it and run install again", path, ErrUnsafe)
	case err != nil:
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	d := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		d.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if !ownerOK(st.Uid, owner) || st.Mode&0o022 != 0 {
		d.Close()
		return nil, fmt.Errorf("%s is owned by uid %d with mode %o, where it must be %s and writable by no one else (%w): refusing to use it; remove it and run install again", path, st.Uid, st.Mode&0o777, ownerName(owner), ErrUnsafe)
	}
	return d, nil
}

func ownerName(owner int) string {
	switch owner {
	case NotCaller:
		return "another user's (root's)"
	case 0:
		return "root's"
	}
	return fmt.Sprintf("uid %d's", owner)
}

// ReadRootFile reads name inside the folder d: it must be a regular file
// owned by root, not writable by others, and at most limit bytes. It is
// opened without following a symlink and without blocking on a FIFO.
// Errors name what is wrong, never the contents.
func ReadRootFile(d *os.File, name string, limit int64) ([]byte, error) {
	return ReadOwnedFile(d, name, 0, limit)
}

// ReadOwnedFile is ReadRootFile for a file of owner (or NotCaller).
func ReadOwnedFile(d *os.File, name string, owner int, limit int64) ([]byte, error) {
	fd, err := unix.Openat(int(d.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, os.ErrNotExist
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("a symlink (%w): refusing to read it", ErrUnsafe)
	case err != nil:
		return nil, fmt.Errorf("open: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("stat: %w", err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, fmt.Errorf("not a regular file (%w): refusing to read it", ErrUnsafe)
	case !ownerOK(st.Uid, owner) || st.Mode&0o022 != 0:
		return nil, fmt.Errorf("owned by uid %d with mode %o, where it must be %s and writable by no one else (%w): refusing to read it", st.Uid, st.Mode&0o777, ownerName(owner), ErrUnsafe)
	case st.Size > limit:
		return nil, fmt.Errorf("%d bytes, more than the %d allowed (%w)", st.Size, limit, ErrUnsafe)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("more than the %d bytes allowed (%w)", limit, ErrUnsafe)
	}
	return b, nil
}

// NamespaceMounted reports whether name inside the folder d is a file with
// a namespace (nsfs) mounted on it, not following a symlink.
func NamespaceMounted(d *os.File, name string) bool {
	fd, err := unix.Openat(int(d.Fd()), name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	return unix.Fstatfs(fd, &st) == nil && st.Type == unix.NSFS_MAGIC
}
