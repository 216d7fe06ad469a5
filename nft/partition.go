package nft

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// PartitionTable is the name of the partition tables (one of family
// bridge, one of family ip, one of family ip6) in a run's bridge namespace.
const PartitionTable = "nsrun-net"

// Member is a node as the partition rules see it: its bridge ports (the
// bridge-side ends of its veth or tap links), which cut every frame
// between nodes of one subnet whatever its protocol (IPv4, IPv6 with
// link-local and multicast, ARP), and its addresses in both families,
// which cut packets routed between subnets.
type Member struct {
	Ports []string
	Addrs []netip.Addr
}

// Lossy drops a share of a node's packets, both ways.
type Lossy struct {
	Port    string // the node's bridge port
	Percent int    // 1..100
}

// Group is a set of sources cut from the same destinations: one rule
// per table.
type Group struct{ From, To []Member }

// NetState is everything the partition tables enforce.
type NetState struct {
	Groups    []Group
	UplinkCut []netip.Addr // may not use the uplink, either way (IPv4 and IPv6)
	Uplink    string       // the uplink's name in the bridge namespace ("" for none)
	Loss      []Lossy
}

// PartitionTables builds the three tables of a run's bridge namespace:
//   - bridge nsrun-net, chain forward: frames between ports of one bridge
//     (nodes of one subnet), cut by port (named sets fromN and toN of
//     interface names, for iifname and oifname), so
//     that IPv4, IPv6 link-local and multicast alike are cut; neighbour
//     discovery (ARP, and ICMPv6 neighbour solicitations and
//     advertisements) is spared so that a one-way `drop` stays one-way.
//     Traffic to the bridge itself takes the input hook, so a node always
//     reaches its bridge;
//   - ip and ip6 nsrun-net, chain forward: packets routed between subnets
//     and to and from the uplink, cut by address sets, plus the uplink
//     cut;
//   - bridge nsrun-net, chains prerouting and postrouting: the loss of
//     lossy ports (IPv4 and IPv6, sparing neighbour discovery), which
//     sees every frame of a port once.
//
// However many nodes, a partition into k clusters is k rules per table
// (plus two constant rules that spare neighbour discovery). Apply them
// with ApplyAll, so every node switches at the same instant in both
// families.
func PartitionTables(s NetState) []*Table {
	br := filterChain("forward", nftables.ChainHookForward)
	ip := filterChain("forward", nftables.ChainHookForward)
	ip6 := filterChain("forward", nftables.ChainHookForward)
	for i, g := range s.Groups {
		from, to := ports(g.From), ports(g.To)
		if len(from) > 0 && len(to) > 0 {
			fromSet, toSet := fmt.Sprintf("from%d", i), fmt.Sprintf("to%d", i)
			br.Rules = append(br.Rules, Rule{
				Text:  fmt.Sprintf("iifname @%s oifname @%s drop", fromSet, toSet),
				Sets:  []*AnonSet{ifnameSet(fromSet, from), ifnameSet(toSet, to)},
				Exprs: rule(metaLookup(expr.MetaKeyIIFNAME), metaLookup(expr.MetaKeyOIFNAME), drop()),
			})
		}
		if from, to := addrs(g.From, false), addrs(g.To, false); len(from) > 0 && len(to) > 0 {
			ip.Rules = append(ip.Rules, Rule{
				Text:  fmt.Sprintf("ip saddr { %s } ip daddr { %s } drop", abbrev(from), abbrev(to)),
				Sets:  []*AnonSet{addrSet(from), addrSet(to)},
				Exprs: rule(addrLookup(12, 4), addrLookup(16, 4), drop()),
			})
		}
		if from, to := addrs(g.From, true), addrs(g.To, true); len(from) > 0 && len(to) > 0 {
			ip6.Rules = append(ip6.Rules, Rule{
				Text:  fmt.Sprintf("ip6 saddr { %s } ip6 daddr { %s } drop", abbrev(from), abbrev(to)),
				Sets:  []*AnonSet{addrSet(from), addrSet(to)},
				Exprs: rule(addrLookup(8, 16), addrLookup(24, 16), drop()),
			})
		}
	}
	if len(br.Rules) > 0 {
		br.Rules = append([]Rule{sparARP(), sparND()}, br.Rules...)
	}
	if s.Uplink != "" {
		for _, v6 := range []bool{false, true} {
			var cut []netip.Addr
			for _, a := range s.UplinkCut {
				if a.Is6() == v6 {
					cut = append(cut, a)
				}
			}
			if len(cut) == 0 {
				continue
			}
			fam, src, dst, size, c := "ip", uint32(12), uint32(16), uint32(4), &ip
			if v6 {
				fam, src, dst, size, c = "ip6", 8, 24, 16, &ip6
			}
			set := addrSet(cut)
			c.Rules = append(c.Rules,
				Rule{Text: fmt.Sprintf("oifname %q %s saddr { %s } drop", s.Uplink, fam, abbrev(cut)), Sets: []*AnonSet{set},
					Exprs: rule(oifname(expr.CmpOpEq, s.Uplink), addrLookup(src, size), drop())},
				Rule{Text: fmt.Sprintf("iifname %q %s daddr { %s } drop", s.Uplink, fam, abbrev(cut)), Sets: []*AnonSet{set},
					Exprs: rule(iifname(expr.CmpOpEq, s.Uplink), addrLookup(dst, size), drop())},
			)
		}
	}
	// Loss: IPv4 and IPv6 packets from the node as they enter its port,
	// and to the node as they leave it, bridged or routed alike, each
	// exactly once. ARP and IPv6 neighbour discovery are spared, so that
	// loss never turns into a lost neighbour and a total blackout.
	pre := Chain{Name: "prerouting", Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityFilter}
	post := Chain{Name: "postrouting", Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityFilter}
	if len(s.Loss) > 0 {
		pre.Rules = append(pre.Rules, sparND())
		post.Rules = append(post.Rules, sparND())
	}
	for _, l := range s.Loss {
		pre.Rules = append(pre.Rules, Rule{
			Text:  fmt.Sprintf("iifname %q ether type { ip, ip6 } numgen random mod 100 < %d drop", l.Port, l.Percent),
			Sets:  []*AnonSet{ipEtherTypes()},
			Exprs: rule(iifname(expr.CmpOpEq, l.Port), etherTypeLookup(), randomBelow(l.Percent), drop()),
		})
		post.Rules = append(post.Rules, Rule{
			Text:  fmt.Sprintf("oifname %q ether type { ip, ip6 } numgen random mod 100 < %d drop", l.Port, l.Percent),
			Sets:  []*AnonSet{ipEtherTypes()},
			Exprs: rule(oifname(expr.CmpOpEq, l.Port), etherTypeLookup(), randomBelow(l.Percent), drop()),
		})
	}
	bridgeChains := []Chain{br}
	if len(s.Loss) > 0 {
		bridgeChains = append(bridgeChains, pre, post)
	}
	return []*Table{
		{Family: nftables.TableFamilyBridge, Name: PartitionTable, Chains: bridgeChains},
		{Family: nftables.TableFamilyIPv4, Name: PartitionTable, Chains: []Chain{ip}},
		{Family: nftables.TableFamilyIPv6, Name: PartitionTable, Chains: []Chain{ip6}},
	}
}

