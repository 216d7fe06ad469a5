package nft

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
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

// cutState is a cut of a from b, both ways, in classes 0 and 1.
func cutState(a, b Member) NetState {
	return NetState{Members: []Member{a, b}, Class: []uint32{0, 1}, Blocked: []Block{{0, 1, 1}, {1, 0, 0}}}
}

// TestPartitionBridgeRule: frames between nodes of one bridge are cut by
// port, whatever their protocol: the output port's class goes into the
// mark, and the input port with that class is looked up in the set of
// blocked ranges.
func TestPartitionBridgeRule(t *testing.T) {
	tb := table(t, PartitionTables(cutState(pa, pb)), nftables.TableFamilyBridge)
	r := findRule(t, tb, "partition", "meta mark set oifname map @classes iifname . meta mark @cut drop")
	want := []expr.Any{
		// [ meta load oifname => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		// [ lookup reg 1 set classes dreg 1 ]
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: "classes"},
		// [ meta set mark with reg 1 ]
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		// [ meta load iifname => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		// [ meta load mark => reg 12 ]
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 12},
		// [ lookup reg 1 set cut ]
		&expr.Lookup{SourceRegister: 1, SetName: "cut"},
		// [ immediate reg 0 drop ]
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
	classes, cut := tb.Sets[0], tb.Sets[1]
	vb := "vb\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
	if classes.Name != "classes" || string(classes.Keys[1]) != vb ||
		string(classes.Values[1]) != "\x00\x00\x00\x01" || classes.KeyType != nftables.TypeIFName {
		t.Errorf("class map %+v", classes)
	}
	// "vb" . 0-0, big-endian.
	if len(cut.Keys) != 2 || string(cut.Keys[1]) != vb+"\x00\x00\x00\x00" || string(cut.KeyEnds[1]) != vb+"\x00\x00\x00\x00" || !cut.Interval || !cut.Concat {
		t.Errorf("cut %+v", cut)
	}
	// Neighbour discovery is spared, before the cuts.
	c := tb.Chains[3]
	if c.Name != "partition" || c.Rules[0].Text != "ether type arp accept" || c.Rules[1].Text != "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept" {
		t.Errorf("partition chain does not start by sparing ARP and ND:\n%s", tb)
	}
	// The base chain only jumps.
	if tb.Chains[0].Name != "forward" || len(tb.Chains[0].Rules) != 1 || tb.Chains[0].Rules[0].Text != "jump partition" {
		t.Errorf("base chain forward:\n%s", tb)
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
	tables := PartitionTables(cutState(pa, pb))
	ip6 := table(t, tables, nftables.TableFamilyIPv6)
	r := findRule(t, ip6, "partition", "meta mark set ip6 daddr map @classes ip6 saddr . meta mark @cut drop")
	want := []expr.Any{
		// [ payload load 16b @ network header + 24 => reg 1 ]
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
		// [ lookup reg 1 set classes dreg 1 ]
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: "classes"},
		// [ meta set mark with reg 1 ]
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		// [ payload load 16b @ network header + 8 => reg 1 ]
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
		// [ meta load mark => reg 12 ]
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 12},
		// [ lookup reg 1 set cut ]
		&expr.Lookup{SourceRegister: 1, SetName: "cut"},
		// [ immediate reg 0 drop ]
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
	if ip6.Sets[0].KeyType != nftables.TypeIP6Addr || len(ip6.Sets[0].Keys) != 2 || len(ip6.Sets[0].Keys[0]) != 16 {
		t.Errorf("IPv6 class map %+v", ip6.Sets[0])
	}
	ip := table(t, tables, nftables.TableFamilyIPv4)
	r = findRule(t, ip, "partition", "meta mark set ip daddr map @classes ip saddr . meta mark @cut drop")
	if p := r.Exprs[3].(*expr.Payload); p.Offset != 12 || p.Len != 4 {
		t.Errorf("IPv4 source %+v", p)
	}
	if m := r.Exprs[4].(*expr.Meta); m.Register != 9 {
		t.Errorf("the mark after an IPv4 address goes to reg 9, not %d", m.Register)
	}
	if ip.Sets[0].KeyType != nftables.TypeIPAddr || string(ip.Sets[0].Keys[1]) != string([]byte{172, 18, 1, 2}) {
		t.Errorf("IPv4 class map %+v", ip.Sets[0])
	}
	// IPv4-only nodes have no IPv6 rule.
	v4a := Member{Ports: []string{"vc"}, Addrs: []netip.Addr{netip.MustParseAddr("172.18.0.3")}}
	v4b := Member{Ports: []string{"vd"}, Addrs: []netip.Addr{netip.MustParseAddr("172.18.0.4")}}
	tables = PartitionTables(cutState(v4a, v4b))
	if n := len(table(t, tables, nftables.TableFamilyIPv6).Chains[1].Rules); n != 0 {
		t.Errorf("%d IPv6 rules for IPv4-only nodes", n)
	}
}

