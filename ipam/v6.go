package ipam

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// IPv6 in nsrun: every subnet may pair its IPv4 prefix with an IPv6 /64,
// or be IPv6-only. Defaults follow one rule a reader can predict:
//
//   - the /64 paired with an IPv4 subnet A.B.C.D/len is fd00:AABB:CCDD::/64,
//     the IPv4 network address written as two hex groups after fd00
//     (172.18.0.0/24 ↔ fd00:ac12::/64, 172.18.1.0/24 ↔ fd00:ac12:100::/64,
//     10.1.0.0/16 ↔ fd00:a01::/64); distinct IPv4 subnets never share one;
//   - a node's IPv6 address is its subnet's /64 plus the node's IPv4 host
//     number (its IPv4 address minus the network address), in hex in the
//     last groups: 172.18.0.7 ↔ fd00:ac12::7, 172.18.0.10 ↔ fd00:ac12::a;
//   - the bridge (router) address follows the same rule from the IPv4
//     bridge address (172.18.0.254 ↔ fd00:ac12::fe); in an IPv6-only
//     subnet it is PREFIX::fe.
//
// Addresses are static: nsrun turns off router advertisements, SLAAC and
// duplicate address detection on every interface it makes.

// RouterHost6 is the host number of the bridge in an IPv6-only subnet.
const RouterHost6 = 0xfe

var (
	linkLocal6 = netip.MustParsePrefix("fe80::/10")
	multicast6 = netip.MustParsePrefix("ff00::/8")
	mapped4    = netip.MustParsePrefix("::ffff:0:0/96")
	compat4    = netip.MustParsePrefix("::/96") // ::, ::1 and IPv4-compatible addresses
)

// Pair6 returns the IPv6 /64 paired by default with the IPv4 prefix p4:
// fd00:AABB:CCDD::/64 for the network address A.B.C.D.
func Pair6(p4 netip.Prefix) netip.Prefix {
	a := p4.Masked().Addr().As4()
	var b [16]byte
	b[0] = 0xfd
	copy(b[2:6], a[:])
	return netip.PrefixFrom(netip.AddrFrom16(b), 64)
}

// PairRange6 returns the IPv6 prefix holding every /64 that Pair6 maps
// the addresses of p4 to (fd00:AABB:CCDD::/(16+len)). The uplink of a run
// whose IPv4 /30 is B gets Pair6(B): nsrun's run uplinks in the gateway.
func PairRange6(p4 netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(Pair6(p4).Addr(), 16+p4.Bits())
}

// hostNumber returns a's offset from the network address of p4.
func hostNumber(p4 netip.Prefix, a netip.Addr) uint32 {
	n := p4.Masked().Addr().As4()
	x := a.As4()
	return binary.BigEndian.Uint32(x[:]) - binary.BigEndian.Uint32(n[:])
}

// withHost returns the address of p6 whose last 32 bits are host.
func withHost(p6 netip.Prefix, host uint32) netip.Addr {
	b := p6.Masked().Addr().As16()
	binary.BigEndian.PutUint32(b[12:], host)
	return netip.AddrFrom16(b)
}

// HasIPv4 reports whether the subnet has an IPv4 prefix.
func (s Subnet) HasIPv4() bool { return s.Prefix.IsValid() }

// HasIPv6 reports whether the subnet has an IPv6 /64.
func (s Subnet) HasIPv6() bool { return s.Prefix6.IsValid() }

// WithIPv6 returns s paired with the IPv6 /64 p6, its bridge at the
// address the IPv4 bridge maps to (see Pair6). p6 must have passed
// CheckPrefix6.
func (s Subnet) WithIPv6(p6 netip.Prefix) Subnet {
	s.Prefix6 = p6.Masked()
	if s.HasIPv4() {
		s.Bridge6 = withHost(s.Prefix6, hostNumber(s.Prefix, s.Bridge))
	} else {
		s.Bridge6 = withHost(s.Prefix6, RouterHost6)
	}
	return s
}

// Dual returns s with its default IPv6 /64 (Pair6 of its IPv4 prefix).
func (s Subnet) Dual() Subnet { return s.WithIPv6(Pair6(s.Prefix)) }

// WithoutIPv6 returns s with no IPv6.
func (s Subnet) WithoutIPv6() Subnet {
	s.Prefix6, s.Bridge6 = netip.Prefix{}, netip.Addr{}
	return s
}

// Guest6 returns the IPv6 address that the IPv4 guest address a4 maps to
// in s (see Pair6), or an invalid address when s has no IPv6.
func (s Subnet) Guest6(a4 netip.Addr) netip.Addr {
	if !s.HasIPv6() || !s.HasIPv4() || !a4.Is4() {
		return netip.Addr{}
	}
	return withHost(s.Prefix6, hostNumber(s.Prefix, a4))
}

// NewSubnet6 parses an IPv6-only subnet: a /64, with the bridge at
// PREFIX::fe.
func NewSubnet6(field, cidr string) (Subnet, error) {
	p, err := ParsePrefix6(field, cidr)
	if err != nil {
		return Subnet{}, err
	}
	return Subnet{}.WithIPv6(p), nil
}