// sparARP accepts ARP (bridge family).
//
//	[ payload load 2b @ link header + 12 => reg 1 ]
//	[ cmp eq reg 1 0x00000608 ]
//	[ immediate reg 0 accept ]
func sparARP() Rule {
	return Rule{Text: "ether type arp accept", Exprs: rule(etherType(unix.ETH_P_ARP), accept())}
}

// ICMPv6 neighbour solicitation and advertisement (RFC 4861).
const (
	icmp6NeighborSolicit = 135
	icmp6NeighborAdvert  = 136
)

// sparND accepts IPv6 neighbour solicitations and advertisements (bridge
// family).
//
//	[ payload load 2b @ link header + 12 => reg 1 ]
//	[ cmp eq reg 1 0x0000dd86 ]
//	[ meta load l4proto => reg 1 ]
//	[ cmp eq reg 1 0x0000003a ]
//	[ payload load 1b @ transport header + 0 => reg 1 ]
//	[ lookup reg 1 set __set%d ]
//	[ immediate reg 0 accept ]
func sparND() Rule {
	return Rule{
		Text: "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
		Sets: []*AnonSet{{KeyType: nftables.TypeICMP6Type, Keys: [][]byte{{icmp6NeighborSolicit}, {icmp6NeighborAdvert}}}},
		Exprs: rule(etherType(unix.ETH_P_IPV6),
			[]expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
				&expr.Lookup{SourceRegister: 1},
			}, accept()),
	}
}

