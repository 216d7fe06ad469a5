package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/nsfd"
)

// Rule is one rule: its expressions and the same rule in nft syntax, for
// dry runs and logs.
type Rule struct {
	Text  string
	Exprs []expr.Any
	// Sets are anonymous constant sets created in the same transaction;
	// the rule's Lookup expressions without a set name refer to them, in
	// order.
	Sets []*AnonSet
}

// AnonSet is an anonymous constant set of keys, or, with a Name, a set
// named in the rule's table and created in the same transaction.
type AnonSet struct {
	KeyType nftables.SetDatatype
	Concat  bool
	Keys    [][]byte
	// Name makes the set a named one whose keys are in host byte order
	// (interface names): google/nftables marks every anonymous set
	// big-endian, and nft would print such names as "".
	Name string
}

// Chain is a base chain and its rules.
type Chain struct {
	Name     string
	Type     nftables.ChainType
	Hook     *nftables.ChainHook
	Priority *nftables.ChainPriority
	Drop     bool // policy drop; the default is accept
	Rules    []Rule
}

// Table is a whole nftables table owned by nsrun.
type Table struct {
	Family nftables.TableFamily
	Name   string
	Sets   []NamedSet
	Chains []Chain
}

// NamedSet is a named set of a table; rules refer to it by name with a
// Lookup whose SetName is Name.
type NamedSet struct {
	Name    string
	KeyType nftables.SetDatatype
	Keys    [][]byte
	// Concat says KeyType is a concatenation. Interval makes a set of
	// ranges: KeyEnds[i] is where the range from Keys[i] ends (inclusive,
	// as for concatenations; big-endian keys).
	Concat, Interval bool
	KeyEnds          [][]byte
	// DataType and Values make it a map: Values[i] is what Keys[i] maps
	// to.
	DataType nftables.SetDatatype
	Values   [][]byte
}

// set is the google/nftables form of ns in table nt.
func (ns NamedSet) set(nt *nftables.Table) *nftables.Set {
	set := &nftables.Set{Table: nt, Name: ns.Name, KeyType: ns.KeyType, KeyByteOrder: binaryutil.NativeEndian,
		Concatenation: ns.Concat, Interval: ns.Interval}
	if ns.Values != nil {
		set.IsMap, set.DataType = true, ns.DataType
	}
	if ns.Interval || ns.KeyType != nftables.TypeIFName {
		set.KeyByteOrder = binaryutil.BigEndian
	}
	return set
}

// elements are the elements of ns from index i to j.
func (ns NamedSet) elements(i, j int) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, j-i)
	for k := i; k < j; k++ {
		e := nftables.SetElement{Key: ns.Keys[k]}
		if ns.KeyEnds != nil {
			e.KeyEnd = ns.KeyEnds[k]
		}
		if ns.Values != nil {
			e.Val = ns.Values[k]
		}
		out = append(out, e)
	}
	return out
}

// elementSize is about what one element of ns takes in a netlink message.
func (ns NamedSet) elementSize() int {
	n := 40 + int(ns.KeyType.Bytes)
	if ns.KeyEnds != nil {
		n += 8 + int(ns.KeyType.Bytes)
	}
	if ns.Values != nil {
		n += 16 + int(ns.DataType.Bytes)
	}
	return n
}

// String renders the table in nft syntax (as `nft list table` would,
// closely enough for a person to review).
func (t *Table) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", familyName(t.Family), t.Name)
	for _, set := range t.Sets {
		if set.KeyType != nftables.TypeIFName {
			fmt.Fprintf(&b, "  set %s { type %s; %d elements }\n", set.Name, set.KeyType.Name, len(set.Keys))
			continue
		}
		keys := make([]string, len(set.Keys))
		for i, k := range set.Keys {
			keys[i] = fmt.Sprintf("%q", strings.TrimRight(string(k), "\x00"))
		}
		fmt.Fprintf(&b, "  set %s { type %s; elements = { %s } }\n", set.Name, set.KeyType.Name, strings.Join(keys, ", "))
	}
	for _, c := range t.Chains {
		if c.Hook == nil {
			fmt.Fprintf(&b, "  chain %s {\n", c.Name)
			for _, r := range c.Rules {
				fmt.Fprintf(&b, "    %s\n", r.Text)
			}
			b.WriteString("  }\n")
			continue
		}
		policy := "accept"
		if c.Drop {
			policy = "drop"
		}
		fmt.Fprintf(&b, "  chain %s { type %s hook %s priority %d; policy %s;\n", c.Name, c.Type, hookName(c.Hook), int32(*c.Priority), policy)
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "    %s\n", r.Text)
		}
		b.WriteString("  }\n")
	}
	b.WriteString("}")
	return b.String()
}

