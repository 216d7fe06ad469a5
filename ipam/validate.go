// Package ipam validates and allocates the addresses of a run: guest
// addresses inside a subnet, interface names derived from node names, and
// uplink /30 leases shared by all runs of one user.
//
// It is not a stable API: it is importable only because the project keeps
// it at the top of the module, and it may change in any release. Go users
// import nstest (see docs/nstest.md).
package ipam

import (
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"net/netip"
)

// MaxIfNameLen is the longest interface name Linux accepts (IFNAMSIZ-1).
const MaxIfNameLen = 15

// Subnet is a guest subnet with its bridge (router) addresses: an IPv4
// prefix, an IPv6 /64 (see Pair6), or both.
type Subnet struct {
	Prefix  netip.Prefix // IPv4, masked, for example 172.18.0.0/24; invalid when IPv6-only
	Bridge  netip.Addr   // the bridge's own address, for example 172.18.0.254
	Prefix6 netip.Prefix // IPv6 /64, for example fd00:ac12::/64; invalid without IPv6
	Bridge6 netip.Addr   // the bridge's own IPv6 address, for example fd00:ac12::fe
}

// DefaultSubnet returns the IPv4 subnet every run uses unless told
// otherwise: 172.18.0.0/24 with the bridge at 172.18.0.254. Its Dual
// adds fd00:ac12::/64 with the bridge at fd00:ac12::fe.
func DefaultSubnet() Subnet {
	return Subnet{
		Prefix: netip.MustParsePrefix("172.18.0.0/24"),
		Bridge: netip.MustParseAddr("172.18.0.254"),
	}
}

// DefaultGuest is the guest address of a single-node run.
var DefaultGuest = netip.MustParseAddr("172.18.0.1")

// NewSubnet parses a CIDR and places the bridge at the last usable address.
// field names the setting in errors.
func NewSubnet(field, cidr string) (Subnet, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return Subnet{}, fmt.Errorf("%s: %q is not a CIDR such as 172.18.0.0/24: %w", field, cidr, err)
	}
	if !p.Addr().Is4() {
		return Subnet{}, fmt.Errorf("%s: %q: only IPv4 subnets are supported", field, cidr)
	}
	if p.Bits() > 29 || p.Bits() < 8 {
		return Subnet{}, fmt.Errorf("%s: %q: the prefix length must be between /8 and /29", field, cidr)
	}
	if p.Masked() != p {
		return Subnet{}, fmt.Errorf("%s: %q has host bits set; write %s", field, cidr, p.Masked())
	}
	for _, sp := range special4 {
		if sp.prefix.Overlaps(p) {
			return Subnet{}, fmt.Errorf("%s: %s overlaps %s (%s), which %s; pick a private subnet such as 172.18.1.0/24 or 10.1.0.0/24", field, p, sp.prefix, sp.what, sp.why)
		}
	}
	return Subnet{Prefix: p, Bridge: prev(broadcast(p))}, nil
}

// special4 are the IPv4 ranges no guest subnet may overlap: the kernel
// treats their addresses specially, so hosts on them cannot talk as hosts
// of one link do (RFC 6890's special-purpose ranges that are not usable as
// unicast on a link).
var special4 = []struct {
	prefix    netip.Prefix
	what, why string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this network", "is never a host's address"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback", "the kernel keeps on lo and never routes"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local", "is not routed between subnets"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast", "is never a host's address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved, and broadcast", "is never a host's address"},
}

// CheckGuest reports whether addr may be given to a guest of s: it must lie
// inside the subnet and be neither its network, broadcast nor bridge address.
// field names the setting in errors, for example "--ip" or "nodes.db.ip".
func (s Subnet) CheckGuest(field string, addr netip.Addr) error {
	switch {
	case !s.HasIPv4():
		return fmt.Errorf("%s: %s: the subnet %s is IPv6-only; give the node an IPv6 address (ip6:) instead", field, addr, s.Prefix6)
	case !addr.Is4():
		return fmt.Errorf("%s: %s is not an IPv4 address", field, addr)
	case !s.Prefix.Contains(addr):
		return fmt.Errorf("%s: %s is outside the guest subnet %s; pick an address in %s", field, addr, s.Prefix, s.usable())
	case addr == s.Prefix.Addr():
		return fmt.Errorf("%s: %s is the network address of %s; pick an address in %s", field, addr, s.Prefix, s.usable())
	case addr == broadcast(s.Prefix):
		return fmt.Errorf("%s: %s is the broadcast address of %s; pick an address in %s", field, addr, s.Prefix, s.usable())
	case addr == s.Bridge:
		return fmt.Errorf("%s: %s is the bridge's own address; pick another address in %s", field, addr, s.usable())
	}
	return nil
}

// ParseGuest parses text as an IPv4 address and checks it with CheckGuest.
func (s Subnet) ParseGuest(field, text string) (netip.Addr, error) {
	addr, err := netip.ParseAddr(text)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s: %q is not an IPv4 address such as 172.18.0.7", field, text)
	}
	return addr, s.CheckGuest(field, addr)
}

func (s Subnet) usable() string {
	first := s.Prefix.Addr().Next()
	last := prev(broadcast(s.Prefix))
	if last == s.Bridge {
		last = prev(last)
	}
	return first.String() + "-" + last.String()
}

// broadcast returns the last address of p.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func prev(a netip.Addr) netip.Addr { return a.Prev() }

// IfName derives a Linux interface name from a prefix and a node name. Names
// that fit in 15 bytes are kept as they are; longer ones are shortened to a
// stable hash so that the same node always gets the same interface.
func IfName(prefix, node string) string {
	name := prefix + node
	if len(name) <= MaxIfNameLen && validIfChars(node) {
		return name
	}
	f := fnv.New64a() // 16 hex digits: enough for any prefix
	f.Write([]byte(node))
	h := hex.EncodeToString(f.Sum(nil))
	return prefix + h[:MaxIfNameLen-len(prefix)]
}

func validIfChars(s string) bool {
	for _, r := range s {
		if r <= ' ' || r == '/' || r == ':' || r > '~' {
			return false
		}
	}
	return true
}

// CheckNodeName reports whether name can name a node: 1 to 63 characters of
// letters, digits, '-', '_' and '.', starting with a letter or digit, so it
// also works as a hostname and in /etc/hosts.
func CheckNodeName(field, name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("%s: node name %q must be 1 to 63 characters long", field, name)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			i > 0 && (r == '-' || r == '_' || r == '.')
		if !ok {
			return fmt.Errorf("%s: node name %q may use only letters, digits, '-', '_' and '.', and must start with a letter or digit", field, name)
		}
	}
	return nil
}

// CheckHostname reports whether name is a valid hostname (RFC 1123 labels).
func CheckHostname(field, name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("%s: hostname %q must be 1 to 64 characters long", field, name)
	}
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			label++
		case c == '-' && label > 0 && i+1 < len(name) && name[i+1] != '.':
			label++
		case c == '.' && label > 0:
			label = 0
		default:
			return fmt.Errorf("%s: hostname %q may use only letters, digits, '-' and '.' (not at the start or end of a label)", field, name)
		}
	}
	if label == 0 {
		return fmt.Errorf("%s: hostname %q must not end with '.'", field, name)
	}
	return nil
}
