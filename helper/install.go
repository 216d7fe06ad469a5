package helper

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/install"
	"github.com/nsrun/nsrun/netsetup"
	"github.com/nsrun/nsrun/nft"
	"github.com/nsrun/nsrun/nsfd"
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

// chooseAddresses fills in the record: the user's host /30 is the earlier
// install's if still free, else the first one of the pool that neither a
// host route nor another user's install overlaps.
func (in *installer) chooseAddresses() error {
	o := in.o
	ifname := install.InterfaceName(o.UID)
	routes, names, err := hostRoutes(in.host, ifname, false)
	if err != nil {
		return err
	}
	if r, ok := clash(o.RunsCIDR, routes, names); ok {
		return fmt.Errorf("--runs-cidr %s overlaps the host route %s; pick a free range with --runs-cidr", o.RunsCIDR, r)
	}
	others, err := in.st.others(o.UID)
	if err != nil {
		return err
	}
	for _, r := range others {
		routes = append(routes, r.HostAddr.Masked())
		names = append(names, fmt.Sprintf("%s (%s's nsrun install)", r.HostAddr.Masked(), r.User))
	}
	hostNet, err := chooseHostNet(o.HostPool, in.prev, routes, names)
	if err != nil {
		return err
	}
	hostAddr := netip.PrefixFrom(hostNet.Addr().Next(), 30)
	in.rec = install.Record{
		User: o.User, UID: o.UID, GID: o.GID,
		Interface:   ifname,
		HostAddr:    hostAddr,
		Gateway:     netip.PrefixFrom(hostAddr.Addr().Next(), 30),
		RunsCIDR:    o.RunsCIDR,
		HostPool:    o.HostPool,
		Resolver:    o.Resolver,
		Table:       install.TableName(o.UID),
		MadeDir:     in.prev.MadeDir,
		NetNS:       in.ns.Ino,
		NetNSCookie: in.ns.Cookie,
	}
	if !o.HostPool6.IsValid() || !hostHasIPv6() {
		return nil // runs stay dual-stack inside; nsrun says so
	}
	if in.no6, err = raDependence(in.host); err != nil || in.no6 != "" {
		return err // as without IPv6 on the host
	}
	link6, err := hostLink6(o.HostPool6, o.HostPool, hostNet)
	if err != nil {
		return err
	}
	routes6, names6, err := hostRoutes(in.host, ifname, true)
	if err != nil {
		return err
	}
	for _, r := range others {
		if r.HostAddr6.IsValid() {
			routes6 = append(routes6, r.HostAddr6.Masked())
			names6 = append(names6, fmt.Sprintf("%s (%s's nsrun install)", r.HostAddr6.Masked(), r.User))
		}
	}
	if r, ok := clash(link6, routes6, names6); ok {
		return fmt.Errorf("host-cidr6 %s: the /64 for host /30 %s, %s, overlaps %s; the admin picks another host-cidr6 in %s", o.HostPool6, hostNet, link6, r, "/etc/nsrun/helper.conf")
	}
	in.rec.HostAddr6 = netip.PrefixFrom(link6.Addr().Next(), 64)
	in.rec.Gateway6 = netip.PrefixFrom(link6.Addr().Next().Next(), 64)
	in.rec.HostPool6 = o.HostPool6
	return nil
}

// hostHasIPv6 reports whether the helper's network namespace has IPv6 on
// (no net.ipv6 at all, or net.ipv6.conf.all.disable_ipv6=1: none).
func hostHasIPv6() bool { return sysctl("net/ipv6/conf/all/disable_ipv6") == "0" }

// raDependence says why turning IPv6 forwarding on would change how the
// host itself is routed, or "" if it would not: with forwarding on, the
// kernel ignores router advertisements on every link whose accept_ra is 1,
// so a link that takes its IPv6 routes from them would lose those routes
// once their lifetime ends. Forwarding already on changes nothing.
func raDependence(host *netlink.Handle) (string, error) {
	if sysctl(forward6) != "0" {
		return "", nil
	}
	links, err := netsetup.RALinks(host)
	if err != nil {
		return "", err
	}
	for _, l := range links {
		if sysctl("net/ipv6/conf/"+l+"/accept_ra") == "1" {
			return fmt.Sprintf("%[1]s takes its IPv6 routes from router advertisements (net.ipv6.conf.%[1]s.accept_ra=1), "+
				"and the kernel ignores those once IPv6 forwarding is on, which the uplink needs; to have it, "+
				"set net.ipv6.conf.%[1]s.accept_ra=2 (advertisements kept with forwarding on) and install again, "+
				"or set host-cidr6 = none in /etc/nsrun/helper.conf to say no IPv6 uplink", l), nil
		}
	}
	return "", nil
}

