package helper

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/install"
	"github.com/nsrun/nsrun/nft"
	"github.com/nsrun/nsrun/nsfd"
)

// stateDir holds the helper's machine-wide state: the ip_forward value
// before the first install, and one file per installed user.
const stateDir = "/run/nsrun-helper"

// installer carries what the steps of one install share.
type installer struct {
	o     Options
	rec   install.Record
	host  *netlink.Handle
	nsDir *dir     // /run/user/UID/nsrun once opened
	gwNet *os.File // the gateway network namespace once known
	gw    *gateway // set when this install created the namespaces
}

// Install sets up the gateway for o's user and prints every step to w.
// With dryRun it only prints what it would do.
func Install(o Options, w io.Writer, dryRun bool) error {
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer host.Close()
	in := &installer{o: o, host: host}
	defer in.close()

	ifname := install.InterfaceName(o.UID)
	routes, names, err := hostRoutes(host, ifname)
	if err != nil {
		return err
	}
	if r, ok := clash(o.RunsCIDR, routes, names); ok {
		return fmt.Errorf("--runs-cidr %s overlaps the host route %s; pick a free range with --runs-cidr", o.RunsCIDR, r)
	}
	prev := previousRecord(o.UID)
	hostNet, err := chooseHostNet(o.HostPool, prev, routes, names)
	if err != nil {
		return err
	}
	hostAddr := netip.PrefixFrom(hostNet.Addr().Next(), 30)
	in.rec = install.Record{
		User: o.User, UID: o.UID, GID: o.GID,
		Interface: ifname,
		HostAddr:  hostAddr,
		Gateway:   netip.PrefixFrom(hostAddr.Addr().Next(), 30),
		RunsCIDR:  o.RunsCIDR,
		Resolver:  o.Resolver,
		Table:     install.TableName(o.UID),
		MadeDir:   prev.MadeDir,
	}
	if err := in.plan().Run(w, dryRun); err != nil {
		return err
	}
	if !o.Resolver.IsValid() {
		fmt.Fprintln(w, "note: /etc/resolv.conf names no IPv4 nameserver; guests get no DNS (use --resolver ADDR[:PORT])")
	}
	warnForwardDrops(w, in.rec)
	return nil
}

func (in *installer) close() {
	if in.gw != nil {
		in.gw.Release()
	}
	if in.gwNet != nil {
		in.gwNet.Close()
	}
	if in.nsDir != nil {
		in.nsDir.Close()
	}
}

// previousRecord reads an earlier install's record, if any, to keep its
// addresses. It is informative only: every value is checked again.
func previousRecord(uid int) install.Record {
	var r install.Record
	b, err := os.ReadFile(install.RecordPath(uid))
	if err == nil {
		_ = json.Unmarshal(b, &r)
	}
	return r
}

// chooseHostNet picks the user's host /30: the previous one if still in the
// pool, else the first one that no host route overlaps.
func chooseHostNet(pool netip.Prefix, prev install.Record, routes []netip.Prefix, names []string) (netip.Prefix, error) {
	if prev.HostAddr.IsValid() {
		p := prev.HostAddr.Masked()
		if pool.Contains(p.Addr()) {
			if _, ok := clash(p, routes, names); !ok {
				return p, nil
			}
		}
	}
	var first string
	for a := pool.Addr(); pool.Contains(a); {
		p := netip.PrefixFrom(a, 30)
		r, ok := clash(p, routes, names)
		if !ok {
			return p, nil
		}
		if first == "" {
			first = r
		}
		for i := 0; i < 4; i++ {
			a = a.Next()
		}
	}
	return netip.Prefix{}, fmt.Errorf("--host-cidr %s: no free /30 left (it overlaps the host route %s, or every /30 is taken by other users); pick a free range with --host-cidr", pool, first)
}

