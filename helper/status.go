package helper

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strconv"

	"github.com/google/nftables"

	"github.com/nsrun/nsrun/internal/install"
	"github.com/nsrun/nsrun/internal/netsetup"
	"github.com/nsrun/nsrun/nft"
)

// Status is what `nsrun-helper status` reports; it needs no root, though
// root sees the firewall too.
type Status struct {
	User              string   `json:"user"`
	UID               int      `json:"uid"`
	Installed         bool     `json:"installed"`
	Problem           string   `json:"problem,omitempty"`
	Interface         string   `json:"interface,omitempty"`
	InterfaceUp       bool     `json:"interface_up"`
	HostAddr          string   `json:"host_addr,omitempty"`
	GatewayAddr       string   `json:"gateway_addr,omitempty"`
	HostAddr6         string   `json:"host_addr6,omitempty"`    // none: the uplink carries IPv4 only
	GatewayAddr6      string   `json:"gateway_addr6,omitempty"` // (the host had no IPv6 at install)
	RunsCIDR          string   `json:"runs_cidr,omitempty"`
	Resolver          string   `json:"resolver,omitempty"`
	NamespacesMounted bool     `json:"namespaces_mounted"`
	Lingering         bool     `json:"lingering"`
	Table             string   `json:"table,omitempty"`
	TablePresent      *bool    `json:"table_present,omitempty"` // nil: not checked (needs root)
	ForwardDrops      []string `json:"forward_drops,omitempty"`
	// Forwarding is how the guard table treats forwarding of other
	// interfaces (root only): "nsrun only" (it was off before the first
	// install) or "unchanged".
	Forwarding string `json:"forwarding,omitempty"`
}

// GetStatus inspects what is installed for uid.
func GetStatus(uid int) Status {
	s := Status{UID: uid, Interface: install.InterfaceName(uid), Table: install.TableName(uid)}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		s.User = u.Username
	}
	rec, err := loadRecord(uid)
	switch {
	case errors.Is(err, install.ErrNotInstalled) && rec.UID == 0:
		s.Problem = "not installed: run `sudo nsrun-helper install`"
	case err != nil:
		s.Problem = err.Error()
	default:
		s.Installed, s.NamespacesMounted = true, true
		s.HostAddr, s.GatewayAddr, s.RunsCIDR = rec.HostAddr.String(), rec.Gateway.String(), rec.RunsCIDR.String()
		if rec.Gateway6.IsValid() {
			s.HostAddr6, s.GatewayAddr6 = rec.HostAddr6.String(), rec.Gateway6.String()
		}
		if rec.Resolver.IsValid() {
			s.Resolver = rec.Resolver.String()
		}
	}
	switch up, ok, err := interfaceUp(s.Interface); {
	case err != nil && s.Installed:
		s.Problem = fmt.Sprintf("cannot tell whether interface %s is there: %v", s.Interface, err)
	case ok:
		s.InterfaceUp = up
	case s.Installed:
		s.Installed = false
		s.Problem = fmt.Sprintf("interface %s is missing: run `sudo nsrun-helper install` again", s.Interface)
	}
	if s.User != "" {
		_, err := os.Stat("/var/lib/systemd/linger/" + s.User)
		s.Lingering = err == nil
	}
	if os.Geteuid() == 0 {
		ok, err := nft.Exists(nil, nftables.TableFamilyINet, s.Table)
		if err == nil {
			s.TablePresent = &ok
			if s.Installed && !ok {
				s.Installed = false
				s.Problem = fmt.Sprintf("nftables table inet %s is missing: run `sudo nsrun-helper install` again", s.Table)
			}
		}
		if g, ok, err := nft.ReadGuard(); err == nil && ok {
			s.Forwarding = map[bool]string{true: "nsrun only", false: "unchanged"}[g.DropOthers]
			if s.Installed && !slices.Contains(g.Interfaces, s.Interface) {
				s.Installed = false
				s.Problem = fmt.Sprintf("%s is missing from the guard table inet %s: run `sudo nsrun-helper install` again", s.Interface, nft.GuardTableName)
			}
		} else if s.Installed {
			s.Installed = false
			s.Problem = fmt.Sprintf("the guard table inet %s is missing: run `sudo nsrun-helper install` again", nft.GuardTableName)
		}
		drops, _ := nft.FindForwardDrops()
		for _, d := range drops {
			s.ForwardDrops = append(s.ForwardDrops, forwardDropAdvice(d, s.Interface))
		}
	}
	return s
}