func TestPartitionUplinkCut(t *testing.T) {
	tables := PartitionTables(NetState{UplinkCut: pa.Addrs, Uplink: "uplink"})
	r := findRule(t, table(t, tables, nftables.TableFamilyIPv6), "partition", `oifname "uplink" ip6 saddr @uplinkcut drop`)
	want := []expr.Any{
		// [ meta load oifname => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		// [ cmp eq reg 1 0x696c7075 0x00006b6e 0x00000000 0x00000000 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte("uplink\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")},
		// [ payload load 16b @ network header + 8 => reg 1 ]
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
		// [ lookup reg 1 set uplinkcut ]
		&expr.Lookup{SourceRegister: 1, SetName: "uplinkcut"},
		// [ immediate reg 0 drop ]
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
	findRule(t, table(t, tables, nftables.TableFamilyIPv6), "partition", `iifname "uplink" ip6 daddr @uplinkcut drop`)
	findRule(t, table(t, tables, nftables.TableFamilyIPv4), "partition", `oifname "uplink" ip saddr @uplinkcut drop`)
}

// TestPartitionUplinkCutLocal: the uplink cut also closes the run's own
// ways to the host, which forwarding never sees: DNS to the bridge
// namespace (the relay) and the port proxy's marked connections, with
// or without an uplink (published ports work without the helper).
func TestPartitionUplinkCutLocal(t *testing.T) {
	for _, uplink := range []string{"uplink", ""} {
		tables := PartitionTables(NetState{UplinkCut: pa.Addrs, Uplink: uplink})
		v4, v6 := table(t, tables, nftables.TableFamilyIPv4), table(t, tables, nftables.TableFamilyIPv6)
		findRule(t, v4, "hostin", `ip saddr @uplinkcut udp dport 53 drop`)
		findRule(t, v4, "hostin", `ip saddr @uplinkcut tcp dport 53 drop`)
		findRule(t, v6, "hostin", `ip6 saddr @uplinkcut tcp dport 53 drop`)
		r := findRule(t, v6, "hostin", `ct mark 0x6e737270 ip6 saddr @uplinkcut drop`)
		want := []expr.Any{
			// [ ct load mark => reg 1 ]
			&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
			// [ cmp eq reg 1 0x6e737270 ]
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(ProxyMark)},
			// [ payload load 16b @ network header + 8 => reg 1 ]
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
			// [ lookup reg 1 set uplinkcut ]
			&expr.Lookup{SourceRegister: 1, SetName: "uplinkcut"},
			// [ immediate reg 0 drop ]
			&expr.Verdict{Kind: expr.VerdictDrop},
		}
		if d := cmp.Diff(want, r.Exprs); d != "" {
			t.Error(d)
		}
		r = findRule(t, v4, "hostout", `meta mark 0x6e737270 ct mark set meta mark`)
		want = []expr.Any{
			// [ meta load mark => reg 1 ]
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			// [ cmp eq reg 1 0x6e737270 ]
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(ProxyMark)},
			// [ meta load mark => reg 1 ]
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			// [ ct set mark with reg 1 ]
			&expr.Ct{Key: expr.CtKeyMARK, Register: 1, SourceRegister: true},
		}
		if d := cmp.Diff(want, r.Exprs); d != "" {
			t.Error(d)
		}
		findRule(t, v4, "hostout", `meta mark 0x6e737270 ip daddr @uplinkcut drop`)
	}
	// Without a cut, the chains are empty.
	for _, tb := range PartitionTables(NetState{Uplink: "uplink"}) {
		for _, c := range tb.Chains {
			if (c.Name == hostInChain || c.Name == hostOutChain) && len(c.Rules) > 0 {
				t.Errorf("%s %s: %d rules without a cut", familyName(tb.Family), c.Name, len(c.Rules))
			}
		}
	}
}

