package nft

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/nsfd"
)

var host = HostConfig{
	Table:     "nsrun-1000",
	UID:       1000,
	Interface: "nsrun1000",
	HostAddr:  netip.MustParseAddr("172.18.255.1"),
	Gateway:   netip.MustParseAddr("172.18.255.2"),
	Resolver:  netip.MustParseAddrPort("127.0.0.53:53"),
}

func findRule(t *testing.T, tb *Table, chain, text string) Rule {
	t.Helper()
	for _, c := range tb.Chains {
		if c.Name != chain {
			continue
		}
		for _, r := range c.Rules {
			if r.Text == text {
				return r
			}
		}
	}
	t.Fatalf("no rule %q in chain %s:\n%s", text, chain, tb)
	return Rule{}
}

var nsrun1000 = []expr.Any{
	// [ meta load iifname => reg 1 ]
	&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
	// [ cmp eq reg 1 0x7572736e 0x3031316e 0x00003030 0x00000000 ]
	&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte("nsrun1000\x00\x00\x00\x00\x00\x00\x00")},
}

var ipv4Only = []expr.Any{
	// [ meta load nfproto => reg 1 ]
	&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
	// [ cmp eq reg 1 0x00000002 ]
	&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
}

func TestHostTableAntiSpoof(t *testing.T) {
	r := findRule(t, HostTable(host), "guard", `iifname "nsrun1000" ip saddr != 172.18.255.2 drop`)
	want := rule(nsrun1000, ipv4Only, []expr.Any{
		// [ payload load 4b @ network header + 12 => reg 1 ]
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		// [ cmp neq reg 1 0x02ff12ac ]
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{172, 18, 255, 2}},
		// [ immediate reg 0 drop ]
		&expr.Verdict{Kind: expr.VerdictDrop},
	})
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
	g := HostTable(host).Chains[0]
	if g.Name != "guard" || *g.Hook != *nftables.ChainHookPrerouting || *g.Priority != *nftables.ChainPriorityRaw {
		t.Errorf("anti-spoofing must run first, at prerouting raw: %+v", g)
	}
}

func TestHostTableOnlyTCPUDPICMP(t *testing.T) {
	r := findRule(t, HostTable(host), "guard", `iifname "nsrun1000" meta nfproto ipv4 meta l4proto != tcp meta l4proto != udp meta l4proto != icmp drop`)
	want := rule(nsrun1000, ipv4Only, []expr.Any{
		// [ meta load l4proto => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		// [ cmp neq reg 1 0x00000006 ]
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{6}},
		// [ cmp neq reg 1 0x00000011 ]
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{17}},
		// [ cmp neq reg 1 0x00000001 ]
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{1}},
		// [ immediate reg 0 drop ]
		&expr.Verdict{Kind: expr.VerdictDrop},
	})
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
}

func TestHostTableOutput(t *testing.T) {
	tb := HostTable(host)
	r := findRule(t, tb, "output", `oifname "nsrun1000" meta skuid != 0 meta skuid != 1000 ct state new drop`)
	want := []expr.Any{
		// [ meta load oifname => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		// [ cmp eq reg 1 0x7572736e 0x3031316e 0x00003030 0x00000000 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte("nsrun1000\x00\x00\x00\x00\x00\x00\x00")},
		// [ meta load skuid => reg 1 ]
		&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
		// [ cmp neq reg 1 0x00000000 ]
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
		// [ cmp neq reg 1 0x000003e8 ]
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0xe8, 0x03, 0, 0}},
		// [ ct load state => reg 1 ]
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		// [ bitwise reg 1 = ( reg 1 & 0x00000008 ) ^ 0x00000000 ]
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{8, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		// [ cmp neq reg 1 0x00000000 ]
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
		// [ immediate reg 0 drop ]
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
	for _, c := range tb.Chains {
		if c.Name == "output" && (*c.Hook != *nftables.ChainHookOutput || c.Type != nftables.ChainTypeFilter) {
			t.Errorf("output chain: %+v", c)
		}
	}
}

