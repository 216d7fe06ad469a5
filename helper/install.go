package helper

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vishvananda/netlink"

	"github.com/nsrun/nsrun/internal/install"
	"github.com/nsrun/nsrun/internal/netsetup"
	"github.com/nsrun/nsrun/nft"
)

// installer carries what the steps of one install share.
type installer struct {
	o       Options
	rec     install.Record   // what this install makes
	prev    install.Record   // the authoritative record of an earlier install
	ns      nsID             // the helper's network namespace
	local   []install.Record // the other users installed into it
	st      *state
	host    *netlink.Handle
	userDir *os.File // /run/user/UID, once it exists (verified)
	gwDir   *os.File // /run/nsrun-helper/gw/UID, once it exists (verified)
	gwNet   *os.File // the gateway network namespace, once mounted (verified)
	no6     string   // why the gateway gets no IPv6 though the host has it ("" if it does)
}

// Install sets up the gateway for o's user and prints every step to w.
// With dryRun it only prints what it would do. It holds the host-wide lock
// throughout; a signal or a failure half-way rolls back what it made, so
// that either the whole install is in place or nothing is.
func Install(o Options, w io.Writer, dryRun bool) error {
	stop, restore := holdSignals()
	defer restore()
	in := &installer{o: o}
	defer in.close()
	var err error
	if in.st, err = openState(!dryRun); err != nil {
		return err
	}
	defer in.st.close()
	if err := in.st.acquire(stop); err != nil {
		return err
	}
	if in.host, err = netsetup.Here(); err != nil {
		return err
	}
	var nsDir *os.File
	if in.userDir, nsDir, err = openUserDirs(o.UID); err != nil {
		return err
	}
	if nsDir != nil {
		nsDir.Close() // (only checked: a symlink or a folder of the user's is refused)
	}
	if in.gwDir, err = in.st.openGwDir(o.UID, false); err != nil {
		return err
	}
	if in.prev, _, err = in.st.record(o.UID); err != nil {
		return err
	}
	if in.ns, err = netNS(); err != nil {
		return err
	}
	if in.local, err = in.st.local(o.UID, in.ns); err != nil {
		return err
	}
	if err := in.chooseAddresses(); err != nil {
		return err
	}
	if in.no6 != "" {
		fmt.Fprintln(w, "note: no IPv6 uplink:", in.no6)
	}
	applied, err := in.plan().Run(w, dryRun, stop)
	if err != nil && applied > 0 {
		fmt.Fprintf(w, "install stopped (%v): undoing it\n", err)
		in.close()
		if uerr := uninstall(in.st, o.UID, in.rec.MadeDir, io.Discard, func() bool { return false }); uerr != nil {
			return fmt.Errorf("%w; undoing it failed too: %w", err, uerr)
		}
		fmt.Fprintln(w, "undone: nothing is left of this install")
		return fmt.Errorf("%w; nothing is left of this install", err)
	}
	if err != nil {
		return err
	}
	if !o.Resolver.IsValid() {
		fmt.Fprintln(w, "note: /etc/resolv.conf names no IPv4 nameserver; guests get no DNS (use --resolver ADDR[:PORT])")
	}
	warnForwardDrops(w, in.rec.Interface)
	return nil
}

func (in *installer) close() {
	for _, f := range []*os.File{in.gwNet, in.gwDir, in.userDir} {
		if f != nil {
			f.Close()
		}
	}
	in.gwNet, in.gwDir, in.userDir = nil, nil, nil
	if in.host != nil {
		in.host.Close()
		in.host = nil
	}
}

// openUserDirs opens /run/user/UID and its nsrun folder where they exist,
// refusing (before anything changes) what the helper did not make: a
// symlink, a folder of the wrong owner.
func openUserDirs(uid int) (userDir, nsDir *os.File, err error) {
	userDir, err = install.OpenVerifiedDir(nil, install.RunUserDir(uid), uid)
	if errors.Is(err, install.ErrNotInstalled) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	nsDir, err = install.OpenVerifiedDir(userDir, "nsrun", 0)
	if errors.Is(err, install.ErrNotInstalled) {
		return userDir, nil, nil
	}
	if err != nil {
		userDir.Close()
		return nil, nil, err
	}
	return userDir, nsDir, nil
}

// warnForwardDrops tells about other tables that drop forwarded traffic.
func warnForwardDrops(w io.Writer, ifname string) {
	drops, err := nft.FindForwardDrops()
	if err != nil {
		fmt.Fprintln(w, "note: could not check other firewall tables:", err)
		return
	}
	for _, d := range drops {
		fmt.Fprintf(w, "warning: %s\n", forwardDropAdvice(d, ifname))
	}
}

func forwardDropAdvice(d nft.ForwardDrop, ifname string) string {
	return fmt.Sprintf("table %s %s, chain %s, drops forwarded packets by policy (Docker and firewalld do this), so guests cannot reach beyond the host.\n"+
		"  Let %s through: nft insert rule %s %s %s iifname %s accept; nft insert rule %s %s %s oifname %s accept\n"+
		"  (with Docker: iptables -I DOCKER-USER -i %s -j ACCEPT; iptables -I DOCKER-USER -o %s -j ACCEPT)",
		d.Family, d.Table, d.Chain, ifname, d.Family, d.Table, d.Chain, ifname, d.Family, d.Table, d.Chain, ifname, ifname, ifname)
}
