package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// HostConfig describes nsrun-helper's host side for one user.
type HostConfig struct {
	Table     string         // e.g. nsrun-1000
	UID       uint32         // the user; only they and root open connections to the gateway
	Interface string         // host end of the gateway veth, e.g. nsrun1000
	HostAddr  netip.Addr     // host end's address, e.g. 172.18.255.1
	Gateway   netip.Addr     // the gateway's address, the only source accepted
	Resolver  netip.AddrPort // where DNS to HostAddr:53 goes; invalid: no DNS rules
	// Gateway6 is the gateway's static IPv6 address, when the helper gives
	// it one (none where the host has no IPv6: then every IPv6 packet from
	// the gateway is dropped). With it, IPv6 gets the rules of IPv4: only
	// that source is accepted (and neighbour discovery from link-local),
	// router advertisements and redirects are dropped, and so on.
	Gateway6 netip.Addr
	// HostAddr6 is the host end's static IPv6 address (with Gateway6).
	HostAddr6 netip.Addr
	// GatewayLinkLocal is the gateway end's one link-local address, which
	// the helper sets (with Gateway6): neighbour discovery is accepted from
	// it and from Gateway6 only, so that solicitations from made-up
	// link-local sources cannot fill the host's neighbour table.
	GatewayLinkLocal netip.Addr
}

