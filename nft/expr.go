// Package nft builds nsrun's nftables rule sets with github.com/google/nftables:
// the host table of nsrun-helper (NAT, DNS, anti-spoofing), the gateway's
// and each run's bridge NAT. A rule is data, a slice of expr values; each
// builder here notes the line `nft --debug=netlink` prints for it, and the
// tests compare built expressions without root. Applying a table is one
// netlink transaction.
//
// It is not a stable API: it is importable only because the project keeps
// it at the top of the module, and it may change in any release. Go users
// import nstest (see docs/nstest.md).
package nft

import (
	"net/netip"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ifname pads an interface name the way the kernel compares it (IFNAMSIZ).
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// iifname matches the input interface.
//
//	[ meta load iifname => reg 1 ]
//	[ cmp eq reg 1 0x... ]
func iifname(op expr.CmpOp, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: ifname(name)},
	}
}

// oifname matches the output interface.
//
//	[ meta load oifname => reg 1 ]
//	[ cmp eq reg 1 0x... ]
func oifname(op expr.CmpOp, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: ifname(name)},
	}
}

// saddr matches the IPv4 source address.
//
//	[ payload load 4b @ network header + 12 => reg 1 ]
//	[ cmp eq reg 1 0x... ]
func saddr(op expr.CmpOp, a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Cmp{Op: op, Register: 1, Data: a.AsSlice()},
	}
}

// daddr matches the IPv4 destination address.
//
//	[ payload load 4b @ network header + 16 => reg 1 ]
//	[ cmp eq reg 1 0x... ]
func daddr(op expr.CmpOp, a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: op, Register: 1, Data: a.AsSlice()},
	}
}

// l4dport matches the layer-4 protocol and destination port.
//
//	[ meta load l4proto => reg 1 ]
//	[ cmp eq reg 1 0x00000011 ]
//	[ payload load 2b @ transport header + 2 => reg 1 ]
//	[ cmp eq reg 1 0x00003500 ]
func l4dport(proto byte, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

// ipsDstNAT is the conntrack status bit IPS_DST_NAT (linux/netfilter/nf_conntrack_common.h).
const ipsDstNAT = 1 << 5

// ctDNAT matches connections whose destination was rewritten by DNAT.
//
//	[ ct load status => reg 1 ]
//	[ bitwise reg 1 = ( reg 1 & 0x00000020 ) ^ 0x00000000 ]
//	[ cmp neq reg 1 0x00000000 ]
func ctDNAT() []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// dnatTo rewrites the destination to addr:port.
//
//	[ immediate reg 1 0xADDR ]
//	[ immediate reg 2 0xPORT ]
//	[ nat dnat ip addr_min reg 1 proto_min reg 2 flags 0x2 ]
func dnatTo(a netip.AddrPort) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a.Addr().AsSlice()},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(a.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

// masquerade rewrites the source to the output interface's address.
//
//	[ masq ]
func masquerade() []expr.Any { return []expr.Any{&expr.Masq{}} }

// accept and drop are verdicts.
//
//	[ immediate reg 0 accept ]
func accept() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }

// [ immediate reg 0 drop ]
func drop() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}} }

// rule joins expression groups into one rule's expressions.
func rule(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// nfproto matches the packet's family in an inet table.
//
//	[ meta load nfproto => reg 1 ]
//	[ cmp eq reg 1 0x00000002 ]
func nfproto(family byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{family}},
	}
}

// l4proto matches the layer-4 protocol.
//
//	[ meta load l4proto => reg 1 ]
//	[ cmp eq reg 1 0x00000006 ]
func l4proto(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

// sportBelow matches a TCP or UDP source port below port (after l4proto).
//
//	[ payload load 2b @ transport header + 0 => reg 1 ]
//	[ cmp lt reg 1 0x00000004 ]
func sportBelow(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

// thByte matches one byte of the transport header (an ICMPv6 type).
//
//	[ payload load 1b @ transport header + 0 => reg 1 ]
//	[ cmp eq reg 1 0x00000086 ]
func thByte(offset uint32, v byte) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{v}},
	}
}

// saddr6 matches the IPv6 source address.
//
//	[ payload load 16b @ network header + 8 => reg 1 ]
//	[ cmp neq reg 1 0x... ]
func saddr6(op expr.CmpOp, a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
		&expr.Cmp{Op: op, Register: 1, Data: a.AsSlice()},
	}
}

// metaInSet matches the input or output interface name against the
// guard table's set of nsrun interfaces.
//
//	[ meta load iifname => reg 1 ]
//	[ lookup reg 1 set gateways ]
func metaInSet(key expr.MetaKey) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: gatewaySet},
	}
}

// ctState matches packets whose connection tracking state has one of
// bits (op CmpOpNeq), or none of them (op CmpOpEq).
//
//	[ ct load state => reg 1 ]
//	[ bitwise reg 1 = ( reg 1 & bits ) ^ 0x00000000 ]
//	[ cmp neq reg 1 0x00000000 ]
func ctState(op expr.CmpOp, bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: make([]byte, 4)},
	}
}

// ctEstablished matches packets of known connections (ct state
// established,related).
func ctEstablished() []expr.Any {
	return ctState(expr.CmpOpNeq, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
}

// ctNotRelated matches packets that connection tracking does not relate
// to a connection it knows (an ICMP error about nothing it saw).
func ctNotRelated() []expr.Any { return ctState(expr.CmpOpEq, expr.CtStateBitRELATED) }

// ctInvalid matches packets connection tracking could not follow.
func ctInvalid() []expr.Any { return ctState(expr.CmpOpNeq, expr.CtStateBitINVALID) }

// l4protoNoneOf matches a layer-4 protocol that is none of protos.
//
//	[ meta load l4proto => reg 1 ]
//	[ cmp neq reg 1 0x00000006 ]
//	[ cmp neq reg 1 0x00000011 ]
//	[ cmp neq reg 1 0x00000001 ]
func l4protoNoneOf(protos ...byte) []expr.Any {
	out := []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}}
	for _, p := range protos {
		out = append(out, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{p}})
	}
	return out
}

// skuidNoneOf matches a packet whose socket belongs to none of uids.
//
//	[ meta load skuid => reg 1 ]
//	[ cmp neq reg 1 0x00000000 ]
//	[ cmp neq reg 1 0x000003e8 ]
func skuidNoneOf(uids ...uint32) []expr.Any {
	out := []expr.Any{&expr.Meta{Key: expr.MetaKeySKUID, Register: 1}}
	for _, u := range uids {
		out = append(out, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(u)})
	}
	return out
}

// ctNew matches the first packet of a connection.
func ctNew() []expr.Any { return ctState(expr.CmpOpNeq, expr.CtStateBitNEW) }

// daddr6 matches the IPv6 destination address.
//
//	[ payload load 16b @ network header + 24 => reg 1 ]
//	[ cmp neq reg 1 0x... ]
func daddr6(op expr.CmpOp, a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
		&expr.Cmp{Op: op, Register: 1, Data: a.AsSlice()},
	}
}