// Apply replaces the table named t.Name in the network namespace of nsFd
// (or the current one when nsFd is nil) with t, in one transaction: add,
// delete and add again makes it a reset whether or not the table existed.
func Apply(nsFd *os.File, t *Table) error { return ApplyAll(nsFd, t) }

// ApplyAll replaces several tables of the namespace of nsFd in one
// netlink transaction: every rule of every table switches at the same
// instant, never a mix of old and new.
func ApplyAll(nsFd *os.File, tables ...*Table) error { return write(nsFd, true, tables) }

// Create adds tables to the network namespace of nsFd, one that has none
// of them (a namespace nsrun has just made), in one netlink transaction.
// It skips Apply's reset: a table deleted in a transaction makes its
// commit wait for the kernel (6-14 ms here, against 0.3 ms without).
func Create(nsFd *os.File, tables ...*Table) error { return write(nsFd, false, tables) }

// write adds tables to the namespace of nsFd in one transaction, each
// reset first (replacing a table of its name) with reset.
func write(nsFd *os.File, reset bool, tables []*Table) error {
	c, err := conn(nsFd)
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	var names []string
	for _, t := range tables {
		if err := queue(c, t, reset); err != nil {
			return err
		}
		names = append(names, familyName(t.Family)+" "+t.Name)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("write nftables table %s: %w", strings.Join(names, ", "), err)
	}
	return nil
}

// queue adds the messages that add t to c's batch; with reset, they
// first add and delete it, which replaces a table of that name.
func queue(c *nftables.Conn, t *Table, reset bool) error {
	nt := &nftables.Table{Family: t.Family, Name: t.Name}
	if reset {
		c.AddTable(nt)
		c.DelTable(nt)
	}
	c.AddTable(nt)
	named := map[string]*nftables.Set{}
	for _, ns := range t.Sets {
		set := ns.set(nt)
		if err := c.AddSet(set, ns.elements(0, len(ns.Keys))); err != nil {
			return fmt.Errorf("nftables set %s: %w", ns.Name, err)
		}
		named[ns.Name] = set
	}
	for _, ch := range t.Chains {
		nc := c.AddChain(ch.nft(nt))
		for _, r := range ch.Rules {
			if err := addRule(c, nt, nc, r, named); err != nil {
				return err
			}
		}
	}
	return nil
}

// nft is the google/nftables form of ch in table nt (a regular chain
// when it has no hook).
func (ch Chain) nft(nt *nftables.Table) *nftables.Chain {
	if ch.Hook == nil {
		return &nftables.Chain{Name: ch.Name, Table: nt}
	}
	policy := nftables.ChainPolicyAccept
	if ch.Drop {
		policy = nftables.ChainPolicyDrop
	}
	return &nftables.Chain{Name: ch.Name, Table: nt, Type: ch.Type, Hooknum: ch.Hook, Priority: ch.Priority, Policy: &policy}
}

// addRule queues r, with its anonymous sets, at the end of chain nc;
// named are the named sets its lookups may refer to.
func addRule(c *nftables.Conn, nt *nftables.Table, nc *nftables.Chain, r Rule, named map[string]*nftables.Set) error {
	exprs := withNamedSets(r.Exprs, named)
	for _, as := range r.Sets {
		set := &nftables.Set{Table: nt, Anonymous: true, Constant: true, KeyType: as.KeyType, Concatenation: as.Concat}
		if as.Name != "" {
			set = &nftables.Set{Table: nt, Name: as.Name, KeyType: as.KeyType, KeyByteOrder: binaryutil.NativeEndian}
		}
		elems := make([]nftables.SetElement, len(as.Keys))
		for i, k := range as.Keys {
			elems[i] = nftables.SetElement{Key: k}
		}
		if err := c.AddSet(set, elems); err != nil {
			return fmt.Errorf("nftables set for %q: %w", r.Text, err)
		}
		exprs = withSet(exprs, set)
	}
	c.AddRule(&nftables.Rule{Table: nt, Chain: nc, Exprs: exprs})
	return nil
}

