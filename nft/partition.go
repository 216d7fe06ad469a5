package nft

import (
	"fmt"
	"net/netip"
	"slices"
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
	Port string // the node's bridge port
	// PPM is the share of packets dropped, in parts per million (1 to
	// LossScale): 0.3% is 3000.
	PPM uint32
}

// LossScale is one whole in the units of Lossy.PPM: the modulus of the
// random number each packet draws, so that every share of 0.0001% steps
// is exact.
const LossScale = 1_000_000

// Block says that the members of class From may not send to those of the
// classes Lo to Hi (inclusive).
type Block struct{ From, Lo, Hi uint32 }

// NetState is everything the partition tables enforce. The cut is given
// in classes (package partition compiles a state into them): Class[i] is
// the class of Members[i], and Blocked the class ranges that may not send
// to each other. The rules are a map from each port and address to its
// class and a set of class ranges, so their size grows with the number of
// nodes and blocks, never with the number of pairs cut.
type NetState struct {
	Members   []Member
	Class     []uint32
	Blocked   []Block
	UplinkCut []netip.Addr // may not use the uplink, either way (IPv4 and IPv6)
	Uplink    string       // the uplink's name in the bridge namespace ("" for none)
	Loss      []Lossy
}

// Names of the sets and the regular chains of the partition tables (a
// Writer gives each generation its own copies).
const (
	classSet     = "classes"
	cutSet       = "cut"
	uplinkCutSet = "uplinkcut"
	cutChain     = "partition"
	hostInChain  = "hostin"
	hostOutChain = "hostout"
	lossInChain  = "lossin"
	lossOutChain = "lossout"
)

