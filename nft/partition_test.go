package nft

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

var (
	pa = Member{Ports: []string{"va"}, Addrs: []netip.Addr{netip.MustParseAddr("172.18.0.1"), netip.MustParseAddr("fd00:ac12::1")}}
	pb = Member{Ports: []string{"vb"}, Addrs: []netip.Addr{netip.MustParseAddr("172.18.1.2"), netip.MustParseAddr("fd00:ac12:100::2")}}
)

func table(t *testing.T, tables []*Table, family nftables.TableFamily) *Table {
	t.Helper()
	for _, tb := range tables {
		if tb.Family == family {
			return tb
		}
	}
	t.Fatalf("no table of family %s", familyName(family))
	return nil
}

// TestPartitionBridgeRule: frames between nodes of one bridge are cut by
// port, whatever their protocol.
func TestPartitionBridgeRule(t *testing.T) {
	tb := table(t, PartitionTables(NetState{Groups: []Group{{From: []Member{pa}, To: []Member{pb}}}}), nftables.TableFamilyBridge)
	r := findRule(t, tb, "forward", "iifname @from0 oifname @to0 drop")
	want := []expr.Any{
		// [ meta load iifname => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		// [ lookup reg 1 set from0 ]
		&expr.Lookup{SourceRegister: 1},
		// [ meta load oifname => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		// [ lookup reg 1 set to0 ]
		&expr.Lookup{SourceRegister: 1},
		// [ immediate reg 0 drop ]
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
	if len(r.Sets) != 2 || r.Sets[0].Name != "from0" || string(r.Sets[0].Keys[0]) != "va\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" ||
		r.Sets[1].Name != "to0" || r.Sets[1].KeyType != nftables.TypeIFName {
		t.Errorf("sets %+v", r.Sets)
	}
	// Neighbour discovery is spared, before the cuts.
	if tb.Chains[0].Rules[0].Text != "ether type arp accept" || tb.Chains[0].Rules[1].Text != "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept" {
		t.Errorf("forward chain does not start by sparing ARP and ND:\n%s", tb)
	}
}

func TestPartitionSparesND(t *testing.T) {
	want := []expr.Any{
		// [ payload load 2b @ link header + 12 => reg 1 ]
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		// [ cmp eq reg 1 0x0000dd86 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x86, 0xdd}},
		// [ meta load l4proto => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		// [ cmp eq reg 1 0x0000003a ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{58}},
		// [ payload load 1b @ transport header + 0 => reg 1 ]
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		// [ lookup reg 1 set __set%d ]
		&expr.Lookup{SourceRegister: 1},
		// [ immediate reg 0 accept ]
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
	r := sparND()
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
	if d := cmp.Diff([][]byte{{135}, {136}}, r.Sets[0].Keys); d != "" {
		t.Error(d)
	}
	arp := []expr.Any{
		// [ payload load 2b @ link header + 12 => reg 1 ]
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		// [ cmp eq reg 1 0x00000608 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x08, 0x06}},
		// [ immediate reg 0 accept ]
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
	if d := cmp.Diff(arp, sparARP().Exprs); d != "" {
		t.Error(d)
	}
}

// TestPartitionRoutedRules: packets routed between subnets are cut by
// address, in both families, in the same transaction.
func TestPartitionRoutedRules(t *testing.T) {
	tables := PartitionTables(NetState{Groups: []Group{{From: []Member{pa}, To: []Member{pb}}}})
	r := findRule(t, table(t, tables, nftables.TableFamilyIPv6), "forward", "ip6 saddr { fd00:ac12::1 } ip6 daddr { fd00:ac12:100::2 } drop")
	want := []expr.Any{
		// [ payload load 16b @ network header + 8 => reg 1 ]
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
		// [ lookup reg 1 set __set%d ]
		&expr.Lookup{SourceRegister: 1},
		// [ payload load 16b @ network header + 24 => reg 1 ]
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
		// [ lookup reg 1 set __set%d ]
		&expr.Lookup{SourceRegister: 1},
		// [ immediate reg 0 drop ]
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
	if r.Sets[0].KeyType != nftables.TypeIP6Addr || len(r.Sets[0].Keys[0]) != 16 {
		t.Errorf("IPv6 set %+v", r.Sets[0])
	}
	r = findRule(t, table(t, tables, nftables.TableFamilyIPv4), "forward", "ip saddr { 172.18.0.1 } ip daddr { 172.18.1.2 } drop")
	want = []expr.Any{
		// [ payload load 4b @ network header + 12 => reg 1 ]
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		// [ lookup reg 1 set __set%d ]
		&expr.Lookup{SourceRegister: 1},
		// [ payload load 4b @ network header + 16 => reg 1 ]
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		// [ lookup reg 1 set __set%d ]
		&expr.Lookup{SourceRegister: 1},
		// [ immediate reg 0 drop ]
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
	// An IPv4-only node has no IPv6 rule.
	v4only := Member{Ports: []string{"vc"}, Addrs: []netip.Addr{netip.MustParseAddr("172.18.0.3")}}
	tables = PartitionTables(NetState{Groups: []Group{{From: []Member{v4only}, To: []Member{pb}}}})
	if n := len(table(t, tables, nftables.TableFamilyIPv6).Chains[0].Rules); n != 0 {
		t.Errorf("%d IPv6 rules for an IPv4-only source", n)
	}
}

func TestPartitionUplinkCut(t *testing.T) {
	tables := PartitionTables(NetState{UplinkCut: pa.Addrs, Uplink: "uplink"})
	r := findRule(t, table(t, tables, nftables.TableFamilyIPv6), "forward", `oifname "uplink" ip6 saddr { fd00:ac12::1 } drop`)
	want := []expr.Any{
		// [ meta load oifname => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		// [ cmp eq reg 1 0x696c7075 0x00006b6e 0x00000000 0x00000000 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte("uplink\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")},
		// [ payload load 16b @ network header + 8 => reg 1 ]
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
		// [ lookup reg 1 set __set%d ]
		&expr.Lookup{SourceRegister: 1},
		// [ immediate reg 0 drop ]
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
	findRule(t, table(t, tables, nftables.TableFamilyIPv6), "forward", `iifname "uplink" ip6 daddr { fd00:ac12::1 } drop`)
	findRule(t, table(t, tables, nftables.TableFamilyIPv4), "forward", `oifname "uplink" ip saddr { 172.18.0.1 } drop`)
}

// TestPartitionLoss: loss covers IPv4 and IPv6 and spares neighbour
// discovery (and ARP, which is neither).
func TestPartitionLoss(t *testing.T) {
	tb := table(t, PartitionTables(NetState{Loss: []Lossy{{Port: "vc", Percent: 30}}}), nftables.TableFamilyBridge)
	r := findRule(t, tb, "prerouting", `iifname "vc" ether type { ip, ip6 } numgen random mod 100 < 30 drop`)
	want := []expr.Any{
		// [ meta load iifname => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		// [ cmp eq reg 1 0x00006376 0x00000000 0x00000000 0x00000000 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte("vc\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")},
		// [ payload load 2b @ link header + 12 => reg 1 ]
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		// [ lookup reg 1 set __set%d ]
		&expr.Lookup{SourceRegister: 1},
		// [ numgen reg 1 = random mod 100 ]
		&expr.Numgen{Register: 1, Modulus: 100, Type: 1},
		// [ byteorder reg 1 = hton(reg 1, 4, 4) ]
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		// [ cmp lt reg 1 0x1e000000 ]
		&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: []byte{0, 0, 0, 30}},
		// [ immediate reg 0 drop ]
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
	if d := cmp.Diff([][]byte{{0x08, 0x00}, {0x86, 0xdd}}, r.Sets[0].Keys); d != "" {
		t.Error(d)
	}
	for _, c := range tb.Chains[1:] {
		if c.Rules[0].Text != sparND().Text {
			t.Errorf("chain %s does not spare neighbour discovery first", c.Name)
		}
	}
	findRule(t, tb, "postrouting", `oifname "vc" ether type { ip, ip6 } numgen random mod 100 < 30 drop`)
}

// TestPartitionRuleCount: k clusters are k rules per family, whatever
// the number of nodes.
func TestPartitionRuleCount(t *testing.T) {
	var groups []Group
	var all []Member
	for c := 0; c < 3; c++ {
		for i := 0; i < 50; i++ {
			all = append(all, Member{Ports: []string{string(rune('a'+c)) + string(rune('0'+i%10)) + string(rune('a'+i/10))},
				Addrs: []netip.Addr{netip.AddrFrom4([4]byte{172, 18, byte(c), byte(i + 1)}), netip.AddrFrom16([16]byte{0xfd, 0, 0xac, 0x12, byte(c), 15: byte(i + 1)})}})
		}
	}
	for c := 0; c < 3; c++ {
		var others []Member
		others = append(others, all[:c*50]...)
		others = append(others, all[(c+1)*50:]...)
		groups = append(groups, Group{From: all[c*50 : (c+1)*50], To: others})
	}
	for _, tb := range PartitionTables(NetState{Groups: groups}) {
		want := 3
		if tb.Family == nftables.TableFamilyBridge {
			want = 3 + 2 // and the two that spare ARP and ND
		}
		if n := len(tb.Chains[0].Rules); n != want {
			t.Errorf("%s: %d rules for 3 clusters of 50, want %d", familyName(tb.Family), n, want)
		}
	}
}