func (in *installer) plan() Plan {
	o, rec := in.o, in.rec
	userDir := install.RunUserDir(o.UID)
	table := nft.HostTable(nft.HostConfig{
		Table: rec.Table, Interface: rec.Interface,
		HostAddr: rec.HostAddr.Addr(), Gateway: rec.Gateway.Addr(), Resolver: rec.Resolver,
	})
	recJSON, _ := json.MarshalIndent(rec, "", "  ")
	recJSON = append(recJSON, '\n')
	return Plan{
		{
			Describe: fmt.Sprintf("create %s (owner %s, mode 0700), as logind would", userDir, o.User),
			Done: func() (bool, error) {
				d, _, err := openDir(nil, userDir, false, 0, 0, 0)
				if errors.Is(err, unix.ENOENT) {
					return false, nil
				}
				if err != nil {
					return false, err
				}
				defer d.Close()
				return true, d.requireOwner(o.UID)
			},
			Apply: func() error {
				if err := os.MkdirAll("/run/user", 0o755); err != nil {
					return err
				}
				d, made, err := openDir(nil, userDir, true, 0o700, o.UID, o.GID)
				if err != nil {
					return err
				}
				d.Close()
				in.rec.MadeDir = in.rec.MadeDir || made
				return nil
			},
		},
		{
			Describe: fmt.Sprintf("create %s (owner root, mode 0755) for the namespace mounts", install.Dir(o.UID)),
			Done: func() (bool, error) {
				ud, _, err := openDir(nil, userDir, false, 0, 0, 0)
				if err != nil {
					return false, nil // the previous step creates it
				}
				defer ud.Close()
				if err := ud.requireOwner(o.UID); err != nil {
					return false, err
				}
				d, _, err := openDir(ud, "nsrun", false, 0, 0, 0)
				if errors.Is(err, errUnsafePath) {
					return false, err
				}
				if err != nil {
					return false, nil
				}
				if err := d.requireOwner(0); err != nil {
					d.Close()
					return false, err
				}
				in.nsDir = d
				return true, nil
			},
			Apply: func() error {
				ud, _, err := openDir(nil, userDir, false, 0, 0, 0)
				if err != nil {
					return err
				}
				defer ud.Close()
				d, _, err := openDir(ud, "nsrun", true, 0o755, 0, 0)
				if err != nil {
					return err
				}
				if err := d.requireOwner(0); err != nil {
					d.Close()
					return err
				}
				in.nsDir = d
				return nil
			},
		},
		{
			Describe: fmt.Sprintf("create a user namespace owned by %s (uid map \"0 %d 1\", gid map \"0 %d 1\") holding the gateway network namespace;\nbind-mount them onto %s and %s",
				o.User, o.UID, o.GID, install.UserNSPath(o.UID), install.NetNSPath(o.UID)),
			Done: func() (bool, error) {
				if in.nsDir == nil || !install.IsNamespaceMount(install.UserNSPath(o.UID)) || !install.IsNamespaceMount(install.NetNSPath(o.UID)) {
					return false, nil
				}
				f, err := os.Open(install.UserNSPath(o.UID))
				if err != nil {
					return false, nil
				}
				defer f.Close()
				owner, err := nsOwner(f)
				if err != nil || owner != o.UID {
					return false, nil
				}
				return true, in.openGatewayNet()
			},
			Apply: func() error {
				for _, name := range []string{"userns", "netns"} {
					if err := in.nsDir.unmountAndRemove(name); err != nil {
						return err
					}
				}
				g, err := createGateway(o.UID, o.GID)
				if err != nil {
					return err
				}
				in.gw = g
				for name, kind := range map[string]string{"userns": "user", "netns": "net"} {
					target, err := in.nsDir.openFile(name, true)
					if err != nil {
						return err
					}
					err = bindMount(fmt.Sprintf("/proc/%d/ns/%s", g.pid, kind), target)
					target.Close()
					if err != nil {
						return err
					}
				}
				return in.openGatewayNet()
			},
		},
		{
			Describe: fmt.Sprintf("create veth %s (host, %s) with its peer %q inside the gateway (%s); bring both up",
				rec.Interface, rec.HostAddr, install.GatewayUplink, rec.Gateway),
			Done: func() (bool, error) {
				if !hasAddr(in.host, rec.Interface, rec.HostAddr) || in.gwNet == nil {
					return false, nil
				}
				gh, err := nsHandle(in.gwNet)
				if err != nil {
					return false, err
				}
				defer gh.Close()
				return hasAddr(gh, install.GatewayUplink, rec.Gateway), nil
			},
			Apply: func() error { return in.createVeth() },
		},
		{
			Describe: fmt.Sprintf("in the gateway: lo up, default route via %s, net.ipv4.ip_forward=1, and\n%s",
				rec.HostAddr.Addr(), nft.UplinkNAT(install.GatewayUplink, nil, netip.AddrPort{})),
			Done: func() (bool, error) {
				if in.gwNet == nil {
					return false, nil
				}
				ok, err := in.gatewayConfigured()
				return ok, err
			},
			Apply: func() error { return in.configureGateway() },
		},
		{
			Describe: fmt.Sprintf("set net.ipv4.conf.%s.route_localnet=1 (this interface only: lets the DNS DNAT to a loopback resolver through)", rec.Interface),
			Done: func() (bool, error) {
				return readSysctl("net/ipv4/conf/"+rec.Interface+"/route_localnet") == "1", nil
			},
			Apply: func() error {
				return writeSysctl("net/ipv4/conf/"+rec.Interface+"/route_localnet", "1")
			},
		},
		{
			Describe: fmt.Sprintf("set net.ipv4.ip_forward=1 (now %s; the last uninstall restores it); register uid %d in %s",
				readSysctl("net/ipv4/ip_forward"), o.UID, stateDir),
			Done: func() (bool, error) {
				_, err := os.Stat(filepath.Join(stateDir, "users", strconv.Itoa(o.UID)))
				return err == nil && readSysctl("net/ipv4/ip_forward") == "1", nil
			},
			Apply: func() error { return enableForwarding(o.UID) },
		},
		{
			Describe: "write the host's nftables table\n" + table.String(),
			Done: func() (bool, error) {
				ok, err := nft.Exists(nil, nftables.TableFamilyIPv4, rec.Table)
				if err != nil || !ok || in.nsDir == nil {
					return false, err
				}
				old, _ := in.nsDir.readFile("install.json")
				return bytes.Equal(old, recJSON), nil
			},
			Apply: func() error { return nft.Apply(nil, table) },
		},
		{
			Describe: "write " + install.RecordPath(o.UID),
			Done: func() (bool, error) {
				if in.nsDir == nil {
					return false, nil
				}
				old, _ := in.nsDir.readFile("install.json")
				return bytes.Equal(old, recJSON), nil
			},
			Apply: func() error {
				b, _ := json.MarshalIndent(in.rec, "", "  ")
				return in.nsDir.writeFile("install.json", append(b, '\n'))
			},
		},
	}
}