// hostLink6 is the user's host /64: the Nth /64 of pool6 for the Nth /30
// of the IPv4 host pool (so it follows the /30, which no two users share).
func hostLink6(pool6, pool4, hostNet netip.Prefix) (netip.Prefix, error) {
	a, b := pool4.Addr().As4(), hostNet.Addr().As4()
	n := (binary.BigEndian.Uint32(b[:]) - binary.BigEndian.Uint32(a[:])) / 4
	if uint64(n) >= 1<<(64-pool6.Bits()) {
		return netip.Prefix{}, fmt.Errorf("host-cidr6 %s has no /64 for the %s host /30 (number %d of %s); the admin picks a larger host-cidr6", pool6, hostNet, n, pool4)
	}
	x := pool6.Addr().As16()
	hi := binary.BigEndian.Uint64(x[:8]) + uint64(n)
	binary.BigEndian.PutUint64(x[:8], hi)
	return netip.PrefixFrom(netip.AddrFrom16(x), 64), nil
}

// chooseHostNet picks the user's host /30: the previous one if still in the
// pool, else the first one that nothing overlaps.
func chooseHostNet(pool netip.Prefix, prev install.Record, routes []netip.Prefix, names []string) (netip.Prefix, error) {
	if p := prev.HostAddr.Masked(); prev.HostAddr.IsValid() && pool.Contains(p.Addr()) {
		if _, ok := clash(p, routes, names); !ok {
			return p, nil
		}
	}
	var first string
	for a := pool.Addr(); pool.Contains(a); a = a.Next().Next().Next().Next() {
		p := netip.PrefixFrom(a, 30)
		r, ok := clash(p, routes, names)
		if !ok {
			return p, nil
		}
		if first == "" {
			first = r
		}
	}
	return netip.Prefix{}, fmt.Errorf("--host-cidr %s: no free /30 left (it overlaps %s, or every /30 is taken by other users); pick a free range with --host-cidr", pool, first)
}

// plan is the install, step by step, in an order that never leaves a
// window: the tables exist before the interface does (they match it by
// name), and the host end comes up only once its IPv6 and redirects are
// off and its address is set.
func (in *installer) plan() Plan {
	return Plan{in.stepSaveHost(), in.stepUserDir(), in.stepGwDir(), in.stepGateway(), in.stepTables(),
		in.stepVeth(), in.stepGatewayNet(), in.stepForwarding(), in.stepRecord(), in.stepView()}
}

func (in *installer) stepUserDir() Step {
	return Step{
		Describe: fmt.Sprintf("create %s (owner %s, mode 0700), as logind would", install.RunUserDir(in.o.UID), in.o.User),
		Done:     func() (bool, error) { return in.userDir != nil, nil },
		Apply: func() error {
			if err := os.MkdirAll("/run/user", 0o755); err != nil {
				return err
			}
			made, err := mkdirAt(nil, install.RunUserDir(in.o.UID), 0o700, in.o.UID, in.o.GID)
			if err != nil {
				return err
			}
			in.rec.MadeDir = in.rec.MadeDir || made
			in.userDir, err = install.OpenVerifiedDir(nil, install.RunUserDir(in.o.UID), in.o.UID)
			return err
		},
	}
}

func (in *installer) stepGwDir() Step {
	return Step{
		Describe: fmt.Sprintf("create %s (owner root, mode 0755, in a folder only root may enter) for the namespace mounts and the record's copy", gwPath(in.o.UID)),
		Done:     func() (bool, error) { return in.gwDir != nil, nil },
		Apply: func() error {
			var err error
			in.gwDir, err = in.st.openGwDir(in.o.UID, true)
			return err
		},
	}
}

