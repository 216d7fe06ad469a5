// Package install describes what nsrun-helper installs for a user and where:
// the folder of persisted namespaces under /run/user/UID/nsrun and the
// record (install.json) that nsrun and `nsrun-helper status` read, without
// root, to join the gateway and reach the host.
package install

import (
	"encoding/json"
	"errors"
	"fmt"
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
)

// GatewayUplink is the gateway's end of the host veth, inside the gateway.
const GatewayUplink = "uplink"

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
	Table     string         `json:"table"`             // host nftables table (family ip)
	MadeDir   bool           `json:"made_run_user_dir"` // install created /run/user/UID
}

// RunUserDir is /run/user/UID.
func RunUserDir(uid int) string { return filepath.Join("/run/user", strconv.Itoa(uid)) }

// Dir is the root-owned folder of persisted namespaces and the record.
func Dir(uid int) string { return filepath.Join(RunUserDir(uid), "nsrun") }

// UserNSPath and NetNSPath are the bind mounts of the gateway's namespaces.
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

// Load reads uid's record and checks that the namespaces are still
// mounted. It needs no privilege.
func Load(uid int) (Record, error) {
	var r Record
	b, err := os.ReadFile(RecordPath(uid))
	if errors.Is(err, os.ErrNotExist) {
		return r, ErrNotInstalled
	}
	if err != nil {
		return r, fmt.Errorf("read %s: %w", RecordPath(uid), err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("read %s: %w", RecordPath(uid), err)
	}
	for _, p := range []string{UserNSPath(uid), NetNSPath(uid)} {
		if !IsNamespaceMount(p) {
			return r, fmt.Errorf("%w: %s is no longer a mounted namespace (gone after a reboot or logout); run `sudo nsrun-helper install` again", ErrNotInstalled, p)
		}
	}
	return r, nil
}

// Save writes the record (root-owned, world-readable).
func Save(r Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := RecordPath(r.UID) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, RecordPath(r.UID)); err != nil {
		return fmt.Errorf("write %s: %w", RecordPath(r.UID), err)
	}
	return nil
}

// IsNamespaceMount reports whether path is a file with a namespace
// (nsfs) mounted on it.
func IsNamespaceMount(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}