// PartitionTables builds the three tables of a run's bridge namespace:
//   - bridge nsrun-net: frames between ports of one bridge (nodes of one
//     subnet), cut by port, so that IPv4, IPv6 link-local and multicast
//     alike are cut; neighbour discovery (ARP, and ICMPv6 neighbour
//     solicitations and advertisements) is spared so that a one-way
//     `drop` stays one-way. Traffic to the bridge itself takes the input
//     hook, so a node always reaches its bridge. Its prerouting and
//     postrouting see every frame of a port once: there, lossy ports
//     lose their share of IPv4 and IPv6 (sparing neighbour discovery);
//   - ip and ip6 nsrun-net: packets routed between subnets and to and from
//     the uplink, cut by address, plus the uplink cut.
//
// The cut is one rule a table: the destination's port (or address) is
// looked up in a map of classes into the packet's mark, and the source's
// port (or address) with that class in a set of ranges, one element per
// node and block of its class:
//
//	meta mark set oifname map @classes iifname . meta mark @cut drop
//
// However many nodes, that is n map entries and, for a partition into
// clusters or majorities-ring, at most 2n elements, never one per pair.
// (The mark does not leave the bridge namespace: the kernel clears it
// when a packet crosses into another namespace.)
//
// Each base chain only jumps to a regular chain (forward to partition,
// prerouting to lossin, postrouting to lossout), where the rules are: a
// Writer fills those, and the sets, before a small transaction switches
// every base chain to them at once.
func PartitionTables(s NetState) []*Table {
	bridge := &Table{Family: nftables.TableFamilyBridge, Name: PartitionTable}
	ip := &Table{Family: nftables.TableFamilyIPv4, Name: PartitionTable}
	ip6 := &Table{Family: nftables.TableFamilyIPv6, Name: PartitionTable}
	cut := map[*Table]*Chain{bridge: {Name: cutChain}, ip: {Name: cutChain}, ip6: {Name: cutChain}}
	if len(s.Blocked) > 0 {
		blocks := map[uint32][]Block{}
		for _, b := range s.Blocked {
			blocks[b.From] = append(blocks[b.From], b)
		}
		fams := []struct {
			t       *Table
			kt      nftables.SetDatatype
			name    string
			keys    func(m Member) [][]byte
			src     []expr.Any // loads the source into reg 1
			dst     []expr.Any // loads the destination into reg 1
			keySize uint32
		}{
			{bridge, nftables.TypeIFName, "iifname", func(m Member) [][]byte {
				var out [][]byte
				for _, p := range m.Ports {
					out = append(out, ifname(p))
				}
				return out
			}, []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}}, []expr.Any{&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}}, unix.IFNAMSIZ},
			{ip, nftables.TypeIPAddr, "ip saddr", func(m Member) [][]byte { return addrKeys(m, false) },
				[]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}},
				[]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}}, 4},
			{ip6, nftables.TypeIP6Addr, "ip6 saddr", func(m Member) [][]byte { return addrKeys(m, true) },
				[]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16}},
				[]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16}}, 16},
		}
		for _, f := range fams {
			classes := NamedSet{Name: classSet, KeyType: f.kt, DataType: nftables.TypeMark}
			set := NamedSet{Name: cutSet, KeyType: must(nftables.ConcatSetType(f.kt, nftables.TypeMark)), Concat: true, Interval: true}
			for i, m := range s.Members {
				class := binaryutil.BigEndian.PutUint32(s.Class[i])
				for _, k := range f.keys(m) {
					classes.Keys = append(classes.Keys, k)
					classes.Values = append(classes.Values, class)
					for _, b := range blocks[s.Class[i]] {
						set.Keys = append(set.Keys, append(slices.Clone(k), binaryutil.BigEndian.PutUint32(b.Lo)...))
						set.KeyEnds = append(set.KeyEnds, append(slices.Clone(k), binaryutil.BigEndian.PutUint32(b.Hi)...))
					}
				}
			}
			if len(set.Keys) == 0 {
				continue
			}
			f.t.Sets = append(f.t.Sets, classes, set)
			dst := strings.Replace(f.name, "iifname", "oifname", 1)
			dst = strings.Replace(dst, "saddr", "daddr", 1)
			if f.t == bridge {
				cut[f.t].Rules = append(cut[f.t].Rules, sparARP(), sparND())
			}
			cut[f.t].Rules = append(cut[f.t].Rules, Rule{
				Text: fmt.Sprintf("meta mark set %s map @%s %s . meta mark @%s drop", dst, classSet, f.name, cutSet),
				Exprs: rule(f.dst,
					[]expr.Any{
						&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: classSet},
						&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
					},
					f.src,
					[]expr.Any{
						// The mark lands right after the key: concatenated
						// fields are whole 32-bit registers.
						&expr.Meta{Key: expr.MetaKeyMARK, Register: unix.NFT_REG32_00 + f.keySize/4},
						&expr.Lookup{SourceRegister: 1, SetName: cutSet},
					},
					drop()),
			})
		}
	}
	hostIn := map[*Table]*Chain{ip: {Name: hostInChain}, ip6: {Name: hostInChain}}
	hostOut := map[*Table]*Chain{ip: {Name: hostOutChain}, ip6: {Name: hostOutChain}}
	for _, v6 := range []bool{false, true} {
		var addrs []netip.Addr
		for _, a := range s.UplinkCut {
			if a.Is6() == v6 {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) == 0 {
			continue
		}
		fam, src, dst, size, t := "ip", uint32(12), uint32(16), uint32(4), ip
		if v6 {
			fam, src, dst, size, t = "ip6", 8, 24, 16, ip6
		}
		t.Sets = append(t.Sets, addrSet(uplinkCutSet, addrs))
		if s.Uplink != "" {
			cut[t].Rules = append(cut[t].Rules,
				Rule{Text: fmt.Sprintf("oifname %q %s saddr @%s drop", s.Uplink, fam, uplinkCutSet),
					Exprs: rule(oifname(expr.CmpOpEq, s.Uplink), namedLookup(src, size, uplinkCutSet), drop())},
				Rule{Text: fmt.Sprintf("iifname %q %s daddr @%s drop", s.Uplink, fam, uplinkCutSet),
					Exprs: rule(iifname(expr.CmpOpEq, s.Uplink), namedLookup(dst, size, uplinkCutSet), drop())},
			)
		}
		hostIn[t].Rules, hostOut[t].Rules = hostCut(fam, src, dst, size)
	}
	// Loss: IPv4 and IPv6 packets from the node as they enter its port,
	// and to the node as they leave it, bridged or routed alike, each
	// exactly once. ARP and IPv6 neighbour discovery are spared, so that
	// loss never turns into a lost neighbour and a total blackout.
	pre, post := &Chain{Name: lossInChain}, &Chain{Name: lossOutChain}
	if len(s.Loss) > 0 {
		pre.Rules = append(pre.Rules, sparND())
		post.Rules = append(post.Rules, sparND())
	}
	for _, l := range s.Loss {
		pre.Rules = append(pre.Rules, Rule{
			Text:  fmt.Sprintf("iifname %q ether type { ip, ip6 } numgen random mod %d < %d drop", l.Port, LossScale, l.PPM),
			Sets:  []*AnonSet{ipEtherTypes()},
			Exprs: rule(iifname(expr.CmpOpEq, l.Port), etherTypeLookup(), randomBelow(l.PPM), drop()),
		})
		post.Rules = append(post.Rules, Rule{
			Text:  fmt.Sprintf("oifname %q ether type { ip, ip6 } numgen random mod %d < %d drop", l.Port, LossScale, l.PPM),
			Sets:  []*AnonSet{ipEtherTypes()},
			Exprs: rule(oifname(expr.CmpOpEq, l.Port), etherTypeLookup(), randomBelow(l.PPM), drop()),
		})
	}
	bridge.Chains = []Chain{
		jumpChain("forward", nftables.ChainHookForward, cutChain),
		jumpChain("prerouting", nftables.ChainHookPrerouting, lossInChain),
		jumpChain("postrouting", nftables.ChainHookPostrouting, lossOutChain),
		*cut[bridge], *pre, *post,
	}
	for _, t := range []*Table{ip, ip6} {
		t.Chains = []Chain{
			jumpChain("forward", nftables.ChainHookForward, cutChain), *cut[t],
			jumpChain("input", nftables.ChainHookInput, hostInChain), *hostIn[t],
			jumpChain("output", nftables.ChainHookOutput, hostOutChain), *hostOut[t],
		}
	}
	return []*Table{bridge, ip, ip6}
}

