package helper

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/install"
	"github.com/nsrun/nsrun/internal/netsetup"
	"github.com/nsrun/nsrun/nft"
)

// Uninstall removes exactly what Install made for uid, printing every step.
// Running it again, or without an install, changes nothing. A signal does
// not stop it half-way: it finishes, then reports the signal.
func Uninstall(name string, uid int, w io.Writer, dryRun bool) error {
	stop, restore := holdSignals()
	defer restore()
	st, err := openState(!dryRun)
	if err != nil {
		return err
	}
	defer st.close()
	if err := st.acquire(stop); err != nil {
		return err
	}
	fmt.Fprintf(w, "uninstalling nsrun-helper for %s (uid %d)\n", name, uid)
	if dryRun {
		return withUninstall(st, uid, false, func(p Plan) error {
			_, err := p.Run(w, true, func() bool { return false })
			return err
		})
	}
	if err := uninstall(st, uid, false, w, func() bool { return false }); err != nil {
		return err
	}
	if stop() {
		return fmt.Errorf("%w: finished uninstalling first", errStopped)
	}
	return nil
}

// uninstall runs the uninstall plan for uid under the lock held in st;
// madeDir says that install created /run/user/UID (when no record says so
// yet: an install rolling back).
func uninstall(st *state, uid int, madeDir bool, w io.Writer, stop func() bool) error {
	return withUninstall(st, uid, madeDir, func(p Plan) error {
		_, err := p.Run(w, false, stop)
		return err
	})
}

// withUninstall opens what the uninstall of uid needs, refusing (before
// anything changes) a /run/user/UID/nsrun that is not the helper's, and
// passes the plan to run.
func withUninstall(st *state, uid int, madeDir bool, run func(Plan) error) error {
	host, err := netsetup.Here()
	if err != nil {
		return err
	}
	defer host.Close()
	userDir, nsDir, err := openUserDirs(uid)
	if err != nil {
		return err
	}
	for _, f := range []*os.File{userDir, nsDir} {
		if f != nil {
			defer f.Close()
		}
	}
	rec, _, err := st.record(uid)
	if err != nil {
		return err
	}
	gwDir, err := st.openGwDir(uid, false)
	if err != nil {
		return err
	}
	if gwDir != nil {
		defer gwDir.Close()
	}
	ifname, table := install.InterfaceName(uid), install.TableName(uid)
	record := strconv.Itoa(uid) + ".json"
	plan := Plan{
		{
			Describe: fmt.Sprintf("delete veth %s (its peer in the gateway goes with it)", ifname),
			Done: func() (bool, error) {
				_, ok, err := netsetup.LinkUp(host, ifname)
				return !ok, err
			},
			Apply: func() error { return netsetup.DeleteLink(host, ifname) },
		},
		{
			Describe: fmt.Sprintf("delete the host's nftables table inet %s (after the interface is gone) and %s from the guard table inet %s;\nthe last user's uninstall deletes the guard table too, and sets net.ipv4.ip_forward and net.ipv6.conf.all.forwarding back to 0 if they were 0 before the first install (and forwarding back to 1 on the interfaces that had it on by themselves then)",
				table, ifname, nft.GuardTableName),
			Done: func() (bool, error) {
				ok, err := nft.Exists(nil, nftables.TableFamilyINet, table)
				g, gok, gerr := nft.ReadGuard()
				saved, serr := hostStateLeft(st, uid)
				return !ok && !slices.Contains(g.Interfaces, ifname) && !(saved && !gok), errors.Join(err, gerr, serr)
			},
			Apply: func() error { return removeTables(st, uid, table) },
		},
		{
			Describe: fmt.Sprintf("unmount every view of %[1]s (%[2]s, wherever it now lies) and every namespace mount of a gateway of yours (also one an older helper left in a folder you renamed), remove %[2]s;\nunmount and remove %[1]s/userns, %[1]s/netns and %[1]s/install.json, and %[1]s",
				gwPath(uid), install.Dir(uid)),
			Done: func() (bool, error) {
				views, err := hasViews(gwDir)
				strays, serr := hasStrayNamespaces(uid)
				return gwDir == nil && !views && !strays && nsDir == nil, errors.Join(err, serr)
			},
			Apply: func() error {
				if err := unmountViews(gwDir); err != nil {
					return err
				}
				if err := unmountStrayNamespaces(uid, nil); err != nil {
					return err
				}
				if userDir != nil {
					// The mount point, or an older helper's folder: root's.
					if d, err := install.OpenVerifiedDir(userDir, "nsrun", 0); err == nil {
						err = errors.Join(unmountAndRemove(d, "userns"), unmountAndRemove(d, "netns"), removeFile(d, "install.json"))
						d.Close()
						if err != nil {
							return err
						}
						if err := unix.Unlinkat(int(userDir.Fd()), "nsrun", unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
							return fmt.Errorf("remove %s: %w", install.Dir(uid), err)
						}
					} else if !errors.Is(err, install.ErrNotInstalled) {
						return err
					}
				}
				return st.removeGwDir(uid)
			},
		},
		{
			Describe: fmt.Sprintf("remove the record %s/users/%s", stateDir, record),
			Done: func() (bool, error) {
				_, ok, err := st.record(uid)
				return !ok, err
			},
			Apply: func() error { return removeFile(st.users, record) },
		},
	}
	if rec.MadeDir || madeDir {
		userPath := install.RunUserDir(uid)
		plan = append(plan, Step{
			Describe: fmt.Sprintf("remove %s (install created it), if empty", userPath),
			Done:     func() (bool, error) { return userDir == nil, nil },
			Apply: func() error {
				if err := unix.Rmdir(userPath); err != nil && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
					return fmt.Errorf("remove %s: %w", userPath, err)
				}
				return nil
			},
		})
	}
	return run(plan)
}

