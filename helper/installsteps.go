package helper

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/install"
	"github.com/nsrun/nsrun/internal/netsetup"
	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/nft"
)

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