// ProxyMark is the mark (SO_MARK) of the sockets the run's port proxy
// dials to nodes from the bridge namespace (package portproxy), by which
// the uplink cut finds them: "nsrp". (The partition's own marks are set
// on forwarded packets only, which never meet the input and output
// hooks.)
const ProxyMark = 0x6e737270

// hostCut is the part of the uplink cut that forwarding never sees: the
// run's own services in the bridge namespace that lead to the host. A
// node cut from the uplink (set uplinkcut, of family fam) must not reach
// the host through them either:
//   - in (hook input): DNS sent to any of the bridge namespace's
//     addresses (the relay of an IPv6-only subnet, which asks the host's
//     resolver over the IPv4 uplink), and what comes back on a
//     connection the port proxy dialled (ct mark ProxyMark);
//   - out (hook output): the port proxy's packets to the node (meta mark
//     ProxyMark), which carry what the host sends to a published port.
//     The first rule marks the proxy's connections for the input chain.
func hostCut(fam string, src, dst, size uint32) (in, out []Rule) {
	in = []Rule{
		{Text: fmt.Sprintf("%s saddr @%s udp dport 53 drop", fam, uplinkCutSet),
			Exprs: rule(namedLookup(src, size, uplinkCutSet), l4dport(unix.IPPROTO_UDP, 53), drop())},
		{Text: fmt.Sprintf("%s saddr @%s tcp dport 53 drop", fam, uplinkCutSet),
			Exprs: rule(namedLookup(src, size, uplinkCutSet), l4dport(unix.IPPROTO_TCP, 53), drop())},
		{Text: fmt.Sprintf("ct mark 0x%08x %s saddr @%s drop", ProxyMark, fam, uplinkCutSet),
			Exprs: rule(ctMark(ProxyMark), namedLookup(src, size, uplinkCutSet), drop())},
	}
	out = []Rule{
		{Text: fmt.Sprintf("meta mark 0x%08x ct mark set meta mark", ProxyMark),
			Exprs: rule(metaMark(ProxyMark), ctMarkSetFromMeta())},
		{Text: fmt.Sprintf("meta mark 0x%08x %s daddr @%s drop", ProxyMark, fam, uplinkCutSet),
			Exprs: rule(metaMark(ProxyMark), namedLookup(dst, size, uplinkCutSet), drop())},
	}
	return in, out
}

// metaMark matches the packet's mark.
//
//	[ meta load mark => reg 1 ]
//	[ cmp eq reg 1 0x6e737270 ]
func metaMark(mark uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(mark)},
	}
}

// ctMark matches the mark of the packet's connection.
//
//	[ ct load mark => reg 1 ]
//	[ cmp eq reg 1 0x6e737270 ]
func ctMark(mark uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(mark)},
	}
}

// ctMarkSetFromMeta sets the connection's mark to the packet's.
//
//	[ meta load mark => reg 1 ]
//	[ ct set mark with reg 1 ]
func ctMarkSetFromMeta() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1, SourceRegister: true},
	}
}

// jumpChain is a base filter chain whose one rule jumps to the regular
// chain to.
//
//	[ immediate reg 0 jump -> to ]
func jumpChain(name string, hook *nftables.ChainHook, to string) Chain {
	return filterChain(name, hook, Rule{
		Text:  "jump " + to,
		Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: to}},
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err) // a constant type that google/nftables refuses: a bug here
	}
	return v
}

// addrKeys are the IPv4 (or IPv6) addresses of m, as set keys.
func addrKeys(m Member, v6 bool) [][]byte {
	var out [][]byte
	for _, a := range m.Addrs {
		if a.IsValid() && a.Is6() == v6 {
			out = append(out, a.AsSlice())
		}
	}
	return out
}

// namedLookup looks the address of size bytes at offset up in the named
// set name.
//
//	[ payload load 4b @ network header + 12 => reg 1 ]
//	[ lookup reg 1 set uplinkcut ]
func namedLookup(offset, size uint32, name string) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: size},
		&expr.Lookup{SourceRegister: 1, SetName: name},
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

// addrSet is the named set name of addresses of one family.
func addrSet(name string, addrs []netip.Addr) NamedSet {
	keys := make([][]byte, len(addrs))
	for i, a := range addrs {
		keys[i] = a.AsSlice()
	}
	kt := nftables.TypeIPAddr
	if len(addrs) > 0 && addrs[0].Is6() {
		kt = nftables.TypeIP6Addr
	}
	return NamedSet{Name: name, KeyType: kt, Keys: keys}
}

// randomBelow matches ppm packets in a million at random.
//
//	[ numgen reg 1 = random mod 1000000 ]
//	[ byteorder reg 1 = hton(reg 1, 4, 4) ]
//	[ cmp lt reg 1 0x300b0000 ]
func randomBelow(ppm uint32) []expr.Any {
	return []expr.Any{
		&expr.Numgen{Register: 1, Modulus: LossScale, Type: unix.NFT_NG_RANDOM},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: binaryutil.BigEndian.PutUint32(ppm)},
	}
}