// ParsePrefix6 parses and checks an IPv6 subnet prefix (CheckPrefix6).
func ParsePrefix6(field, cidr string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s: %q is not an IPv6 prefix such as fd00:ac12::/64", field, cidr)
	}
	return p, CheckPrefix6(field, p)
}

// CheckPrefix6 reports whether p may be a subnet's IPv6 prefix: a /64
// (the size every IPv6 host assumes for its link) of unicast addresses,
// with no host bits, not link-local, multicast or IPv4-mapped. A ULA
// (fd00::/8) is the usual choice.
func CheckPrefix6(field string, p netip.Prefix) error {
	a := p.Addr()
	switch {
	case a.Is4():
		return fmt.Errorf("%s: %s is an IPv4 prefix; write an IPv6 /64 such as fd00:ac12::/64", field, p)
	case a.Zone() != "":
		return fmt.Errorf("%s: %s: a subnet prefix has no zone (%%%s)", field, p, a.Zone())
	case mapped4.Contains(a) || a.Is4In6():
		return fmt.Errorf("%s: %s is an IPv4-mapped prefix (::ffff:0:0/96); write an IPv6 /64 such as fd00:ac12::/64", field, p)
	case linkLocal6.Overlaps(p):
		return fmt.Errorf("%s: %s is link-local (fe80::/10), which every interface has on its own; pick a ULA /64 such as fd00:ac12::/64", field, p)
	case multicast6.Overlaps(p):
		return fmt.Errorf("%s: %s is multicast (ff00::/8); pick a unicast /64 such as fd00:ac12::/64", field, p)
	case compat4.Overlaps(p):
		return fmt.Errorf("%s: %s holds the unspecified and loopback addresses; pick a ULA /64 such as fd00:ac12::/64", field, p)
	case p.Bits() != 64:
		return fmt.Errorf("%s: %s: an IPv6 subnet must be a /64 (IPv6 hosts assume /64 links); write %s", field, p, netip.PrefixFrom(a, 64).Masked())
	case p.Masked() != p:
		return fmt.Errorf("%s: %s has host bits set; write %s", field, p, p.Masked())
	}
	return nil
}

// CheckGuest6 reports whether addr may be a guest's IPv6 address in s:
// inside the subnet's /64 and neither its first address (the
// subnet-router anycast address) nor the bridge's; never link-local,
// multicast or IPv4-mapped, and written without a zone.
func (s Subnet) CheckGuest6(field string, addr netip.Addr) error {
	if err := s.checkKind6(field, addr); err != nil {
		return err
	}
	hint := "pick an address such as " + s.example6()
	switch {
	case !s.HasIPv6():
		return fmt.Errorf("%s: %s: the node's subnet has no IPv6 prefix; give the subnet one (subnets: NAME: {ipv4: ..., ipv6: fd00:.../64}) or drop the address", field, addr)
	case !s.Prefix6.Contains(addr):
		return fmt.Errorf("%s: %s is outside the subnet's IPv6 prefix %s; %s", field, addr, s.Prefix6, hint)
	case addr == s.Prefix6.Addr():
		return fmt.Errorf("%s: %s is the subnet-router anycast address of %s; %s", field, addr, s.Prefix6, hint)
	case addr == s.Bridge6:
		return fmt.Errorf("%s: %s is the bridge's own address; %s", field, addr, hint)
	}
	return nil
}

// CheckAddr6 reports whether addr is of a kind a guest may be given,
// whatever its subnet: a unicast IPv6 address, neither link-local,
// multicast nor IPv4-mapped, written without a zone.
func CheckAddr6(field string, addr netip.Addr) error {
	return Subnet{}.checkKind6(field, addr)
}

func (s Subnet) checkKind6(field string, addr netip.Addr) error {
	hint := "pick an address such as " + s.example6()
	switch {
	case !addr.Is6() || addr.Is4In6():
		return fmt.Errorf("%s: %s is not an IPv6 address; %s", field, addr, hint)
	case linkLocal6.Contains(addr.WithZone("")):
		return fmt.Errorf("%s: %s is link-local (fe80::/10): every interface makes its own; %s", field, addr, hint)
	case addr.Zone() != "":
		return fmt.Errorf("%s: %s: write the address without a zone", field, addr)
	case multicast6.Contains(addr):
		return fmt.Errorf("%s: %s is a multicast address; %s", field, addr, hint)
	case compat4.Contains(addr):
		return fmt.Errorf("%s: %s is the unspecified or loopback address, or IPv4-compatible; %s", field, addr, hint)
	}
	return nil
}

// ParseGuest6 parses text as an IPv6 address and checks it with
// CheckGuest6.
func (s Subnet) ParseGuest6(field, text string) (netip.Addr, error) {
	addr, err := netip.ParseAddr(text)
	if err != nil || !addr.Is6() {
		return netip.Addr{}, fmt.Errorf("%s: %q is not an IPv6 address such as %s", field, text, s.example6())
	}
	return addr, s.CheckGuest6(field, addr)
}

func (s Subnet) example6() string {
	if !s.HasIPv6() {
		return "fd00:ac12::7"
	}
	a := withHost(s.Prefix6, 7)
	if a == s.Bridge6 {
		a = withHost(s.Prefix6, 8)
	}
	return a.String()
}