// HostTable builds the host table "inet nsrun-UID" of one user. Nothing
// from the gateway is trusted (the user is root there):
//   - at prerouting, before anything else looks at it: IPv6 that nsrun did
//     not ask for (all of it, until a static gateway address exists; router
//     advertisements and redirects always), IPv4 redirects, any IPv4
//     source but the gateway's own address, and TCP and UDP from privileged source ports
//     (< 1024, which NFS or rsh-style services on the host or beyond may
//     trust) are dropped, and so is every IPv4 protocol but TCP, UDP and
//     ICMP (GRE, IPIP, SIT, SCTP, DCCP: tunnels and services the other
//     rules do not look into). (Masquerade cannot map those ports instead:
//     google/nftables v0.3.0 sends a masquerade's port range without the
//     flag that makes the kernel use it.)
//   - DNS sent to the host address is DNATed to the host's resolver;
//   - into the host itself: the DNATed DNS is accepted (route_localnet is
//     on for this interface only, so that a loopback resolver works),
//     what connection tracking calls invalid is dropped, and so is an
//     ICMP or ICMPv6 error it does not relate to a connection (made-up
//     "fragmentation needed" or "packet too big" would lower the host's
//     path MTU to any destination); every other address of the host but the user's own host address
//     (loopback, other users', the LAN's) is dropped;
//   - new connections to the gateway from the host's own processes are
//     dropped unless they are root's or the user's;
//   - what leaves for elsewhere is masqueraded.
func HostTable(c HostConfig) *Table {
	iif := iifname(expr.CmpOpEq, c.Interface)
	guard := Chain{Name: "guard", Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw}
	if c.Gateway6.IsValid() {
		for _, icmp := range []struct {
			name string
			typ  byte
		}{{"nd-router-advert", 134}, {"nd-redirect", 137}} {
			guard.Rules = append(guard.Rules, Rule{
				Text:  fmt.Sprintf("iifname %q icmpv6 type %s drop", c.Interface, icmp.name),
				Exprs: rule(iif, nfproto(unix.NFPROTO_IPV6), l4proto(unix.IPPROTO_ICMPV6), thByte(0, icmp.typ), drop()),
			})
		}
		// Neighbour discovery may come from the gateway's link-local
		// address (the kernel never forwards a link-local source); from
		// no other: each source of a solicitation becomes an entry of
		// the neighbour table, which the whole host shares.
		for _, nd := range neighbourDiscovery {
			guard.Rules = append(guard.Rules, Rule{
				Text:  fmt.Sprintf("iifname %q ip6 saddr %s icmpv6 type %s accept", c.Interface, c.GatewayLinkLocal, nd.name),
				Exprs: rule(iif, nfproto(unix.NFPROTO_IPV6), saddr6(expr.CmpOpEq, c.GatewayLinkLocal), l4proto(unix.IPPROTO_ICMPV6), thByte(0, nd.typ), accept()),
			})
		}
		guard.Rules = append(guard.Rules, Rule{
			Text:  fmt.Sprintf("iifname %q ip6 saddr != %s drop", c.Interface, c.Gateway6),
			Exprs: rule(iif, nfproto(unix.NFPROTO_IPV6), saddr6(expr.CmpOpNeq, c.Gateway6), drop()),
		}, Rule{
			Text:  fmt.Sprintf("iifname %q meta nfproto ipv6 meta l4proto != tcp meta l4proto != udp meta l4proto != ipv6-icmp drop", c.Interface),
			Exprs: rule(iif, nfproto(unix.NFPROTO_IPV6), l4protoNoneOf(unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_ICMPV6), drop()),
		})
	} else {
		guard.Rules = append(guard.Rules, Rule{
			Text:  fmt.Sprintf("iifname %q meta nfproto ipv6 drop", c.Interface),
			Exprs: rule(iif, nfproto(unix.NFPROTO_IPV6), drop()),
		})
	}
	guard.Rules = append(guard.Rules, Rule{
		Text:  fmt.Sprintf("iifname %q ip saddr != %s drop", c.Interface, c.Gateway),
		Exprs: rule(iif, nfproto(unix.NFPROTO_IPV4), saddr(expr.CmpOpNeq, c.Gateway), drop()),
	})
	guard.Rules = append(guard.Rules, Rule{
		Text:  fmt.Sprintf("iifname %q meta nfproto ipv4 meta l4proto != tcp meta l4proto != udp meta l4proto != icmp drop", c.Interface),
		Exprs: rule(iif, nfproto(unix.NFPROTO_IPV4), l4protoNoneOf(unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_ICMP), drop()),
	})
	guard.Rules = append(guard.Rules, Rule{
		Text:  fmt.Sprintf("iifname %q icmp type redirect drop", c.Interface),
		Exprs: rule(iif, nfproto(unix.NFPROTO_IPV4), l4proto(unix.IPPROTO_ICMP), thByte(0, 5), drop()),
	})
	for _, p := range protos {
		guard.Rules = append(guard.Rules, Rule{
			Text:  fmt.Sprintf("iifname %q %s sport < 1024 drop", c.Interface, p.name),
			Exprs: rule(iif, l4proto(p.proto), sportBelow(1024), drop()),
		})
	}
	pre := natChain("prerouting", nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
	if c.Resolver.IsValid() {
		for _, p := range protos {
			pre.Rules = append(pre.Rules, Rule{
				Text:  fmt.Sprintf("iifname %q ip daddr %s %s dport 53 dnat ip to %s", c.Interface, c.HostAddr, p.name, c.Resolver),
				Exprs: rule(iif, nfproto(unix.NFPROTO_IPV4), daddr(expr.CmpOpEq, c.HostAddr), l4dport(p.proto, 53), dnatTo(c.Resolver)),
			})
		}
	}
	input := filterChain("input", nftables.ChainHookInput,
		Rule{
			Text:  fmt.Sprintf("iifname %q ct status dnat accept", c.Interface),
			Exprs: rule(iif, ctDNAT(), accept()),
		},
	)
	if c.Gateway6.IsValid() {
		for _, nd := range neighbourDiscovery { // to the solicited-node multicast address
			input.Rules = append(input.Rules, Rule{
				Text:  fmt.Sprintf("iifname %q icmpv6 type %s accept", c.Interface, nd.name),
				Exprs: rule(iif, nfproto(unix.NFPROTO_IPV6), l4proto(unix.IPPROTO_ICMPV6), thByte(0, nd.typ), accept()),
			})
		}
	}
	// ICMP errors that no connection of the host's explains: a
	// "fragmentation needed" or "packet too big" made up in the gateway
	// would set the host's path MTU towards any destination (other users'
	// gateways, the LAN) as low as 552 or 1280, for as long as it is
	// renewed, and other errors could reset the host's flows.
	input.Rules = append(input.Rules, Rule{
		Text:  fmt.Sprintf("iifname %q ct state invalid drop", c.Interface),
		Exprs: rule(iif, ctInvalid(), drop()),
	})
	for _, e := range icmpErrors {
		if e.v6 && !c.Gateway6.IsValid() {
			continue // (all IPv6 is dropped at prerouting)
		}
		family, proto, word := byte(unix.NFPROTO_IPV4), byte(unix.IPPROTO_ICMP), "icmp"
		if e.v6 {
			family, proto, word = unix.NFPROTO_IPV6, unix.IPPROTO_ICMPV6, "icmpv6"
		}
		input.Rules = append(input.Rules, Rule{
			Text:  fmt.Sprintf("iifname %q %s type %s ct state ! related drop", c.Interface, word, e.name),
			Exprs: rule(iif, nfproto(family), l4proto(proto), thByte(0, e.typ), ctNotRelated(), drop()),
		})
	}
	input.Rules = append(input.Rules, Rule{
		Text:  fmt.Sprintf("iifname %q ip daddr != %s drop", c.Interface, c.HostAddr),
		Exprs: rule(iif, nfproto(unix.NFPROTO_IPV4), daddr(expr.CmpOpNeq, c.HostAddr), drop()),
	})
	if c.Gateway6.IsValid() {
		input.Rules = append(input.Rules, Rule{
			Text:  fmt.Sprintf("iifname %q ip6 daddr != %s drop", c.Interface, c.HostAddr6),
			Exprs: rule(iif, nfproto(unix.NFPROTO_IPV6), daddr6(expr.CmpOpNeq, c.HostAddr6), drop()),
		})
	}
	post := natChain("postrouting", nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource, Rule{
		Text:  fmt.Sprintf("ip saddr %s oifname != %q masquerade", c.Gateway, c.Interface),
		Exprs: rule(nfproto(unix.NFPROTO_IPV4), saddr(expr.CmpOpEq, c.Gateway), oifname(expr.CmpOpNeq, c.Interface), masquerade()),
	})
	if c.Gateway6.IsValid() {
		post.Rules = append(post.Rules, Rule{
			Text:  fmt.Sprintf("ip6 saddr %s oifname != %q masquerade", c.Gateway6, c.Interface),
			Exprs: rule(nfproto(unix.NFPROTO_IPV6), saddr6(expr.CmpOpEq, c.Gateway6), oifname(expr.CmpOpNeq, c.Interface), masquerade()),
		})
	}
	output := filterChain("output", nftables.ChainHookOutput, Rule{
		Text:  fmt.Sprintf("oifname %q meta skuid != 0 meta skuid != %d ct state new drop", c.Interface, c.UID),
		Exprs: rule(oifname(expr.CmpOpEq, c.Interface), skuidNoneOf(0, c.UID), ctNew(), drop()),
	})
	return &Table{Family: nftables.TableFamilyINet, Name: c.Table, Chains: []Chain{guard, pre, input, output, post}}
}

// icmpErrors are the ICMP and ICMPv6 error types, which the host accepts
// from the gateway only when they are about a connection it knows.
var icmpErrors = []struct {
	name string
	typ  byte
	v6   bool
}{
	{"destination-unreachable", 3, false}, {"source-quench", 4, false}, {"time-exceeded", 11, false}, {"parameter-problem", 12, false},
	{"destination-unreachable", 1, true}, {"packet-too-big", 2, true}, {"time-exceeded", 3, true}, {"parameter-problem", 4, true},
}

// neighbourDiscovery are the ICMPv6 types of neighbour discovery (the
// IPv6 ARP), which the host end must hear from the gateway.
var neighbourDiscovery = []struct {
	name string
	typ  byte
}{{"nd-neighbor-solicit", 135}, {"nd-neighbor-advert", 136}}

var protos = []struct {
	name  string
	proto byte
}{{"udp", unix.IPPROTO_UDP}, {"tcp", unix.IPPROTO_TCP}}

// GuardTableName is the one host-wide table of nsrun-helper, shared by
// every user's install.
const GuardTableName = "nsrun-guard"

// gatewaySet is the guard table's set of every user's nsrun interface.
const gatewaySet = "gateways"

// Guard is the state of the host-wide guard table.
type Guard struct {
	// Interfaces are the nsrun interfaces of every installed user.
	Interfaces []string
	// DropOthers is set when forwarding was off before the first install:
	// the host then forwards only what involves an nsrun interface, and
	// the last uninstall turns forwarding off again.
	DropOthers bool
	// DropOthers6 is the same for IPv6 forwarding. (ReadGuard reads
	// DropOthers back from the chain's policy; this one the helper knows
	// from the host state it saved.)
	DropOthers6 bool
}

// GuardTable builds the host-wide table "inet nsrun-guard". A drop in any
// base chain wins over an accept in another, so this rule set lives in one
// table for all users, not in each user's:
//   - the gateways of different users never reach each other;
//   - nothing from a gateway that connection tracking calls invalid is
//     forwarded (masquerade would not rewrite it);
//   - with DropOthers, nothing is forwarded that does not come from an nsrun
//     interface, or go back to one as part of a connection it started.
func GuardTable(g Guard) *Table {
	keys := make([][]byte, len(g.Interfaces))
	for i, name := range g.Interfaces {
		keys[i] = ifname(name)
	}
	fwd := filterChain("forward", nftables.ChainHookForward, Rule{
		Text:  "iifname @gateways oifname @gateways drop",
		Exprs: rule(metaInSet(expr.MetaKeyIIFNAME), metaInSet(expr.MetaKeyOIFNAME), drop()),
	}, Rule{
		// Masquerade sees only what connection tracking follows: a
		// packet it calls invalid (an echo reply to no request, TCP
		// with SYN and FIN) would leave with the gateway's own source.
		Text:  "iifname @gateways ct state invalid drop",
		Exprs: rule(metaInSet(expr.MetaKeyIIFNAME), ctInvalid(), drop()),
	})
	if g.DropOthers || g.DropOthers6 {
		fwd.Drop = g.DropOthers
		fwd.Rules = append(fwd.Rules,
			Rule{Text: "iifname @gateways accept", Exprs: rule(metaInSet(expr.MetaKeyIIFNAME), accept())},
			Rule{Text: "oifname @gateways ct state established,related accept", Exprs: rule(metaInSet(expr.MetaKeyOIFNAME), ctEstablished(), accept())},
		)
		switch {
		case g.DropOthers && !g.DropOthers6: // the drop policy is for IPv4 only
			fwd.Rules = append(fwd.Rules, Rule{Text: "meta nfproto ipv6 accept", Exprs: rule(nfproto(unix.NFPROTO_IPV6), accept())})
		case !g.DropOthers:
			fwd.Rules = append(fwd.Rules, Rule{Text: "meta nfproto ipv6 drop", Exprs: rule(nfproto(unix.NFPROTO_IPV6), drop())})
		}
	}
	return &Table{
		Family: nftables.TableFamilyINet, Name: GuardTableName,
		Sets:   []NamedSet{{Name: gatewaySet, KeyType: nftables.TypeIFName, Keys: keys}},
		Chains: []Chain{fwd},
	}
}

// ReadGuard reads the guard table of the current network namespace; ok is
// false when there is none.
func ReadGuard() (g Guard, ok bool, err error) {
	c, err := conn(nil)
	if err != nil {
		return g, false, err
	}
	defer c.CloseLasting()
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: GuardTableName}
	set, err := c.GetSetByName(t, gatewaySet)
	if errors.Is(err, unix.ENOENT) {
		return g, false, nil
	}
	if err != nil {
		return g, false, fmt.Errorf("read nftables set %s of table inet %s: %w", gatewaySet, GuardTableName, err)
	}
	elems, err := c.GetSetElements(set)
	if err != nil {
		return g, false, fmt.Errorf("read nftables set %s of table inet %s: %w", gatewaySet, GuardTableName, err)
	}
	for _, e := range elems {
		g.Interfaces = append(g.Interfaces, strings.TrimRight(string(e.Key), "\x00"))
	}
	slices.Sort(g.Interfaces)
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return g, false, fmt.Errorf("list nftables chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name == GuardTableName && ch.Name == "forward" && ch.Policy != nil {
			g.DropOthers = *ch.Policy == nftables.ChainPolicyDrop
		}
	}
	return g, true, nil
}
