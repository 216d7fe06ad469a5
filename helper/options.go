package helper

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/nsrun/nsrun/internal/install"
	"github.com/nsrun/nsrun/internal/netsetup"
)

// Options are install's validated settings.
type Options struct {
	User     string
	UID, GID int
	HostPool netip.Prefix   // /30s for the host veths of all users
	RunsCIDR netip.Prefix   // /30s for the uplinks of this user's runs
	Resolver netip.AddrPort // DNS target; invalid: none
	// HostPool6 is the ULA pool of the host links' IPv6 /64s (the
	// admin's host-cidr6); invalid: no IPv6 uplink.
	HostPool6 netip.Prefix
}

// Flags are install's raw flags, as typed.
type Flags struct {
	User, HostCIDR, RunsCIDR, Resolver string
}

// ResolveUser picks the user to act for: SUDO_UID under sudo, or --user
// when real root runs the helper directly.
func ResolveUser(flagUser string) (name string, uid, gid int, err error) {
	if os.Geteuid() != 0 {
		return "", 0, 0, errors.New("must run as root: use sudo nsrun-helper")
	}
	for _, v := range []string{"DOAS_USER", "PKEXEC_UID"} {
		if os.Getenv(v) != "" { // whose flags the admin's config would not bound
			return "", 0, 0, fmt.Errorf("%s is set: run nsrun-helper with sudo, or as root with --user NAME", v)
		}
	}
	sudoUID := os.Getenv("SUDO_UID")
	var u *user.User
	switch {
	case sudoUID != "" && flagUser != "":
		return "", 0, 0, errors.New("--user: not allowed under sudo; the user is the one who ran sudo (SUDO_UID)")
	case sudoUID != "":
		u, err = user.LookupId(sudoUID)
	case flagUser != "":
		u, err = user.Lookup(flagUser)
		if err != nil {
			return "", 0, 0, fmt.Errorf("--user: no user %q on this machine", flagUser)
		}
	default:
		return "", 0, 0, errors.New("which user? run it with sudo as that user, or as root with --user NAME")
	}
	if err != nil {
		return "", 0, 0, fmt.Errorf("look up user: %w", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	if uid == 0 {
		return "", 0, 0, errors.New("--user: nsrun-helper sets up an unprivileged user; root needs no helper")
	}
	return u.Username, uid, gid, nil
}

// ParseOptions validates the flags for uid against the admin's config.
// Under sudo (underSudo), flags that choose host addresses or the
// resolver are refused unless the admin's config allows them: the user
// must not claim an address the host reaches elsewhere (the site's DNS or
// proxy) nor point the host's DNAT at any IP:port. Nothing is changed.
func ParseOptions(f Flags, name string, uid, gid int, cfg AdminConfig, configPath string, underSudo bool) (Options, error) {
	o := Options{User: name, UID: uid, GID: gid, HostPool: install.DefaultHostPool, RunsCIDR: install.DefaultRunsCIDR, Resolver: cfg.Resolver}
	if cfg.HostPool.IsValid() {
		o.HostPool = cfg.HostPool
	}
	if cfg.RunsCIDR.IsValid() {
		o.RunsCIDR = cfg.RunsCIDR
	}
	switch {
	case cfg.NoIPv6:
	case cfg.HostPool6.IsValid():
		o.HostPool6 = cfg.HostPool6
	default:
		o.HostPool6 = install.DefaultHostPool6
	}
	for _, fl := range []struct {
		name, value string
		maxBits     int
		allowed     netip.Prefix
		dst         *netip.Prefix
	}{{"--host-cidr", f.HostCIDR, 30, cfg.HostPool, &o.HostPool}, {"--runs-cidr", f.RunsCIDR, 24, cfg.RunsCIDR, &o.RunsCIDR}} {
		if fl.value == "" {
			continue
		}
		p, err := parsePool(fl.name, fl.value, fl.maxBits)
		if err != nil {
			return o, err
		}
		key := strings.TrimPrefix(fl.name, "--")
		switch {
		case underSudo && !fl.allowed.IsValid():
			return o, fmt.Errorf("%s: under sudo only the admin picks host ranges: set %s in the root-owned %s, or run as root with --user", fl.name, key, configPath)
		case underSudo && !(fl.allowed.Bits() <= p.Bits() && fl.allowed.Contains(p.Addr())):
			return o, fmt.Errorf("%s: %s is outside the admin's %s %s (%s); under sudo pick a range inside it", fl.name, p, key, fl.allowed, configPath)
		}
		*fl.dst = p
	}
	if o.HostPool.Overlaps(o.RunsCIDR) {
		return o, fmt.Errorf("--runs-cidr %s overlaps --host-cidr %s; pick ranges that do not overlap", o.RunsCIDR, o.HostPool)
	}
	if guest := netip.MustParsePrefix("172.18.0.0/24"); o.RunsCIDR.Overlaps(guest) || o.HostPool.Overlaps(guest) {
		return o, fmt.Errorf("--host-cidr %s / --runs-cidr %s must not overlap the guest subnet %s", o.HostPool, o.RunsCIDR, guest)
	}
	switch {
	case f.Resolver != "":
		r, err := parseResolver("--resolver", f.Resolver)
		if err != nil {
			return o, err
		}
		if underSudo && r != cfg.Resolver {
			return o, fmt.Errorf("--resolver: under sudo only the admin picks where guests' DNS goes: set resolver = %s in the root-owned %s, or run as root with --user", r, configPath)
		}
		o.Resolver = r
	case !o.Resolver.IsValid():
		o.Resolver = systemResolver("/etc/resolv.conf")
	}
	return o, nil
}

func parsePool(field, s string, maxBits int) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return p, fmt.Errorf("%s: %q is not an IPv4 CIDR such as 172.18.255.0/24", field, s)
	}
	if p.Masked() != p {
		return p, fmt.Errorf("%s: %q has host bits set; write %s", field, s, p.Masked())
	}
	if p.Bits() > maxBits || p.Bits() < 8 {
		return p, fmt.Errorf("%s: %q must be between /8 and /%d", field, s, maxBits)
	}
	return p, nil
}