// openGatewayNet opens the mounted gateway network namespace (through the
// verified folder, no symlinks).
func (in *installer) openGatewayNet() error {
	if in.gwNet != nil {
		return nil
	}
	fd, err := unix.Openat(in.nsDir.fd, "netns", unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", install.NetNSPath(in.o.UID), err)
	}
	in.gwNet = os.NewFile(uintptr(fd), install.NetNSPath(in.o.UID))
	return nil
}

func (in *installer) createVeth() error {
	rec := in.rec
	if old, err := in.host.LinkByName(rec.Interface); err == nil {
		if err := in.host.LinkDel(old); err != nil {
			return fmt.Errorf("remove stale %s: %w", rec.Interface, err)
		}
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: rec.Interface, Flags: net.FlagUp},
		PeerName:      install.GatewayUplink,
		PeerNamespace: netlink.NsFd(int(in.gwNet.Fd())),
	}
	if err := in.host.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", rec.Interface, err)
	}
	if err := addrUp(in.host, rec.Interface, rec.HostAddr); err != nil {
		return err
	}
	gh, err := nsHandle(in.gwNet)
	if err != nil {
		return err
	}
	defer gh.Close()
	return addrUp(gh, install.GatewayUplink, rec.Gateway)
}

func (in *installer) gatewayConfigured() (bool, error) {
	gh, err := nsHandle(in.gwNet)
	if err != nil {
		return false, err
	}
	defer gh.Close()
	routes, err := gh.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return false, nil
	}
	hasDefault := false
	for _, r := range routes {
		if isDefault(r) && r.Gw.Equal(net.IP(in.rec.HostAddr.Addr().AsSlice())) {
			hasDefault = true
		}
	}
	fwd := ""
	_ = nsfd.Do(in.gwNet, func() error { fwd = readSysctl("net/ipv4/ip_forward"); return nil })
	ok, err := nft.Exists(in.gwNet, nftables.TableFamilyIPv4, nft.TableName)
	return hasDefault && fwd == "1" && ok, err
}

