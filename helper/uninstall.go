package helper

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/install"
	"github.com/nsrun/nsrun/nft"
)

// Uninstall removes exactly what Install made for uid, printing every step.
// Running it again, or without an install, changes nothing.
func Uninstall(name string, uid int, w io.Writer, dryRun bool) error {
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer host.Close()
	rec := previousRecord(uid)
	ifname, table := install.InterfaceName(uid), install.TableName(uid)
	userDir := install.RunUserDir(uid)
	plan := Plan{
		{
			Describe: fmt.Sprintf("delete the host's nftables table ip %s", table),
			Done: func() (bool, error) {
				ok, err := nft.Exists(nil, nftables.TableFamilyIPv4, table)
				return !ok, err
			},
			Apply: func() error { return nft.Delete(nil, nftables.TableFamilyIPv4, table) },
		},
		{
			Describe: fmt.Sprintf("delete veth %s (its peer in the gateway goes with it)", ifname),
			Done: func() (bool, error) {
				_, err := host.LinkByName(ifname)
				return err != nil, nil
			},
			Apply: func() error {
				l, err := host.LinkByName(ifname)
				if err != nil {
					return nil
				}
				return host.LinkDel(l)
			},
		},
		{
			Describe: fmt.Sprintf("unmount and remove %s and %s, remove %s and %s",
				install.UserNSPath(uid), install.NetNSPath(uid), install.RecordPath(uid), install.Dir(uid)),
			Done: func() (bool, error) {
				_, err := os.Lstat(install.Dir(uid))
				return errors.Is(err, os.ErrNotExist), nil
			},
			Apply: func() error { return removeNamespaceDir(userDir) },
		},
		{
			Describe: fmt.Sprintf("unregister uid %d; if no user is left, restore net.ipv4.ip_forward to its value before the first install and remove %s", uid, stateDir),
			Done: func() (bool, error) {
				_, err := os.Stat(filepath.Join(stateDir, "users", strconv.Itoa(uid)))
				return errors.Is(err, os.ErrNotExist), nil
			},
			Apply: func() error { return disableForwarding(uid) },
		},
	}
	if rec.MadeDir {
		plan = append(plan, Step{
			Describe: fmt.Sprintf("remove %s (install created it), if empty", userDir),
			Done: func() (bool, error) {
				_, err := os.Lstat(userDir)
				return errors.Is(err, os.ErrNotExist), nil
			},
			Apply: func() error {
				if err := unix.Rmdir(userDir); err != nil && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
					return fmt.Errorf("remove %s: %w", userDir, err)
				}
				return nil
			},
		})
	}
	fmt.Fprintf(w, "uninstalling nsrun-helper for %s (uid %d)\n", name, uid)
	return plan.Run(w, dryRun)
}

// removeNamespaceDir unmounts and removes /run/user/UID/nsrun through
// verified fds.
func removeNamespaceDir(userDir string) error {
	ud, _, err := openDir(nil, userDir, false, 0, 0, 0)
	if err != nil {
		return err
	}
	defer ud.Close()
	d, _, err := openDir(ud, "nsrun", false, 0, 0, 0)
	if errors.Is(err, errUnsafePath) {
		// Not ours (a symlink the user made): remove the link itself only.
		return unix.Unlinkat(ud.fd, "nsrun", 0)
	}
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.requireOwner(0); err != nil {
		return err
	}
	for _, name := range []string{"userns", "netns"} {
		if err := d.unmountAndRemove(name); err != nil {
			return err
		}
	}
	for _, name := range []string{"install.json", "install.json.tmp"} {
		if err := unix.Unlinkat(d.fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s/%s: %w", d.path, name, err)
		}
	}
	if err := unix.Unlinkat(ud.fd, "nsrun", unix.AT_REMOVEDIR); err != nil {
		return fmt.Errorf("remove %s: %w", d.path, err)
	}
	return nil
}

func disableForwarding(uid int) error {
	if err := os.Remove(filepath.Join(stateDir, "users", strconv.Itoa(uid))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	left, _ := os.ReadDir(filepath.Join(stateDir, "users"))
	if len(left) > 0 {
		return nil
	}
	if b, err := os.ReadFile(filepath.Join(stateDir, "ip_forward.before")); err == nil {
		if v := strings.TrimSpace(string(b)); v == "0" || v == "1" {
			if err := writeSysctl("net/ipv4/ip_forward", v); err != nil {
				return err
			}
		}
	}
	return os.RemoveAll(stateDir)
}