func TestHostTableNoIPv6(t *testing.T) {
	r := findRule(t, HostTable(host), "guard", `iifname "nsrun1000" meta nfproto ipv6 drop`)
	want := rule(nsrun1000, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		// [ cmp eq reg 1 0x0000000a ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}},
		&expr.Verdict{Kind: expr.VerdictDrop},
	})
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
	// With a static gateway IPv6 address (a later install option), router
	// advertisements and redirects are still dropped.
	c := host
	c.Gateway6, c.GatewayLinkLocal = netip.MustParseAddr("fd00:ac12:ffff::2"), netip.MustParseAddr("fe80::2")
	findRule(t, HostTable(c), "guard", `iifname "nsrun1000" icmpv6 type nd-router-advert drop`)
	findRule(t, HostTable(c), "guard", `iifname "nsrun1000" icmpv6 type nd-redirect drop`)
	findRule(t, HostTable(c), "guard", `iifname "nsrun1000" ip6 saddr != fd00:ac12:ffff::2 drop`)
}

func TestHostTableDNS(t *testing.T) {
	r := findRule(t, HostTable(host), "prerouting", `iifname "nsrun1000" ip daddr 172.18.255.1 udp dport 53 dnat ip to 127.0.0.53:53`)
	want := rule(nsrun1000, ipv4Only, []expr.Any{
		// [ payload load 4b @ network header + 16 => reg 1 ]
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		// [ cmp eq reg 1 0x01ff12ac ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{172, 18, 255, 1}},
		// [ meta load l4proto => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		// [ cmp eq reg 1 0x00000011 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{17}},
		// [ payload load 2b @ transport header + 2 => reg 1 ]
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		// [ cmp eq reg 1 0x00003500 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 53}},
		// [ immediate reg 1 0x3500007f ]
		&expr.Immediate{Register: 1, Data: []byte{127, 0, 0, 53}},
		// [ immediate reg 2 0x00003500 ]
		&expr.Immediate{Register: 2, Data: []byte{0, 53}},
		// [ nat dnat ip addr_min reg 1 proto_min reg 2 flags 0x2 ]
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	})
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
}

func TestHostTableInput(t *testing.T) {
	tb := HostTable(host)
	r := findRule(t, tb, "guard", `iifname "nsrun1000" udp sport < 1024 drop`)
	want := rule(nsrun1000, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{17}},
		// [ payload load 2b @ transport header + 0 => reg 1 ]
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		// [ cmp lt reg 1 0x00000004 ]
		&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: []byte{4, 0}},
		&expr.Verdict{Kind: expr.VerdictDrop},
	})
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
	r = findRule(t, tb, "input", `iifname "nsrun1000" ct status dnat accept`)
	want = rule(nsrun1000, []expr.Any{
		// [ ct load status => reg 1 ]
		&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
		// [ bitwise reg 1 = ( reg 1 & 0x00000020 ) ^ 0x00000000 ]
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{0x20, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		// [ cmp neq reg 1 0x00000000 ]
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
		// [ immediate reg 0 accept ]
		&expr.Verdict{Kind: expr.VerdictAccept},
	})
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
	// The accept of DNATed DNS must come before the drop of the rest,
	// and invalid packets and unrelated ICMP errors are dropped before
	// the host address (which they are sent to) is accepted.
	in := tb.Chains[2]
	var texts []string
	for _, r := range in.Rules {
		texts = append(texts, r.Text)
	}
	wantIn := []string{
		`iifname "nsrun1000" ct status dnat accept`,
		`iifname "nsrun1000" ct state invalid drop`,
		`iifname "nsrun1000" icmp type destination-unreachable ct state ! related drop`,
		`iifname "nsrun1000" icmp type source-quench ct state ! related drop`,
		`iifname "nsrun1000" icmp type time-exceeded ct state ! related drop`,
		`iifname "nsrun1000" icmp type parameter-problem ct state ! related drop`,
		`iifname "nsrun1000" ip daddr != 172.18.255.1 drop`,
	}
	if in.Name != "input" || !slices.Equal(texts, wantIn) {
		t.Errorf("input chain: %q\nwant %q", texts, wantIn)
	}
	r = findRule(t, tb, "input", `iifname "nsrun1000" icmp type destination-unreachable ct state ! related drop`)
	want = rule(nsrun1000, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{3}},
		// [ ct load state => reg 1 ]
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		// [ bitwise reg 1 = ( reg 1 & 0x00000004 ) ^ 0x00000000 ]
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{4, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		// [ cmp eq reg 1 0x00000000 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 0, 0, 0}},
		&expr.Verdict{Kind: expr.VerdictDrop},
	})
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
}