// stepView is last: nsrun sees an install only once it is whole.
func (in *installer) stepView() Step {
	uid := in.o.UID
	return Step{
		Describe: fmt.Sprintf("make %s a read-only view of %s (a recursive bind mount: a mount point, which you cannot rename or remove);\nfirst unmount every other view of it and every namespace mount of a gateway of yours but this one (left by helpers before issue 20, wherever it now lies)",
			install.Dir(uid), gwPath(uid)),
		Done: func() (bool, error) { return viewOK(in.userDir, in.gwDir), nil },
		Apply: func() error {
			if err := unmountViews(in.gwDir); err != nil {
				return err
			}
			if err := unmountStrayNamespaces(uid, in.gwDir); err != nil {
				return err
			}
			if _, err := mkdirAt(in.userDir, "nsrun", 0o755, 0, 0); err != nil {
				return err
			}
			// What an older helper kept in the folder itself goes: the
			// view would hide it, not remove it.
			nsDir, err := install.OpenVerifiedDir(in.userDir, "nsrun", 0)
			if err != nil {
				return err
			}
			err = errors.Join(unmountAndRemove(nsDir, "userns"), unmountAndRemove(nsDir, "netns"), removeFile(nsDir, "install.json"))
			nsDir.Close()
			if err != nil {
				return err
			}
			if err := mountView(in.userDir, in.gwDir); err != nil {
				return err
			}
			if !viewOK(in.userDir, in.gwDir) {
				return fmt.Errorf("%s does not show %s right after it was mounted (%w)", install.Dir(uid), gwPath(uid), install.ErrUnsafe)
			}
			return nil
		},
	}
}

func (in *installer) stepGateway() Step {
	o := in.o
	return Step{
		Describe: fmt.Sprintf("create a user namespace owned by %s (uid map \"0 %d 1\", gid map \"0 %d 1\") holding the gateway network namespace,\nunless the one mounted there still is (or one a helper before issue 20 mounted in %s, which is kept: your runs keep their uplink);\nverify both from their descriptors, and bind-mount them onto %s/userns and %s/netns",
			o.User, o.UID, o.GID, install.Dir(o.UID), gwPath(o.UID), gwPath(o.UID)),
		Done: func() (bool, error) { return in.openGateway() == nil, nil },
		Apply: func() error {
			for _, name := range []string{"userns", "netns"} {
				if err := unmountAndRemove(in.gwDir, name); err != nil {
					return err
				}
			}
			userNS, netNS, release := in.legacyGateway()
			if userNS == nil {
				g, err := createGateway(o.UID, o.GID)
				if err != nil {
					return err
				}
				userNS, netNS, release = g.UserNS, g.NetNS, g.Release
			}
			defer release()
			for name, ns := range map[string]*os.File{"userns": userNS, "netns": netNS} {
				target, err := mountTarget(in.gwDir, name)
				if err != nil {
					return err
				}
				err = bindMount(ns, target)
				target.Close()
				if err != nil {
					return err
				}
			}
			return in.openGateway()
		},
	}
}