// withNamedSets returns exprs with each Lookup of a named set given the
// set's id in this transaction.
func withNamedSets(exprs []expr.Any, named map[string]*nftables.Set) []expr.Any {
	out := make([]expr.Any, len(exprs))
	for i, e := range exprs {
		if l, ok := e.(*expr.Lookup); ok && named[l.SetName] != nil {
			cp := *l
			cp.SetID = named[l.SetName].ID
			e = &cp
		}
		out[i] = e
	}
	return out
}

// withSet returns exprs with the first unnamed Lookup pointed at set.
func withSet(exprs []expr.Any, set *nftables.Set) []expr.Any {
	out := make([]expr.Any, len(exprs))
	done := false
	for i, e := range exprs {
		if l, ok := e.(*expr.Lookup); ok && l.SetName == "" && !done {
			cp := *l
			cp.SetName, cp.SetID = set.Name, set.ID
			e, done = &cp, true
		}
		out[i] = e
	}
	return out
}

// Delete removes the table family/name from the namespace of nsFd (nil:
// the current one). A table that does not exist is not an error.
func Delete(nsFd *os.File, family nftables.TableFamily, name string) error {
	c, err := conn(nsFd)
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	c.DelTable(&nftables.Table{Family: family, Name: name})
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete nftables table %s %s: %w", familyName(family), name, err)
	}
	return nil
}

// Exists reports whether the table family/name exists in the namespace of
// nsFd (nil: the current one).
func Exists(nsFd *os.File, family nftables.TableFamily, name string) (bool, error) {
	c, err := conn(nsFd)
	if err != nil {
		return false, err
	}
	defer c.CloseLasting()
	tables, err := c.ListTablesOfFamily(family)
	if err != nil {
		return false, fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// conn opens a lasting nftables connection whose socket lives in the
// network namespace nsFd (nil: the current one). The socket is opened by
// nsfd.Do rather than nftables.WithNetNSFd, which fails when the thread
// cannot return to its original namespace.
func conn(nsFd *os.File) (*nftables.Conn, error) {
	var c *nftables.Conn
	open := func() error {
		var err error
		c, err = nftables.New(nftables.AsLasting())
		return err
	}
	var err error
	if nsFd != nil {
		err = nsfd.Do(nsFd, open)
	} else {
		err = open()
	}
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink: %w", err)
	}
	return c, nil
}

// ForwardDrop is a base chain of someone else's table on the forward hook
// whose policy drops packets: it drops nsrun's traffic too unless it has an
// exception for nsrun's interface.
type ForwardDrop struct {
	Family, Table, Chain string
}

// FindForwardDrops lists the forward-hook chains with a drop policy in the
// current network namespace, except nsrun's own (tables named nsrun-*).
func FindForwardDrops() ([]ForwardDrop, error) {
	c, err := conn(nil)
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	var out []ForwardDrop
	for _, ch := range chains {
		if ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward || ch.Policy == nil || *ch.Policy != nftables.ChainPolicyDrop {
			continue
		}
		if strings.HasPrefix(ch.Table.Name, "nsrun-") {
			continue
		}
		out = append(out, ForwardDrop{Family: familyName(ch.Table.Family), Table: ch.Table.Name, Chain: ch.Name})
	}
	return out, nil
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyBridge:
		return "bridge"
	}
	return fmt.Sprint(f)
}

func hookName(h *nftables.ChainHook) string {
	switch *h {
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookForward:
		return "forward"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	}
	return fmt.Sprint(*h)
}

func natChain(name string, hook *nftables.ChainHook, prio *nftables.ChainPriority, rules ...Rule) Chain {
	return Chain{Name: name, Type: nftables.ChainTypeNAT, Hook: hook, Priority: prio, Rules: rules}
}