// removeTables deletes the user's table and rewrites the guard table
// with the interfaces of the users still recorded in this network
// namespace; with none left, it puts back what the first install saved
// (ip_forward, then the accept_redirects that writing it changed), then
// deletes the guard, in that order: forwarding is never on without the
// guard.
func removeTables(st *state, uid int, table string) error {
	// (and "ip nsrun-UID", the table of helpers before the guard table)
	for _, family := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyIPv4} {
		if err := nft.Delete(nil, family, table); err != nil {
			return err
		}
	}
	ns, err := netNS()
	if err != nil {
		return err
	}
	local, err := st.local(uid, ns)
	if err != nil {
		return err
	}
	saved, haveSaved, err := st.readHostState(ns.Ino)
	if err != nil {
		return err
	}
	g, gok, err := nft.ReadGuard()
	if err != nil {
		return err
	}
	if haveSaved {
		g.DropOthers, g.DropOthers6 = saved.IPForward != "1", saved.IPv6Forward == "0"
	}
	if len(local) > 0 {
		g.Interfaces = nil
		for _, r := range local {
			g.Interfaces = append(g.Interfaces, r.Interface)
		}
		slices.Sort(g.Interfaces)
		return nft.Apply(nil, nft.GuardTable(g))
	}
	// Without the guard and without a record of uid here, nothing was
	// changed yet (an install undone before its tables), or the file is a
	// leftover of a namespace that had the same inode: it is only removed.
	own, ok, err := st.record(uid)
	if err != nil {
		return err
	}
	changed := gok || (ok && inNS(own, ns))
	if haveSaved && changed {
		if saved.IPForward != "1" {
			if err := setSysctl(hostSysctls[0], "0"); err != nil {
				return err
			}
			if err := restoreForwarding("ipv4", saved.IPv4ForwardingOn); err != nil {
				return err
			}
		}
		if saved.IPv6Forward == "0" && sysctl(forward6) == "1" {
			if err := setSysctl(forward6, "0"); err != nil {
				return err
			}
			if err := restoreForwarding("ipv6", saved.IPv6ForwardingOn); err != nil {
				return err
			}
		}
		for i, v := range saved.values()[1:] {
			if v == "0" || v == "1" {
				if err := setSysctl(hostSysctls[i+1], v); err != nil {
					return err
				}
			}
		}
	} else if gok && g.DropOthers {
		if err := setSysctl(hostSysctls[0], "0"); err != nil {
			return err
		}
	}
	if err := nft.Delete(nil, nftables.TableFamilyINet, nft.GuardTableName); err != nil {
		return err
	}
	return removeFile(st.dir, hostStateName(ns.Ino))
}

// hostStateLeft reports whether the saved host state of this network
// namespace outlives its last install (an install undone before it wrote
// its tables).
func hostStateLeft(st *state, uid int) (bool, error) {
	ns, err := netNS()
	if err != nil {
		return false, err
	}
	local, err := st.local(uid, ns)
	if err != nil || len(local) > 0 {
		return false, err
	}
	_, ok, err := st.readHostState(ns.Ino)
	return ok, err
}
