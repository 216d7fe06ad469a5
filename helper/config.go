package helper

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/nsrun/nsrun/internal/install"
)

// AdminConfig is the root-owned /etc/nsrun/helper.conf: the host ranges and
// the resolver the admin allows. Under sudo these are the only ones a user
// gets; a flag may narrow a range, never leave it.
//
//	# /etc/nsrun/helper.conf
//	host-cidr = 172.18.255.0/24   # pool of host /30s, one per user
//	runs-cidr = 172.18.192.0/19   # pool of run uplink /30s
//	resolver  = 127.0.0.53:53     # where guests' DNS goes
//	host-cidr6 = fd6e:7372::/48   # ULA pool of host /64s; none: no IPv6 uplink
type AdminConfig struct {
	HostPool, RunsCIDR netip.Prefix   // invalid: not set
	Resolver           netip.AddrPort // invalid: not set
	HostPool6          netip.Prefix   // invalid: not set (or NoIPv6)
	NoIPv6             bool           // host-cidr6 = none
}

// maxConfigSize bounds what is read of the config.
const maxConfigSize = 16 << 10

// LoadAdminConfig reads the admin's config at path. A missing file is an
// empty config. The file and its folder must be root's and writable by
// root only; it is opened without following a symlink.
func LoadAdminConfig(path string) (AdminConfig, error) {
	var c AdminConfig
	d, err := install.OpenVerifiedDir(nil, filepath.Dir(path), 0)
	if errors.Is(err, install.ErrNotInstalled) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("admin config: %w", err)
	}
	defer d.Close()
	b, err := install.ReadRootFile(d, filepath.Base(path), maxConfigSize)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("admin config %s: %w", path, err)
	}
	for i, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		where := fmt.Sprintf("%s:%d: %s", path, i+1, key)
		switch {
		case !ok:
			err = fmt.Errorf("%s:%d: want KEY = VALUE (keys: host-cidr, runs-cidr, resolver, host-cidr6)", path, i+1)
		case key == "host-cidr":
			c.HostPool, err = parsePool(where, value, 30)
		case key == "runs-cidr":
			c.RunsCIDR, err = parsePool(where, value, 24)
		case key == "resolver":
			c.Resolver, err = parseResolver(where, value)
		case key == "host-cidr6" && value == "none":
			c.NoIPv6 = true
		case key == "host-cidr6":
			c.HostPool6, err = parsePool6(where, value)
		default:
			err = fmt.Errorf("%s:%d: unknown key %q (keys: host-cidr, runs-cidr, resolver, host-cidr6)", path, i+1, key)
		}
		if err != nil {
			return AdminConfig{}, err
		}
	}
	return c, nil
}