// etherType matches the ethertype of a frame (bridge family).
//
//	[ payload load 2b @ link header + 12 => reg 1 ]
//	[ cmp eq reg 1 0x00000008 ]
func etherType(t uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(t)},
	}
}

// etherTypeLookup looks the ethertype up in the rule's set.
//
//	[ payload load 2b @ link header + 12 => reg 1 ]
//	[ lookup reg 1 set __set%d ]
func etherTypeLookup() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		&expr.Lookup{SourceRegister: 1},
	}
}

// ipEtherTypes is the set { ip, ip6 }.
func ipEtherTypes() *AnonSet {
	return &AnonSet{KeyType: nftables.TypeEtherType, Keys: [][]byte{
		binaryutil.BigEndian.PutUint16(unix.ETH_P_IP), binaryutil.BigEndian.PutUint16(unix.ETH_P_IPV6),
	}}
}

// metaLookup looks the input or output interface name up in the rule's
// set.
//
//	[ meta load iifname => reg 1 ]
//	[ lookup reg 1 set __set%d ]
func metaLookup(key expr.MetaKey) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Lookup{SourceRegister: 1},
	}
}

// ports lists the bridge ports of ms, each once.
func ports(ms []Member) []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range ms {
		for _, p := range m.Ports {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// addrs lists the IPv4 (or IPv6) addresses of ms.
func addrs(ms []Member, v6 bool) []netip.Addr {
	var out []netip.Addr
	for _, m := range ms {
		for _, a := range m.Addrs {
			if a.IsValid() && a.Is6() == v6 {
				out = append(out, a)
			}
		}
	}
	return out
}

// ifnameSet is the named set of interface names name (see AnonSet.Name).
func ifnameSet(name string, names []string) *AnonSet {
	keys := make([][]byte, len(names))
	for i, n := range names {
		keys[i] = ifname(n)
	}
	return &AnonSet{KeyType: nftables.TypeIFName, Keys: keys, Name: name}
}

// abbrev lists addresses for a rule's text, shortened when long.
func abbrev(addrs []netip.Addr) string {
	if len(addrs) <= 8 {
		return list(addrs)
	}
	return fmt.Sprintf("%s, ... %d addresses", list(addrs[:3]), len(addrs))
}

// addrSet is a set of addresses of one family.
func addrSet(addrs []netip.Addr) *AnonSet {
	keys := make([][]byte, len(addrs))
	for i, a := range addrs {
		keys[i] = a.AsSlice()
	}
	kt := nftables.TypeIPAddr
	if len(addrs) > 0 && addrs[0].Is6() {
		kt = nftables.TypeIP6Addr
	}
	return &AnonSet{KeyType: kt, Keys: keys}
}

func list(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// addrLookup looks the address of size bytes at offset up in the rule's
// set: IPv4 source 12, destination 16 (4 bytes); IPv6 source 8,
// destination 24 (16 bytes).
//
//	[ payload load 4b @ network header + 12 => reg 1 ]
//	[ lookup reg 1 set __set%d ]
func addrLookup(offset, size uint32) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: size},
		&expr.Lookup{SourceRegister: 1},
	}
}

// randomBelow matches percent of packets at random.
//
//	[ numgen reg 1 = random mod 100 ]
//	[ byteorder reg 1 = hton(reg 1, 4, 4) ]
//	[ cmp lt reg 1 0x1e000000 ]
func randomBelow(percent int) []expr.Any {
	return []expr.Any{
		&expr.Numgen{Register: 1, Modulus: 100, Type: unix.NFT_NG_RANDOM},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: binaryutil.BigEndian.PutUint32(uint32(percent))},
	}
}