// legacyGateway opens the gateway a helper before issue 20 mounted in
// /run/user/UID/nsrun itself (a root-owned folder then, not a view),
// checked as install checks its own (VerifyGateway), so that an upgrade
// keeps it and the user's live runs keep their uplink. It returns nil
// descriptors when there is none to keep; release closes them.
func (in *installer) legacyGateway() (userNS, netNS *os.File, release func()) {
	none := func() {}
	if in.userDir == nil {
		return nil, nil, none
	}
	d, err := install.OpenVerifiedDir(in.userDir, "nsrun", 0)
	if err != nil {
		return nil, nil, none // none (one not root's was refused before any step)
	}
	defer d.Close()
	if sameInode(in.gwDir, statOf(d)) {
		return nil, nil, none // the view of gw/UID: nothing of old
	}
	var fs []*os.File
	closeAll := func() {
		for _, f := range fs {
			f.Close()
		}
	}
	for _, name := range []string{"userns", "netns"} {
		if !install.NamespaceMounted(d, name) {
			closeAll()
			return nil, nil, none
		}
		fd, err := unix.Openat(int(d.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			closeAll()
			return nil, nil, none
		}
		fs = append(fs, os.NewFile(uintptr(fd), d.Name()+"/"+name))
	}
	if VerifyGateway(fs[0], fs[1], in.o.UID) != nil {
		closeAll()
		return nil, nil, none // not a gateway: a new one is made, and stepView unmounts this
	}
	return fs[0], fs[1], closeAll
}

// openGateway opens the mounted gateway namespaces through the verified
// folder and checks them again, keeping the network namespace.
func (in *installer) openGateway() error {
	if in.gwNet != nil {
		return nil
	}
	if in.gwDir == nil {
		return install.ErrNotInstalled
	}
	var fs [2]*os.File
	for i, name := range []string{"userns", "netns"} {
		if !install.NamespaceMounted(in.gwDir, name) {
			if i == 1 {
				fs[0].Close()
			}
			return install.ErrNotInstalled
		}
		fd, err := unix.Openat(int(in.gwDir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			if i == 1 {
				fs[0].Close()
			}
			return err
		}
		fs[i] = os.NewFile(uintptr(fd), in.gwDir.Name()+"/"+name)
	}
	defer fs[0].Close()
	if err := VerifyGateway(fs[0], fs[1], in.o.UID); err != nil {
		fs[1].Close()
		return err
	}
	in.gwNet = fs[1]
	return nil
}

func (in *installer) hostConfig() nft.HostConfig { return hostConfigOf(in.rec) }

// hostConfigOf is the host table of the install rec records.
func hostConfigOf(rec install.Record) nft.HostConfig {
	return nft.HostConfig{
		Table: rec.Table, Interface: rec.Interface, UID: uint32(rec.UID),
		HostAddr: rec.HostAddr.Addr(), Gateway: rec.Gateway.Addr(), Resolver: rec.Resolver,
		Gateway6: rec.Gateway6.Addr(), HostAddr6: rec.HostAddr6.Addr(), // none: all IPv6 from the gateway is dropped
		GatewayLinkLocal: install.GatewayLinkLocal.Addr(),
	}
}

// savedHost is the host state the first install in this network
// namespace saved; before it is saved, what it would save.
func (in *installer) savedHost() (hostState, error) {
	h, ok, err := in.st.readHostState(in.ns.Ino)
	if err != nil || (ok && !in.firstHere()) {
		if err == nil && h.IPv6Forward == "" {
			// Saved by a helper before the IPv6 uplink, which never
			// changed IPv6 forwarding: it is still as it was.
			h.IPv6Forward = sysctl(forward6)
		}
		return h, err
	}
	h = currentHostState()
	g, gok, err := nft.ReadGuard()
	if err != nil {
		return h, err
	}
	if gok || len(in.local) > 0 || in.prevHere() {
		// Installed by a helper that saved nothing: the guard (or, with
		// the guard gone too, forwarding on) tells as best it can.
		h.IPForward = map[bool]string{true: "0", false: "1"}[gok && g.DropOthers]
	}
	return h, nil
}

// firstHere reports whether no user is installed in this network
// namespace yet: no record and no guard table. (A host state file then
// is a leftover of a namespace that had the same inode.)
func (in *installer) firstHere() bool {
	_, gok, _ := nft.ReadGuard()
	ok, _ := nft.Exists(nil, nftables.TableFamilyINet, in.rec.Table)
	return len(in.local) == 0 && !in.prevHere() && !gok && !ok
}

// prevHere reports whether this user's earlier install was into this
// network namespace.
func (in *installer) prevHere() bool {
	return in.prev.Interface != "" && inNS(in.prev, in.ns)
}

func (in *installer) stepSaveHost() Step {
	name := hostStateName(in.ns.Ino)
	return Step{
		Describe: fmt.Sprintf("save %s as they are before the first install (now %s) to %s/%s, for the last uninstall to put back",
			strings.Join(dotted(append(hostSysctls, forward6)), ", "), strings.Join(append(currentHostState().values(), currentHostState().IPv6Forward), ", "), stateDir, name),
		Done: func() (bool, error) {
			h, ok, err := in.st.readHostState(in.ns.Ino)
			// (a state without IPv6 forwarding, from a helper before the
			// IPv6 uplink, gets it before stepForwarding changes it)
			return ok && !in.firstHere() && (h.IPv6Forward != "" || sysctl(forward6) == ""), err
		},
		Apply: func() error {
			h, err := in.savedHost()
			if err != nil {
				return err
			}
			return writeFile(in.st.dir, name, marshalHostState(h))
		},
	}
}

func dotted(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = strings.ReplaceAll(k, "/", ".")
	}
	return out
}

// guard is the guard table as it must be: the interfaces of every user
// recorded in this network namespace and this user's, and DropOthers when
// forwarding was off before the first install (as saved, never inferred
// from the live tables, which a `flush ruleset` may have emptied).
func (in *installer) guard() (nft.Guard, error) {
	h, err := in.savedHost()
	g := nft.Guard{Interfaces: []string{in.rec.Interface}, DropOthers: h.IPForward != "1", DropOthers6: h.IPv6Forward == "0"}
	for _, r := range in.local {
		if !slices.Contains(g.Interfaces, r.Interface) {
			g.Interfaces = append(g.Interfaces, r.Interface)
		}
	}
	slices.Sort(g.Interfaces)
	return g, err
}

// missingTables are the host tables of the other users recorded in this
// network namespace that are gone (a `flush ruleset`, an nftables reload).
func (in *installer) missingTables() ([]*nft.Table, error) {
	var out []*nft.Table
	for _, r := range in.local {
		ok, err := nft.Exists(nil, nftables.TableFamilyINet, r.Table)
		if err != nil {
			return nil, err
		}
		if !ok {
			out = append(out, nft.HostTable(hostConfigOf(r)))
		}
	}
	return out, nil
}

func (in *installer) stepTables() Step {
	g, _ := in.guard()
	return Step{
		Describe: "write the host's nftables tables (before the interface exists; they match it by name), and those of other users' installs if missing\n" +
			nft.HostTable(in.hostConfig()).String() + "\n" + nft.GuardTable(g).String(),
		Done: func() (bool, error) {
			ok, err := nft.Exists(nil, nftables.TableFamilyINet, in.rec.Table)
			want, werr := in.guard()
			g, gok, gerr := nft.ReadGuard()
			missing, merr := in.missingTables()
			return ok && gok && slices.Equal(g.Interfaces, want.Interfaces) && g.DropOthers == want.DropOthers &&
				len(missing) == 0 && in.prev == in.rec, errors.Join(err, werr, gerr, merr)
		},
		Apply: func() error {
			g, err := in.guard()
			if err != nil {
				return err
			}
			tables, err := in.missingTables()
			if err != nil {
				return err
			}
			return nft.ApplyAll(nil, append(tables, nft.HostTable(in.hostConfig()), nft.GuardTable(g))...)
		},
	}
}

// hostSide are the sysctls of the host end, set while it is still down:
// no router advertisement, redirect or address autoconfiguration from the
// gateway ever reaches the host's routing (a static IPv6 address may be
// added later without changing any of this), and route_localnet lets the
// DNS DNAT to a loopback resolver through, on this interface only.
var hostSide = [][2]string{
	{"net/ipv6/conf/%s/accept_ra", "0"},
	{"net/ipv6/conf/%s/accept_redirects", "0"},
	{"net/ipv6/conf/%s/addr_gen_mode", "1"}, // IN6_ADDR_GEN_MODE_NONE: not even a link-local address
	{"net/ipv4/conf/%s/accept_redirects", "0"},
	{"net/ipv4/conf/%s/route_localnet", "1"},
	// Defences that need no nftables (a `flush ruleset` leaves them): a
	// source the host would not route back through this interface is
	// dropped, and ARP on it answers only for its own address, and
	// announces only that.
	{"net/ipv4/conf/%s/rp_filter", "1"},
	{"net/ipv4/conf/%s/arp_ignore", "1"},
	{"net/ipv4/conf/%s/arp_announce", "2"},
}

func (in *installer) stepVeth() Step {
	rec := in.rec
	var settings []string
	for _, s := range hostSide {
		settings = append(settings, strings.ReplaceAll(fmt.Sprintf(s[0], rec.Interface), "/", ".")+"="+s[1])
	}
	return Step{
		Describe: fmt.Sprintf("create veth %s (host, %s) with its peer %q inside the gateway (%s); while %s is down set\n%s;\nthen bring both up",
			rec.Interface, addrs(rec.HostAddr, rec.HostAddr6), install.GatewayUplink, gatewayAddrs(rec), rec.Interface, strings.Join(settings, ", ")),
		Done: func() (bool, error) {
			if in.gwNet == nil {
				return false, nil
			}
			if ok, err := hasAddrs(in.host, rec.Interface, rec.HostAddr, rec.HostAddr6); !ok || err != nil {
				return false, err
			}
			for _, s := range hostSide {
				if v := sysctl(fmt.Sprintf(s[0], rec.Interface)); v != s[1] && v != "" {
					return false, nil
				}
			}
			gh, err := netsetup.Handle(in.gwNet)
			if err != nil {
				return false, err
			}
			defer gh.Close()
			return hasAddrs(gh, install.GatewayUplink, rec.Gateway, rec.Gateway6, gatewayLinkLocal(rec))
		},
		Apply: in.createVeth,
	}
}

func (in *installer) createVeth() error {
	rec := in.rec
	if err := netsetup.DeleteLink(in.host, rec.Interface); err != nil {
		return fmt.Errorf("remove stale %s: %w", rec.Interface, err)
	}
	// Both ends down until their sysctls are set.
	if err := netsetup.AddVethPair(in.host, rec.Interface, install.GatewayUplink, in.gwNet); err != nil {
		return err
	}
	for _, s := range hostSide {
		err := setSysctl(fmt.Sprintf(s[0], rec.Interface), s[1])
		if err != nil && !(errors.Is(err, os.ErrNotExist) && strings.HasPrefix(s[0], "net/ipv6/")) {
			return err // (a host without IPv6 has no net/ipv6)
		}
	}
	gh, err := netsetup.Handle(in.gwNet)
	if err != nil {
		return err
	}
	defer gh.Close()
	if rec.Gateway6.IsValid() {
		// One link-local address, which the host table names, instead of
		// one the kernel would make from the MAC address.
		if err := netsetup.NoLinkLocal(gh, install.GatewayUplink); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	}
	for _, a := range []struct {
		h      *netlink.Handle
		ifname string
		addr   netip.Prefix
	}{{in.host, rec.Interface, rec.HostAddr6}, {gh, install.GatewayUplink, gatewayLinkLocal(rec)}, {gh, install.GatewayUplink, rec.Gateway6}, {in.host, rec.Interface, rec.HostAddr}, {gh, install.GatewayUplink, rec.Gateway}} {
		if !a.addr.IsValid() {
			continue // no IPv6 on this host
		}
		if err := netsetup.AddrUp(a.h, a.ifname, a.addr); err != nil {
			return err
		}
	}
	return nil
}

func (in *installer) stepGatewayNet() Step {
	return Step{
		Describe: fmt.Sprintf("in the gateway: lo up, default routes via %s, IPv4 and IPv6 forwarding on, and\n%s",
			vias(in.rec), nft.UplinkNAT(install.GatewayUplink, nil, netip.AddrPort{})),
		Done: func() (bool, error) {
			if in.gwNet == nil {
				return false, nil
			}
			return in.gatewayConfigured()
		},
		Apply: in.configureGateway,
	}
}

func (in *installer) gatewayConfigured() (bool, error) {
	gh, err := netsetup.Handle(in.gwNet)
	if err != nil {
		return false, err
	}
	defer gh.Close()
	gws, err := netsetup.DefaultGateways(gh)
	if err != nil {
		return false, fmt.Errorf("gateway: %w", err)
	}
	hasDefault, hasDefault6 := false, !in.rec.HostAddr6.IsValid()
	for _, gw := range gws {
		hasDefault = hasDefault || gw == in.rec.HostAddr.Addr()
		hasDefault6 = hasDefault6 || gw == in.rec.HostAddr6.Addr()
	}
	hasDefault = hasDefault && hasDefault6
	fwd := ""
	_ = nsfd.Do(in.gwNet, func() error { fwd = sysctl("net/ipv4/ip_forward"); return nil })
	ok, err := nft.Exists(in.gwNet, nftables.TableFamilyINet, nft.TableName)
	return hasDefault && fwd == "1" && ok, err
}

func (in *installer) configureGateway() error {
	gh, err := netsetup.Handle(in.gwNet)
	if err != nil {
		return err
	}
	defer gh.Close()
	if err := netsetup.AddrUp(gh, "lo", netip.MustParsePrefix("127.0.0.1/8")); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	for _, via := range []netip.Prefix{in.rec.HostAddr, in.rec.HostAddr6} {
		if !via.IsValid() {
			continue
		}
		if err := netsetup.DefaultRoute(gh, install.GatewayUplink, via.Addr()); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	}
	if err := netsetup.EnableForwarding(in.gwNet); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	// (table ip nsrun: an older helper's, IPv4 only)
	if err := nft.Delete(in.gwNet, nftables.TableFamilyIPv4, nft.TableName); err != nil {
		return err
	}
	return nft.Apply(in.gwNet, nft.UplinkNAT(install.GatewayUplink, nil, netip.AddrPort{}))
}

func (in *installer) stepForwarding() Step {
	keys := []string{"net/ipv4/ip_forward"}
	if in.rec.Gateway6.IsValid() {
		keys = append(keys, forward6)
	}
	var now []string
	for _, k := range keys {
		now = append(now, sysctl(k))
	}
	return Step{
		Describe: fmt.Sprintf("set %s=1 (now %s; each that was 0 before the first install: the guard table limits forwarding to nsrun interfaces, and the last uninstall sets it back to 0)",
			strings.Join(dotted(keys), "=1, "), strings.Join(now, ", ")),
		Done: func() (bool, error) {
			for _, k := range keys {
				if sysctl(k) != "1" {
					return false, nil
				}
			}
			return true, nil
		},
		Apply: func() error {
			for _, k := range keys {
				if err := setSysctl(k, "1"); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// forward6 is the host's IPv6 forwarding: the kernel forwards IPv6 by this
// one switch (a reply enters by another interface than nsrunUID).
const forward6 = "net/ipv6/conf/all/forwarding"

func (in *installer) stepRecord() Step {
	name := strconv.Itoa(in.o.UID) + ".json"
	return Step{
		Describe: fmt.Sprintf("write the record %s/users/%s and its copy for nsrun, %s/install.json (%s in your view)", stateDir, name, gwPath(in.o.UID), install.RecordPath(in.o.UID)),
		Done: func() (bool, error) {
			b := marshalRecord(in.rec)
			return hasFile(in.st.users, name, b) && hasFile(in.gwDir, "install.json", b), nil
		},
		Apply: func() error {
			b := marshalRecord(in.rec)
			if err := writeFile(in.st.users, name, b); err != nil {
				return err
			}
			return writeFile(in.gwDir, "install.json", b)
		},
	}
}

// vias names the gateway's default routes.
func vias(rec install.Record) string {
	if rec.HostAddr6.IsValid() {
		return rec.HostAddr.Addr().String() + " and " + rec.HostAddr6.Addr().String()
	}
	return rec.HostAddr.Addr().String()
}

// addrs writes an IPv4 address and, if valid, an IPv6 one.
func addrs(p4, p6 netip.Prefix) string {
	if p6.IsValid() {
		return p4.String() + " and " + p6.String() + ", without duplicate address detection"
	}
	return p4.String()
}

// gatewayAddrs are the addresses of the gateway's end, as install shows
// them.
func gatewayAddrs(rec install.Record) string {
	if !rec.Gateway6.IsValid() {
		return addrs(rec.Gateway, rec.Gateway6)
	}
	return addrs(rec.Gateway, rec.Gateway6) + ", and no link-local address but " + install.GatewayLinkLocal.String()
}

// gatewayLinkLocal is the gateway end's link-local address where the host
// has IPv6 (none where it has not).
func gatewayLinkLocal(rec install.Record) netip.Prefix {
	if !rec.Gateway6.IsValid() {
		return netip.Prefix{}
	}
	return install.GatewayLinkLocal
}

// hasAddrs reports whether ifname is up with every address of ps; an
// invalid one (no IPv6 on this host) is always there. A failure to ask
// is an error, never "not there": the step would then delete and create
// again the user's veth, and cut the uplink of their live runs.
func hasAddrs(h *netlink.Handle, ifname string, ps ...netip.Prefix) (bool, error) {
	for _, p := range ps {
		if !p.IsValid() {
			continue
		}
		if ok, err := netsetup.HasAddr(h, ifname, p); !ok || err != nil {
			return false, err
		}
	}
	return true, nil
}

// sysctl reads a sysctl of the helper's network namespace ("" if none).
func sysctl(key string) string {
	b, err := os.ReadFile("/proc/sys/" + key)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func setSysctl(key, value string) error {
	if err := os.WriteFile("/proc/sys/"+key, []byte(value), 0); err != nil {
		return fmt.Errorf("set %s=%s: %w", strings.ReplaceAll(key, "/", "."), value, err)
	}
	return nil
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