func filterChain(name string, hook *nftables.ChainHook, rules ...Rule) Chain {
	return Chain{Name: name, Type: nftables.ChainTypeFilter, Hook: hook, Priority: nftables.ChainPriorityFilter, Rules: rules}
}

// TableName is the name of nsrun's tables inside its own namespaces.
const TableName = "nsrun"

// UplinkNAT builds the table "inet nsrun" of a namespace whose traffic
// leaves through the interface uplink: the gateway (uplink to the host)
// and each run's bridge namespace (uplink to the gateway). Everything
// leaving through uplink, IPv4 and IPv6, is masqueraded; when dns is
// valid, DNS sent to any of the IPv4 addresses in local is DNATed to dns
// (the host's DNS address), which is how guests whose resolv.conf names
// their bridge reach the host's resolver.
func UplinkNAT(uplink string, local []netip.Addr, dns netip.AddrPort) *Table {
	pre := natChain("prerouting", nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
	if dns.IsValid() {
		for _, a := range local {
			for _, p := range []struct {
				name  string
				proto byte
			}{{"udp", unix.IPPROTO_UDP}, {"tcp", unix.IPPROTO_TCP}} {
				pre.Rules = append(pre.Rules, Rule{
					Text:  fmt.Sprintf("ip daddr %s %s dport 53 dnat ip to %s", a, p.name, dns),
					Exprs: rule(nfproto(unix.NFPROTO_IPV4), daddr(expr.CmpOpEq, a), l4dport(p.proto, 53), dnatTo(dns)),
				})
			}
		}
	}
	post := natChain("postrouting", nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource,
		Rule{Text: fmt.Sprintf("oifname %q masquerade", uplink), Exprs: rule(oifname(expr.CmpOpEq, uplink), masquerade())},
	)
	return &Table{Family: nftables.TableFamilyINet, Name: TableName, Chains: []Chain{pre, post}}
}

// QuietMLDTable is the name of the bridge-family table that keeps MLD
// reports off a run's bridges (QuietMLD).
const QuietMLDTable = "nsrun-mld"

// mldTypes are the ICMPv6 types of MLD reports and dones: MLDv1 report
// (131) and done (132), MLDv2 report (143).
var mldTypes = []byte{131, 132, 143}

// QuietMLD builds the table "bridge nsrun-mld" of a run's bridge
// namespace, which drops the MLD reports and dones the nodes send, on
// every bridge, before the bridge floods them:
//
//	chain prerouting { type filter hook prerouting priority 0; policy accept;
//	  icmpv6 type { mld-listener-report, mld-listener-done, mld2-listener-report } drop }
//
// A run's bridges have no multicast querier, so a bridge floods every
// multicast frame to every port; each node reports its groups when its
// interface comes up, and at 1,000 nodes those floods were a third of the
// CPU a run took to start (each report copied to every node, which
// drops it). Nothing in a run needs them: without a querier the bridge
// learns nothing from them and keeps flooding the multicast the nodes
// send one another (mDNS, VRRP, neighbour discovery), which this table
// leaves alone.
func QuietMLD() *Table {
	keys := make([][]byte, len(mldTypes))
	for i, t := range mldTypes {
		keys[i] = []byte{t}
	}
	return &Table{Family: nftables.TableFamilyBridge, Name: QuietMLDTable, Chains: []Chain{
		filterChain("prerouting", nftables.ChainHookPrerouting, Rule{
			// As nft prints it back (it leaves out the ethertype and
			// l4proto matches that icmpv6 implies).
			Text:  "icmpv6 type { mld-listener-report, mld-listener-done, mld2-listener-report } drop",
			Exprs: rule(etherType(unix.ETH_P_IPV6), l4proto(unix.IPPROTO_ICMPV6), thByteLookup(), drop()),
			Sets:  []*AnonSet{{KeyType: nftables.TypeICMP6Type, Keys: keys}},
		}),
	}}
}

// thByteLookup looks the first byte of the transport header (an ICMPv6
// type) up in the rule's set.
//
//	[ payload load 1b @ transport header + 0 => reg 1 ]
//	[ lookup reg 1 set __set%d ]
func thByteLookup() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Lookup{SourceRegister: 1},
	}
}