// ula is the unique local range (RFC 4193) the host /64s come from: never
// an address the host could reach elsewhere on the internet.
var ula = netip.MustParsePrefix("fc00::/7")

func parsePool6(field, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() || !ula.Contains(p.Addr()) {
		return p, fmt.Errorf("%s: %q is not a unique local IPv6 prefix such as fd6e:7372::/48 (or none)", field, s)
	}
	if p.Masked() != p {
		return p, fmt.Errorf("%s: %q has host bits set; write %s", field, s, p.Masked())
	}
	if p.Bits() > 64 || p.Bits() < 16 {
		return p, fmt.Errorf("%s: %q must be between /16 and /64", field, s)
	}
	return p, nil
}

func parseResolver(field, s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Is4() && ap.Port() != 0 {
		return ap, nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
		return netip.AddrPortFrom(a, 53), nil
	}
	return netip.AddrPort{}, fmt.Errorf("%s: %q is not an IPv4 address with an optional port, such as 127.0.0.53 or 127.0.0.1:5353", field, s)
}

// systemResolver returns the first IPv4 nameserver of resolv.conf (a
// root-owned system file; only its nameserver lines are read).
func systemResolver(path string) netip.AddrPort {
	f, err := os.Open(path)
	if err != nil {
		return netip.AddrPort{}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			if a, err := netip.ParseAddr(fields[1]); err == nil && a.Is4() {
				return netip.AddrPortFrom(a, 53)
			}
		}
	}
	return netip.AddrPort{}
}

// hostRoutes lists the host's routes (IPv6 ones when v6, else IPv4),
// except those through ifname, the default route, loopback, multicast and
// link-local.
func hostRoutes(h *netlink.Handle, ifname string, v6 bool) ([]netip.Prefix, []string, error) {
	routes, err := netsetup.Routes(h, v6, ifname)
	if err != nil {
		return nil, nil, fmt.Errorf("host: %w", err)
	}
	var prefixes []netip.Prefix
	var names []string
	for _, r := range routes {
		p := r.Dst
		if p.Addr().IsLoopback() || p.Addr().IsMulticast() || v6 && p.Addr().IsLinkLocalUnicast() {
			continue
		}
		dev := ""
		if r.Dev != "" {
			dev = " dev " + r.Dev
		}
		prefixes = append(prefixes, p)
		names = append(names, p.String()+dev)
	}
	return prefixes, names, nil
}

// clash returns the first host route overlapping p.
func clash(p netip.Prefix, routes []netip.Prefix, names []string) (string, bool) {
	for i, r := range routes {
		if r.Overlaps(p) {
			return names[i], true
		}
	}
	return "", false
}