func (in *installer) configureGateway() error {
	gh, err := nsHandle(in.gwNet)
	if err != nil {
		return err
	}
	defer gh.Close()
	lo, err := gh.LinkByName("lo")
	if err == nil {
		err = gh.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("gateway lo up: %w", err)
	}
	up, err := gh.LinkByName(install.GatewayUplink)
	if err != nil {
		return fmt.Errorf("gateway %s: %w", install.GatewayUplink, err)
	}
	route := &netlink.Route{LinkIndex: up.Attrs().Index, Gw: net.IP(in.rec.HostAddr.Addr().AsSlice())}
	if err := gh.RouteReplace(route); err != nil {
		return fmt.Errorf("gateway default route: %w", err)
	}
	if err := nsfd.WriteSysctl(in.gwNet, "net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	return nft.Apply(in.gwNet, nft.UplinkNAT(install.GatewayUplink, nil, netip.AddrPort{}))
}

// enableForwarding records the ip_forward value of before the first
// install, registers uid and turns forwarding on.
func enableForwarding(uid int) error {
	if err := os.MkdirAll(filepath.Join(stateDir, "users"), 0o755); err != nil {
		return err
	}
	prev := filepath.Join(stateDir, "ip_forward.before")
	if _, err := os.Stat(prev); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(prev, []byte(readSysctl("net/ipv4/ip_forward")), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(stateDir, "users", strconv.Itoa(uid)), nil, 0o644); err != nil {
		return err
	}
	return writeSysctl("net/ipv4/ip_forward", "1")
}

// isDefault reports whether r is a default route (netlink reports its
// destination as 0.0.0.0/0).
func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

func nsHandle(ns *os.File) (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(netns.NsHandle(int(ns.Fd())), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in gateway: %w", err)
	}
	return h, nil
}

func hasAddr(h *netlink.Handle, ifname string, p netip.Prefix) bool {
	l, err := h.LinkByName(ifname)
	if err != nil || l.Attrs().Flags&net.FlagUp == 0 {
		return false
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.IP.Equal(net.IP(p.Addr().AsSlice())) {
			return true
		}
	}
	return false
}

func addrUp(h *netlink.Handle, ifname string, p netip.Prefix) error {
	l, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("find %s: %w", ifname, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), 32)}}
	if err := h.AddrReplace(l, a); err != nil {
		return fmt.Errorf("address %s on %s: %w", p, ifname, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring %s up: %w", ifname, err)
	}
	return nil
}

func readSysctl(key string) string {
	b, err := os.ReadFile("/proc/sys/" + key)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func writeSysctl(key, value string) error {
	if err := os.WriteFile("/proc/sys/"+key, []byte(value), 0); err != nil {
		return fmt.Errorf("write /proc/sys/%s: %w", key, err)
	}
	return nil
}

// warnForwardDrops tells about other tables that drop forwarded traffic.
func warnForwardDrops(w io.Writer, rec install.Record) {
	drops, err := nft.FindForwardDrops(rec.Table)
	if err != nil {
		fmt.Fprintln(w, "note: could not check other firewall tables:", err)
		return
	}
	for _, d := range drops {
		fmt.Fprintf(w, "warning: %s\n", forwardDropAdvice(d, rec.Interface))
	}
}

func forwardDropAdvice(d nft.ForwardDrop, ifname string) string {
	return fmt.Sprintf("table %s %s, chain %s, drops forwarded packets by policy (Docker and firewalld do this), so guests cannot reach beyond the host.\n"+
		"  Let %s through: nft insert rule %s %s %s iifname %s accept; nft insert rule %s %s %s oifname %s accept\n"+
		"  (with Docker: iptables -I DOCKER-USER -i %s -j ACCEPT; iptables -I DOCKER-USER -o %s -j ACCEPT)",
		d.Family, d.Table, d.Chain, ifname, d.Family, d.Table, d.Chain, ifname, d.Family, d.Table, d.Chain, ifname, ifname, ifname)
}