// Print writes s for a person.
func (s Status) Print(w io.Writer) {
	state := "installed"
	if !s.Installed {
		state = "not working: " + s.Problem
	}
	fmt.Fprintf(w, "nsrun-helper for %s (uid %d): %s\n", s.User, s.UID, state)
	if s.HostAddr != "" {
		fmt.Fprintf(w, "  interface   %s %s (up: %v), gateway %s\n", s.Interface, s.HostAddr, s.InterfaceUp, s.GatewayAddr)
		if s.HostAddr6 != "" {
			fmt.Fprintf(w, "  IPv6        %s, gateway %s\n", s.HostAddr6, s.GatewayAddr6)
		} else {
			fmt.Fprintln(w, "  IPv6        none: the host had no IPv6 at install (runs keep IPv6 inside)")
		}
		fmt.Fprintf(w, "  run uplinks %s\n", s.RunsCIDR)
		if s.Resolver != "" {
			fmt.Fprintf(w, "  DNS         guests' DNS goes to %s\n", s.Resolver)
		} else {
			fmt.Fprintln(w, "  DNS         none (no IPv4 nameserver in /etc/resolv.conf at install)")
		}
	}
	fmt.Fprintf(w, "  namespaces  %s, %s mounted: %v\n", install.UserNSPath(s.UID), install.NetNSPath(s.UID), s.NamespacesMounted)
	if s.Lingering {
		fmt.Fprintln(w, "  lingering   on: the install survives your logout (not a reboot)")
	} else {
		fmt.Fprintf(w, "  lingering   off: /run/user/%d and the install vanish at your last logout (and at reboot); keep them with `loginctl enable-linger %s`\n", s.UID, s.User)
	}
	switch {
	case s.TablePresent == nil:
		fmt.Fprintf(w, "  firewall    table inet %s: run status as root to check it and other tables\n", s.Table)
	case *s.TablePresent:
		fmt.Fprintf(w, "  firewall    table inet %s present\n", s.Table)
	default:
		fmt.Fprintf(w, "  firewall    table inet %s missing\n", s.Table)
	}
	switch s.Forwarding {
	case "nsrun only":
		fmt.Fprintf(w, "  forwarding  only to and from nsrun interfaces (it was off before the first install; table inet %s)\n", nft.GuardTableName)
	case "unchanged":
		fmt.Fprintf(w, "  forwarding  was on before the first install: unchanged for other interfaces (table inet %s)\n", nft.GuardTableName)
	}
	for _, d := range s.ForwardDrops {
		fmt.Fprintf(w, "warning: %s\n", d)
	}
}

// loadRecord reads uid's record: as root the authoritative one (root reads
// nothing of the user's), otherwise the user's copy; either way it checks
// that the namespaces are still mounted, through verified folders.
func loadRecord(uid int) (install.Record, error) {
	if os.Geteuid() != 0 {
		return install.Load(uid)
	}
	userDir, nsDir, err := openUserDirs(uid)
	if userDir != nil {
		defer userDir.Close()
	}
	if err != nil {
		return install.Record{}, err
	}
	st, err := openState(false)
	if err != nil {
		return install.Record{}, err
	}
	defer st.close()
	rec, ok, err := st.record(uid)
	if err != nil || !ok {
		return rec, errors.Join(err, install.ErrNotInstalled)
	}
	if nsDir == nil {
		return rec, fmt.Errorf("%w: %s is gone (after a reboot or logout); run `sudo nsrun-helper install` again", install.ErrNotInstalled, install.Dir(uid))
	}
	defer nsDir.Close()
	for _, name := range []string{"userns", "netns"} {
		if !install.NamespaceMounted(nsDir, name) {
			return rec, fmt.Errorf("%w: %s/%s is no longer a mounted namespace (gone after a reboot or logout); run `sudo nsrun-helper install` again", install.ErrNotInstalled, install.Dir(uid), name)
		}
	}
	return rec, nil
}

// interfaceUp says whether the host has the interface name (ok) and
// whether it is up.
func interfaceUp(name string) (up, ok bool, err error) {
	h, err := netsetup.Here()
	if err != nil {
		return false, false, err
	}
	defer h.Close()
	return netsetup.LinkUp(h, name)
}