func TestHostTableWithoutResolver(t *testing.T) {
	c := host
	c.Resolver = netip.AddrPort{}
	if n := len(HostTable(c).Chains[1].Rules); n != 0 {
		t.Errorf("prerouting has %d rules without a resolver, want 0", n)
	}
}

func TestGuardTable(t *testing.T) {
	g := GuardTable(Guard{Interfaces: []string{"nsrun1000"}, DropOthers: true, DropOthers6: true})
	fwd := g.Chains[0]
	if !fwd.Drop || len(fwd.Rules) != 4 || fwd.Rules[0].Text != "iifname @gateways oifname @gateways drop" || fwd.Rules[1].Text != "iifname @gateways ct state invalid drop" {
		t.Fatalf("guard forward chain: %s", g)
	}
	want := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		// [ lookup reg 1 set gateways ]
		&expr.Lookup{SourceRegister: 1, SetName: "gateways"},
		// [ ct load state => reg 1 ]
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		// [ bitwise reg 1 = ( reg 1 & 0x00000006 ) ^ 0x00000000 ]
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{6, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
	if d := cmp.Diff(want, fwd.Rules[3].Exprs); d != "" {
		t.Error(d)
	}
	// Forwarding was on before: only gateway to gateway is dropped.
	if fwd := GuardTable(Guard{}).Chains[0]; fwd.Drop || len(fwd.Rules) != 2 {
		t.Errorf("guard without DropOthers: %s", GuardTable(Guard{}))
	}
	// One family forwarded before, the other not: the drop is for that
	// family only.
	if fwd := GuardTable(Guard{DropOthers: true}).Chains[0]; !fwd.Drop || len(fwd.Rules) != 5 || fwd.Rules[4].Text != "meta nfproto ipv6 accept" {
		t.Errorf("guard with DropOthers only: %s", GuardTable(Guard{DropOthers: true}))
	}
	if fwd := GuardTable(Guard{DropOthers6: true}).Chains[0]; fwd.Drop || len(fwd.Rules) != 5 || fwd.Rules[4].Text != "meta nfproto ipv6 drop" {
		t.Errorf("guard with DropOthers6 only: %s", GuardTable(Guard{DropOthers6: true}))
	}
}

func TestUplinkNAT(t *testing.T) {
	tb := UplinkNAT("uplink", []netip.Addr{netip.MustParseAddr("172.18.0.254")}, netip.MustParseAddrPort("172.18.255.1:53"))
	r := findRule(t, tb, "postrouting", `oifname "uplink" masquerade`)
	want := []expr.Any{
		// [ meta load oifname => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		// [ cmp eq reg 1 0x696c7075 0x00006b6e 0x00000000 0x00000000 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte("uplink\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")},
		// [ masq ]
		&expr.Masq{},
	}
	if d := cmp.Diff(want, r.Exprs); d != "" {
		t.Error(d)
	}
	findRule(t, tb, "prerouting", "ip daddr 172.18.0.254 tcp dport 53 dnat ip to 172.18.255.1:53")
	if got := len(UplinkNAT("uplink", nil, netip.AddrPort{}).Chains[0].Rules); got != 0 {
		t.Errorf("no DNS wanted, got %d prerouting rules", got)
	}
}

// TestApplyInNamespace writes each table into a throwaway network namespace
// and compares what nft prints back. It needs root and the nft CLI.
func TestApplyInNamespace(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root; this test needs it")
		}
		t.Skip("skipped: needs root to create a network namespace and list its tables")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatal("the nft CLI is needed to verify the tables: apt-get install nftables")
	}
	ns, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	list := func() string {
		out, err := exec.Command("nsenter", fmt.Sprintf("--net=/proc/%d/fd/%d", os.Getpid(), ns.Fd()), "nft", "list", "ruleset").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list ruleset: %v: %s", err, out)
		}
		return string(out)
	}
	for i := 0; i < 2; i++ { // twice: applying is idempotent
		if err := ApplyAll(ns, HostTable(host), GuardTable(Guard{Interfaces: []string{"nsrun1000", "nsrun1001"}, DropOthers: true})); err != nil {
			t.Fatal(err)
		}
	}
	if err := Apply(ns, UplinkNAT("uplink", []netip.Addr{netip.MustParseAddr("172.18.0.254")}, netip.MustParseAddrPort("172.18.255.1:53"))); err != nil {
		t.Fatal(err)
	}
	if err := Create(ns, QuietMLD()); err != nil { // a table the namespace lacks
		t.Fatal(err)
	}
	got := list()
	for _, want := range []string{
		`iifname "nsrun1000" meta nfproto ipv6 drop`,
		`iifname "nsrun1000" ip saddr != 172.18.255.2 drop`,
		`iifname "nsrun1000" icmp type redirect drop`,
		`iifname "nsrun1000" ip daddr 172.18.255.1 udp dport 53 dnat ip to 127.0.0.53:53`,
		`iifname "nsrun1000" udp sport < 1024 drop`,
		`iifname "nsrun1000" meta nfproto ipv4 meta l4proto != tcp meta l4proto != udp meta l4proto != icmp drop`,
		`oifname "nsrun1000" meta skuid != 0 meta skuid != 1000 ct state new drop`,
		`iifname "nsrun1000" ct status dnat accept`,
		`iifname "nsrun1000" ip daddr != 172.18.255.1 drop`,
		`ip saddr 172.18.255.2 oifname != "nsrun1000" masquerade`,
		`elements = { "nsrun1000",`, `"nsrun1001" }`,
		`type filter hook forward priority filter; policy drop;`,
		`iifname @gateways oifname @gateways drop`,
		`iifname @gateways ct state invalid drop`,
		`oifname @gateways ct state established,related accept`,
		`ip daddr 172.18.0.254 tcp dport 53 dnat ip to 172.18.255.1:53`,
		`oifname "uplink" masquerade`,
		"table bridge nsrun-mld",
		QuietMLD().Chains[0].Rules[0].Text,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, got)
		}
	}
	// With IPv6: what nft prints back is each rule's Text.
	h6 := host
	h6.Table, h6.Interface = "nsrun-1001", "nsrun1001"
	h6.Gateway6, h6.HostAddr6 = netip.MustParseAddr("fd6e:7372::2"), netip.MustParseAddr("fd6e:7372::1")
	h6.GatewayLinkLocal = netip.MustParseAddr("fe80::2")
	if err := ApplyAll(ns, HostTable(h6), GuardTable(Guard{Interfaces: []string{"nsrun1001"}, DropOthers6: true})); err != nil {
		t.Fatal(err)
	}
	got6 := list()
	for _, tb := range []*Table{HostTable(h6), GuardTable(Guard{Interfaces: []string{"nsrun1001"}, DropOthers6: true})} {
		for _, ch := range tb.Chains {
			for _, r := range ch.Rules {
				if !strings.Contains(got6, r.Text) {
					t.Errorf("ruleset lacks %q:\n%s", r.Text, got6)
				}
			}
		}
	}
	for _, want := range []string{`iifname "nsrun1001" ip6 saddr != fd6e:7372::2 drop`, `ip6 saddr fd6e:7372::2 oifname != "nsrun1001" masquerade`,
		`iifname "nsrun1001" ip6 saddr fe80::2 icmpv6 type nd-neighbor-solicit accept`} {
		if !strings.Contains(got6, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, got6)
		}
	}
	if err := Delete(ns, nftables.TableFamilyINet, "nsrun-1001"); err != nil {
		t.Fatal(err)
	}
	if err := ApplyAll(ns, GuardTable(Guard{Interfaces: []string{"nsrun1000", "nsrun1001"}, DropOthers: true, DropOthers6: true})); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(got, "table inet nsrun-1000"); n != 1 {
		t.Errorf("table appears %d times after two applies", n)
	}
	var g Guard
	err = nsfd.Do(ns, func() error {
		var ok bool
		g, ok, err = ReadGuard()
		if !ok && err == nil {
			err = fmt.Errorf("no guard table")
		}
		return err
	})
	if err != nil || !g.DropOthers || strings.Join(g.Interfaces, ",") != "nsrun1000,nsrun1001" {
		t.Errorf("ReadGuard = %+v, %v", g, err)
	}
	if ok, err := Exists(ns, nftables.TableFamilyINet, "nsrun-1000"); !ok || err != nil {
		t.Errorf("Exists = %v, %v", ok, err)
	}
	for i := 0; i < 2; i++ { // deleting twice is fine
		if err := Delete(ns, nftables.TableFamilyINet, "nsrun-1000"); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Contains(list(), "nsrun-1000") {
		t.Error("table still there after Delete")
	}
}

