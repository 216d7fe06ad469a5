package nft

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// PartitionTable is the name of the partition tables (one of family
// bridge, one of family ip) in a run's bridge namespace.
const PartitionTable = "nsrun-net"

// Pair is a one-way cut: packets from From to To are dropped.
type Pair struct{ From, To netip.Addr }

// Lossy drops a share of a node's packets, both ways.
type Lossy struct {
	Port    string // the node's bridge port
	Percent int    // 1..100
}

// Group is a set of sources cut from the same destinations: one rule
// per table.
type Group struct{ From, To []netip.Addr }

// NetState is everything the partition tables enforce.
type NetState struct {
	Groups    []Group
	UplinkCut []netip.Addr // may not use the uplink, either way
	Uplink    string       // the uplink's name in the bridge namespace ("" for none)
	Loss      []Lossy
}

// PartitionTables builds the two tables of a run's bridge namespace:
//   - bridge nsrun-net, chain forward: frames between ports of one bridge
//     (nodes of one subnet), checked against the blocked pairs (grouped,
//     see groupBlocked), and lossy ports;
//   - ip nsrun-net, chain forward: routed packets (between subnets, and to
//     and from the uplink), checked the same way, plus the uplink cut;
//   - bridge nsrun-net, chains prerouting and postrouting: the loss of
//     lossy ports, which sees every frame of a port once.
//
// However many nodes, a partition into k clusters is k rules per table.
// Apply both with ApplyAll, so every node switches at the same instant.
func PartitionTables(s NetState) []*Table {
	br := filterChain("forward", nftables.ChainHookForward)
	ip := filterChain("forward", nftables.ChainHookForward)
	for _, g := range s.Groups {
		from, to := addrSet(g.From), addrSet(g.To)
		text := fmt.Sprintf("ip saddr { %s } ip daddr { %s } drop", abbrev(g.From), abbrev(g.To))
		br.Rules = append(br.Rules, Rule{Text: "ether type ip " + text, Sets: []*AnonSet{from, to},
			Exprs: rule(etherTypeIP(), addrLookup(12), addrLookup(16), drop())})
		ip.Rules = append(ip.Rules, Rule{Text: text, Sets: []*AnonSet{from, to},
			Exprs: rule(addrLookup(12), addrLookup(16), drop())})
	}
	if len(s.UplinkCut) > 0 && s.Uplink != "" {
		set := addrSet(s.UplinkCut)
		names := list(s.UplinkCut)
		ip.Rules = append(ip.Rules,
			Rule{Text: fmt.Sprintf("oifname %q ip saddr { %s } drop", s.Uplink, names), Sets: []*AnonSet{set},
				Exprs: rule(oifname(expr.CmpOpEq, s.Uplink), addrLookup(12), drop())},
			Rule{Text: fmt.Sprintf("iifname %q ip daddr { %s } drop", s.Uplink, names), Sets: []*AnonSet{set},
				Exprs: rule(iifname(expr.CmpOpEq, s.Uplink), addrLookup(16), drop())},
		)
	}
	// Loss: IPv4 packets from the node as they enter its port, and to the
	// node as they leave it, bridged or routed alike, each exactly once.
	// ARP is spared, so that loss never turns into a lost neighbour and a
	// total blackout.
	pre := Chain{Name: "prerouting", Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityFilter}
	post := Chain{Name: "postrouting", Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityFilter}
	for _, l := range s.Loss {
		pre.Rules = append(pre.Rules, Rule{
			Text:  fmt.Sprintf("iifname %q ether type ip numgen random mod 100 < %d drop", l.Port, l.Percent),
			Exprs: rule(iifname(expr.CmpOpEq, l.Port), etherTypeIP(), randomBelow(l.Percent), drop()),
		})
		post.Rules = append(post.Rules, Rule{
			Text:  fmt.Sprintf("oifname %q ether type ip numgen random mod 100 < %d drop", l.Port, l.Percent),
			Exprs: rule(oifname(expr.CmpOpEq, l.Port), etherTypeIP(), randomBelow(l.Percent), drop()),
		})
	}
	bridgeChains := []Chain{br}
	if len(s.Loss) > 0 {
		bridgeChains = append(bridgeChains, pre, post)
	}
	return []*Table{
		{Family: nftables.TableFamilyBridge, Name: PartitionTable, Chains: bridgeChains},
		{Family: nftables.TableFamilyIPv4, Name: PartitionTable, Chains: []Chain{ip}},
	}
}

// etherTypeIP matches IPv4 frames (bridge family).
//
//	[ payload load 2b @ link header + 12 => reg 1 ]
//	[ cmp eq reg 1 0x00000008 ]
func etherTypeIP() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(unix.ETH_P_IP)},
	}
}

// GroupPairs turns blocked pairs into as few groups as exactly express
// them: sources whose blocked destinations are the same share a group. A
// partition into k clusters gives k groups with O(nodes) elements, where a
// set of pairs would need O(nodes²) elements (too many for one netlink
// transaction at 250 nodes). Callers that know the clusters build groups
// directly (partition.State.Groups), without listing the pairs.
func GroupPairs(pairs []Pair) []Group {
	rows := map[netip.Addr][]netip.Addr{}
	for _, p := range pairs {
		rows[p.From] = append(rows[p.From], p.To)
	}
	bySig := map[string]*Group{}
	var order []string
	for from, to := range rows {
		sort.Slice(to, func(i, j int) bool { return to[i].Less(to[j]) })
		sig := list(to)
		g, ok := bySig[sig]
		if !ok {
			g = &Group{To: to}
			bySig[sig] = g
			order = append(order, sig)
		}
		g.From = append(g.From, from)
	}
	sort.Strings(order)
	out := make([]Group, 0, len(order))
	for _, sig := range order {
		g := bySig[sig]
		sort.Slice(g.From, func(i, j int) bool { return g.From[i].Less(g.From[j]) })
		out = append(out, *g)
	}
	return out
}

// abbrev lists addresses for a rule's text, shortened when long.
func abbrev(addrs []netip.Addr) string {
	if len(addrs) <= 8 {
		return list(addrs)
	}
	return fmt.Sprintf("%s, ... %d addresses", list(addrs[:3]), len(addrs))
}

func addrSet(addrs []netip.Addr) *AnonSet {
	keys := make([][]byte, len(addrs))
	for i, a := range addrs {
		keys[i] = a.AsSlice()
	}
	return &AnonSet{KeyType: nftables.TypeIPAddr, Keys: keys}
}

func list(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// addrLookup looks the address at offset (12 source, 16 destination) up
// in the rule's set.
//
//	[ payload load 4b @ network header + 12 => reg 1 ]
//	[ lookup reg 1 set __set%d ]
func addrLookup(offset uint32) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
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
