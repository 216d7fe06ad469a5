package linkengine

import (
	"encoding/binary"
)

// virtio_net_hdr segmentation types (gso_type) of TCP frames.
const (
	vnetGSOTCPv4 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	vnetGSOTCPv6 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	vnetGSOECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN
)

// minMSS is the kernel's smallest TCP segment size (tcp_min_snd_mss).
const minMSS = 48

// TCP flags that only the first (CWR, with classic ECN) or the last
// (FIN, PSH) segment of a segmentation frame keeps, as the kernel's
// tcp_gso_segment does.
const (
	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpCWR = 0x80
)

// segmentTCP cuts a TCP segmentation (GSO) frame, which starts with its
// virtio_net_hdr, into the frames a device would send: each with a
// virtio_net_hdr of no segmentation and no checksum left to do, its IP
// length (and IPv4 id and header checksum), TCP sequence number, flags
// and checksum set as the kernel sets them (tcp_gso_segment). It returns
// nil for any other frame, and for one it does not know how to cut:
// VLAN tags, IPv6 extension headers, a segment size below the kernel's
// smallest or too large for IP's length field. (IPv4 options are kept
// as they are.)
func segmentTCP(frame []byte) [][]byte {
	const eth = 14
	if len(frame) < vnetHdrLen+eth {
		return nil
	}
	typ := frame[1] &^ vnetGSOECN
	mss := int(binary.LittleEndian.Uint16(frame[4:]))
	pkt := frame[vnetHdrLen:]
	var ipLen, proto int
	switch {
	case typ == vnetGSOTCPv4 && binary.BigEndian.Uint16(pkt[12:]) == 0x0800 && len(pkt) >= eth+20 && pkt[eth]>>4 == 4:
		ipLen = int(pkt[eth]&0x0f) * 4
		proto = int(pkt[eth+9])
	case typ == vnetGSOTCPv6 && binary.BigEndian.Uint16(pkt[12:]) == 0x86dd && len(pkt) >= eth+40 && pkt[eth]>>4 == 6:
		ipLen = 40
		proto = int(pkt[eth+6])
	default:
		return nil
	}
	tcp := eth + ipLen
	// The kernel's smallest MSS (tcp_min_snd_mss) bounds the number of
	// segments; a segment must fit IP's 16-bit length.
	if proto != 6 || ipLen < 20 || mss < minMSS || len(pkt) < tcp+20 {
		return nil
	}
	hdr := tcp + int(pkt[tcp+12]>>4)*4
	if hdr > len(pkt) || hdr < tcp+20 || hdr-eth+mss > 0xffff {
		return nil
	}
	payload := pkt[hdr:]
	n := max(1, (len(payload)+mss-1)/mss)
	seq := binary.BigEndian.Uint32(pkt[tcp+4:])
	flags := pkt[tcp+13]
	segs := make([][]byte, 0, n)
	for i := range n {
		chunk := payload[i*mss : min(len(payload), (i+1)*mss)]
		seg := make([]byte, vnetHdrLen+hdr+len(chunk)) // a zero virtio_net_hdr: nothing left to do
		p := seg[vnetHdrLen:]
		copy(p, pkt[:hdr])
		copy(p[hdr:], chunk)
		if typ == vnetGSOTCPv4 {
			binary.BigEndian.PutUint16(p[eth+2:], uint16(hdr-eth+len(chunk)))
			binary.BigEndian.PutUint16(p[eth+4:], binary.BigEndian.Uint16(pkt[eth+4:])+uint16(i))
			p[eth+10], p[eth+11] = 0, 0
			binary.BigEndian.PutUint16(p[eth+10:], ^fold(sum16(p[eth:tcp], 0)))
		} else {
			binary.BigEndian.PutUint16(p[eth+4:], uint16(hdr-tcp+len(chunk)))
		}
		binary.BigEndian.PutUint32(p[tcp+4:], seq+uint32(i*mss))
		f := flags
		if i != n-1 {
			f &^= tcpFIN | tcpPSH
		}
		if i != 0 && frame[1]&vnetGSOECN != 0 {
			// Classic ECN: CWR on the first segment only. (Without
			// the ECN bit, CWR is part of AccECN's counter, which
			// every segment keeps.)
			f &^= tcpCWR
		}
		p[tcp+13] = f
		p[tcp+16], p[tcp+17] = 0, 0
		binary.BigEndian.PutUint16(p[tcp+16:], ^fold(sum16(p[tcp:], pseudoSum(p[eth:tcp], typ == vnetGSOTCPv6, len(p)-tcp))))
		segs = append(segs, seg)
	}
	return segs
}

// pseudoSum is the one's complement sum of the TCP pseudo-header of the
// IP header ip: addresses, protocol and the TCP length.
func pseudoSum(ip []byte, v6 bool, tcpLen int) uint64 {
	var s uint64
	if v6 {
		s = sum16(ip[8:40], 0)
	} else {
		s = sum16(ip[12:20], 0)
	}
	return s + 6 + uint64(tcpLen)
}

// sum16 adds b to s as big-endian 16-bit words (a last odd byte as the
// high half of one), not yet folded.
func sum16(b []byte, s uint64) uint64 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	return s
}

// fold folds a one's complement sum to 16 bits.
func fold(s uint64) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