// ring is n members in classes 0..n-1, each blocked from the classes
// more than n/4 away on a ring (as majorities-ring compiles): two ranges a
// class.
func ring(n int) NetState {
	var st NetState
	for i := 0; i < n; i++ {
		st.Members = append(st.Members, Member{Ports: []string{fmt.Sprintf("v%d", i)}, Addrs: []netip.Addr{
			netip.AddrFrom4([4]byte{172, 18, byte(i / 250), byte(i%250 + 1)}), netip.AddrFrom16([16]byte{0xfd, 0, 0xac, 0x12, 14: byte(i >> 8), 15: byte(i)})}})
		st.Class = append(st.Class, uint32(i))
		r := n / 4
		lo, hi := (i+r+1)%n, (i-r-1+n)%n // blocked: lo .. hi around the ring
		if lo <= hi {
			st.Blocked = append(st.Blocked, Block{uint32(i), uint32(lo), uint32(hi)})
		} else {
			st.Blocked = append(st.Blocked, Block{uint32(i), 0, uint32(hi)}, Block{uint32(i), uint32(lo), uint32(n - 1)})
		}
	}
	return st
}

// TestWriterInNamespace: the partition tables go into the kernel through
// a Writer at any size: a small state in one transaction, a ring of 2000
// nodes (which one batch cannot hold) filled in many and switched in one,
// each generation replacing the last whole, a failed apply leaving the
// tables as they were, and healing leaving no rule that drops.
func TestWriterInNamespace(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root; this test needs it")
		}
		t.Skip("skipped: needs root to create a network namespace and list its tables")
	}
	ns, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	ruleset := func() string {
		out, err := exec.Command("nsenter", fmt.Sprintf("--net=/proc/%d/fd/%d", os.Getpid(), ns.Fd()), "nft", "list", "ruleset").CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return string(out)
	}
	a := Member{Ports: []string{"va"}, Addrs: []netip.Addr{netip.MustParseAddr("172.18.0.1"), netip.MustParseAddr("fd00:ac12::1")}}
	b := Member{Ports: []string{"vb"}, Addrs: []netip.Addr{netip.MustParseAddr("172.18.0.2"), netip.MustParseAddr("fd00:ac12::2")}}
	c := Member{Ports: []string{"vc"}, Addrs: []netip.Addr{netip.MustParseAddr("172.18.1.3"), netip.MustParseAddr("fd00:ac12:100::3")}}
	st := NetState{
		Members: []Member{a, b, c}, Class: []uint32{0, 1, 2}, Blocked: []Block{{0, 1, 2}, {1, 0, 0}},
		UplinkCut: a.Addrs, Uplink: "uplink",
		Loss: []Lossy{{Port: "vc", PPM: 3000}},
	}
	w := NewWriter(ns)
	stats, err := w.Apply(PartitionTables(st)...)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Batches != 1 {
		t.Errorf("a small state took %d transactions, want 1", stats.Batches)
	}
	out := ruleset()
	for _, want := range []string{"table bridge nsrun-net", "table ip nsrun-net", "table ip6 nsrun-net",
		"jump partition_1", "jump lossin_1", "jump lossout_1", "chain partition_1", "map classes_1", "set cut_1", "set uplinkcut_1",
		"flags interval", `iifname "vc" ether type { ip, ip6 } numgen random mod 1000000 < 3000 drop`,
		`oifname "uplink" ip saddr @uplinkcut_1 drop`, `iifname "uplink" ip6 daddr @uplinkcut_1 drop`,
		"meta mark set oifname map @classes_1 iifname . meta mark @cut_1 drop"} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, out)
		}
	}
	// 2000 nodes on a ring: O(n) elements, but more than a batch holds.
	big := ring(2000)
	stats, err = w.Apply(PartitionTables(big)...)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Batches < 3 {
		t.Errorf("2000 nodes in %d transactions: the test does not cross a batch", stats.Batches)
	}
	out = ruleset()
	if strings.Contains(out, "_1 ") || strings.Contains(out, "_1\n") || !strings.Contains(out, "jump partition_2") {
		t.Errorf("generation 1 left, or generation 2 not switched in:\n%.3000s", out)
	}
	if n := strings.Count(out, " . "); n < 3*len(big.Blocked) {
		t.Errorf("%d set elements of blocks listed, want %d a table", n, len(big.Blocked))
	}
	// A failing apply (a rule the kernel refuses, after a fill of many
	// batches) leaves generation 2 in force and nothing of its own.
	bad := PartitionTables(big)
	bad[1].Chains[1].Rules = append(bad[1].Chains[1].Rules, Rule{Text: "lookup of a set that is not there",
		Exprs: []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}, &expr.Lookup{SourceRegister: 1, SetName: "nothere"}, &expr.Verdict{Kind: expr.VerdictDrop}}})
	if _, err := w.Apply(bad...); err == nil {
		t.Fatal("a rule over a missing set was applied")
	}
	out = ruleset()
	if strings.Contains(out, "_3") || !strings.Contains(out, "jump partition_2") {
		t.Errorf("a failed apply changed the tables:\n%s", names(out))
	}
	// Objects of a generation the writer does not know of (an apply
	// whose end the kernel never acknowledged) go with the next switch.
	nftIn := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("nsenter", append([]string{fmt.Sprintf("--net=/proc/%d/fd/%d", os.Getpid(), ns.Fd()), "nft"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("nft %v: %v %s", args, err, out)
		}
	}
	nftIn("add", "set", "ip", "nsrun-net", "cut_98", "{ type ipv4_addr; }")
	nftIn("add", "chain", "bridge", "nsrun-net", "partition_99")
	// Healing is the empty state: the tables stay, with no rule that drops.
	if _, err := w.Apply(PartitionTables(NetState{})...); err != nil {
		t.Fatal(err)
	}
	out = ruleset()
	if strings.Contains(out, "drop") || strings.Contains(out, "icmpv6") || strings.Contains(out, "_2") ||
		strings.Contains(out, "_98") || strings.Contains(out, "_99") {
		t.Errorf("rules or objects left after healing:\n%s", out)
	}
	if err := w.Delete(PartitionTables(NetState{})...); err != nil {
		t.Fatal(err)
	}
	if out := ruleset(); strings.Contains(out, "nsrun-net") {
		t.Errorf("tables left after Delete:\n%s", out)
	}
}

// names are the lines of an nft listing that name tables, chains, sets
// and jumps.
func names(ruleset string) string {
	var out []string
	for _, l := range strings.Split(ruleset, "\n") {
		if f := strings.Fields(l); len(f) > 0 && (f[0] == "table" || f[0] == "chain" || f[0] == "set" || f[0] == "map" || f[0] == "jump") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