// TestPartitionLoss: loss covers IPv4 and IPv6 and spares neighbour
// discovery (and ARP, which is neither).
func TestPartitionLoss(t *testing.T) {
	tb := table(t, PartitionTables(NetState{Loss: []Lossy{{Port: "vc", PPM: 3000}}}), nftables.TableFamilyBridge)
	r := findRule(t, tb, "lossin", `iifname "vc" ether type { ip, ip6 } numgen random mod 1000000 < 3000 drop`)
	want := []expr.Any{
		// [ meta load iifname => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		// [ cmp eq reg 1 0x00006376 0x00000000 0x00000000 0x00000000 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte("vc\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")},
		// [ payload load 2b @ link header + 12 => reg 1 ]
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		// [ lookup reg 1 set __set%d ]
		&expr.Lookup{SourceRegister: 1},
		// [ numgen reg 1 = random mod 1000000 ]
		&expr.Numgen{Register: 1, Modulus: 1000000, Type: 1},
		// [ byteorder reg 1 = hton(reg 1, 4, 4) ]
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		// [ cmp lt reg 1 0xb80b0000 ]: 0.3% exactly
		&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: []byte{0, 0, 0x0b, 0xb8}},
		// [ immediate reg 0 drop ]
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
	if d := cmp.Diff([][]byte{{0x08, 0x00}, {0x86, 0xdd}}, r.Sets[0].Keys); d != "" {
		t.Error(d)
	}
	for _, c := range tb.Chains[4:] {
		if c.Rules[0].Text != sparND().Text {
			t.Errorf("chain %s does not spare neighbour discovery first", c.Name)
		}
	}
	findRule(t, tb, "lossout", `oifname "vc" ether type { ip, ip6 } numgen random mod 1000000 < 3000 drop`)
}

// TestPartitionRuleCount: the cut is one rule per table, a class per
// node and one set element per node and block of its class, however many
// pairs it cuts.
func TestPartitionRuleCount(t *testing.T) {
	var st NetState
	for c := 0; c < 3; c++ {
		for i := 0; i < 50; i++ {
			st.Members = append(st.Members, Member{Ports: []string{fmt.Sprintf("v%d.%d", c, i)},
				Addrs: []netip.Addr{netip.AddrFrom4([4]byte{172, 18, byte(c), byte(i + 1)}), netip.AddrFrom16([16]byte{0xfd, 0, 0xac, 0x12, byte(c), 15: byte(i + 1)})}})
			st.Class = append(st.Class, uint32(c))
		}
	}
	// Three clusters of 50: class 1 blocked in two ranges, the others in one.
	st.Blocked = []Block{{0, 1, 2}, {1, 0, 0}, {1, 2, 2}, {2, 0, 1}}
	for _, tb := range PartitionTables(st) {
		rules := 0
		for _, c := range tb.Chains {
			if c.Name == "partition" {
				rules = len(c.Rules)
			}
		}
		want := 1
		if tb.Family == nftables.TableFamilyBridge {
			want = 1 + 2 // and the two that spare ARP and ND
		}
		if rules != want {
			t.Errorf("%s: %d rules for 3 clusters of 50, want %d", familyName(tb.Family), rules, want)
		}
		if n := len(tb.Sets[0].Keys); n != 150 {
			t.Errorf("%s: %d classes mapped, want 150", familyName(tb.Family), n)
		}
		if n := len(tb.Sets[1].Keys); n != 200 {
			t.Errorf("%s: %d set elements, want 200", familyName(tb.Family), n)
		}
	}
}
