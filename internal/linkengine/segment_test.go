package linkengine

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// gsoFrame builds a TCP segmentation frame as a packet socket with
// PACKET_VNET_HDR reads it: virtio_net_hdr (TCP GSO, mss, checksum left
// to the device), Ethernet, IPv4 or IPv6, TCP with 12 bytes of options,
// payload.
func gsoFrame(v6 bool, mss int, payload []byte, flags byte) []byte {
	const eth = 14
	ipLen := 20
	if v6 {
		ipLen = 40
	}
	tcp := eth + ipLen
	hdr := tcp + 32
	f := make([]byte, vnetHdrLen+hdr+len(payload))
	f[0] = vnetFlagNeedsCsum
	f[1] = vnetGSOTCPv4
	if v6 {
		f[1] = vnetGSOTCPv6
	}
	binary.LittleEndian.PutUint16(f[2:], uint16(hdr))
	binary.LittleEndian.PutUint16(f[4:], uint16(mss))
	binary.LittleEndian.PutUint16(f[6:], uint16(tcp))
	binary.LittleEndian.PutUint16(f[8:], 16)
	p := f[vnetHdrLen:]
	copy(p[0:], []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2})
	if v6 {
		binary.BigEndian.PutUint16(p[12:], 0x86dd)
		p[eth] = 0x60
		binary.BigEndian.PutUint16(p[eth+4:], uint16(32+len(payload)))
		p[eth+6], p[eth+7] = 6, 64
		p[eth+8+15], p[eth+24+15] = 1, 2 // ::1 -> ::2 under fd00::/8
		p[eth+8], p[eth+24] = 0xfd, 0xfd
	} else {
		binary.BigEndian.PutUint16(p[12:], 0x0800)
		p[eth] = 0x45
		binary.BigEndian.PutUint16(p[eth+2:], uint16(20+32+len(payload)))
		binary.BigEndian.PutUint16(p[eth+4:], 0x1234)
		p[eth+8], p[eth+9] = 64, 6
		copy(p[eth+12:], []byte{172, 18, 0, 20, 172, 18, 0, 10})
	}
	binary.BigEndian.PutUint16(p[tcp:], 40000)
	binary.BigEndian.PutUint16(p[tcp+2:], 9300)
	binary.BigEndian.PutUint32(p[tcp+4:], 0xfffff000) // wraps within the frame
	binary.BigEndian.PutUint32(p[tcp+8:], 77)
	p[tcp+12] = 8 << 4
	p[tcp+13] = flags
	copy(p[hdr:], payload)
	return f
}

// TestSegmentTCP cuts IPv4 and IPv6 segmentation frames as a device
// would: every segment's checksums verify, the payload is the frame's in
// order, sequence numbers step by the segment size (across the wrap),
// only the last keeps FIN and PSH and only the first CWR, IPv4 ids count
// up; other frames are not cut.
func TestSegmentTCP(t *testing.T) {
	payload := make([]byte, 3000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	for _, v6 := range []bool{false, true} {
		const mss = 1000
		f := gsoFrame(v6, mss, payload, tcpFIN|tcpPSH|tcpCWR|0x10)
		f[1] |= vnetGSOECN // classic ECN: CWR on the first segment only
		segs := segmentTCP(f)
		if len(segs) != 3 {
			t.Fatalf("v6=%v: %d segments, want 3", v6, len(segs))
		}
		const eth = 14
		ipLen := 20
		if v6 {
			ipLen = 40
		}
		tcp := eth + ipLen
		var got []byte
		for i, seg := range segs {
			if !bytes.Equal(seg[:vnetHdrLen], make([]byte, vnetHdrLen)) {
				t.Errorf("v6=%v segment %d: virtio_net_hdr % x, want zero", v6, i, seg[:vnetHdrLen])
			}
			p := seg[vnetHdrLen:]
			if v6 {
				if n := int(binary.BigEndian.Uint16(p[eth+4:])); n != len(p)-tcp {
					t.Errorf("segment %d: IPv6 payload length %d, want %d", i, n, len(p)-tcp)
				}
			} else {
				if n := int(binary.BigEndian.Uint16(p[eth+2:])); n != len(p)-eth {
					t.Errorf("segment %d: IPv4 total length %d, want %d", i, n, len(p)-eth)
				}
				if id := binary.BigEndian.Uint16(p[eth+4:]); id != 0x1234+uint16(i) {
					t.Errorf("segment %d: IPv4 id %#x", i, id)
				}
				if fold(sum16(p[eth:tcp], 0)) != 0xffff {
					t.Errorf("segment %d: IPv4 header checksum does not verify", i)
				}
			}
			if !tcpChecksumOK(p[eth:], v6) {
				t.Errorf("v6=%v segment %d: TCP checksum does not verify", v6, i)
			}
			if seq := binary.BigEndian.Uint32(p[tcp+4:]); seq != 0xfffff000+uint32(i*mss) {
				t.Errorf("segment %d: seq %#x", i, seq)
			}
			fl := p[tcp+13]
			if (fl&(tcpFIN|tcpPSH) != 0) != (i == len(segs)-1) || (fl&tcpCWR != 0) != (i == 0) || fl&0x10 == 0 {
				t.Errorf("segment %d: flags %#x", i, fl)
			}
			got = append(got, p[tcp+32:]...)
		}
		if !bytes.Equal(got, payload) {
			t.Errorf("v6=%v: the segments' payload differs from the frame's", v6)
		}
		// One bit flipped in a segment fails its checksum.
		seg := segs[1]
		seg[len(seg)-1] ^= 1
		p := seg[vnetHdrLen:]
		if tcpChecksumOK(p[eth:], v6) {
			t.Errorf("v6=%v: a flipped bit left the TCP checksum valid", v6)
		}
	}
	// Without the ECN bit (AccECN), every segment keeps CWR.
	for i, seg := range segmentTCP(gsoFrame(false, 1000, payload, tcpCWR|0x10)) {
		if seg[vnetHdrLen+14+20+13]&tcpCWR == 0 {
			t.Errorf("AccECN: segment %d lost CWR", i)
		}
	}
	for _, c := range []struct {
		what string
		edit func(f []byte)
	}{
		{"a segment size below the kernel's smallest", func(f []byte) { binary.LittleEndian.PutUint16(f[4:], 47) }},
		{"a segment too long for IP's length", func(f []byte) { binary.LittleEndian.PutUint16(f[4:], 65500) }},
		{"an IPv4 header length below 20", func(f []byte) { f[vnetHdrLen+14] = 0x40 }},
		{"an IP version other than 4", func(f []byte) { f[vnetHdrLen+14] = 0x65 }},
		{"a VLAN tag", func(f []byte) { binary.BigEndian.PutUint16(f[vnetHdrLen+12:], 0x8100) }},
	} {
		f := gsoFrame(false, 1000, payload, 0)
		c.edit(f)
		if segmentTCP(f) != nil {
			t.Errorf("%s: the frame was cut", c.what)
		}
	}
	plain := gsoFrame(false, 1000, payload[:100], 0)
	plain[1] = vnetGSONone
	if segmentTCP(plain) != nil {
		t.Error("a frame without segmentation was cut")
	}
	udp := gsoFrame(false, 1000, payload, 0)
	udp[vnetHdrLen+14+9] = 17
	if segmentTCP(udp) != nil {
		t.Error("a UDP frame was cut as TCP")
	}
}

// tcpChecksumOK verifies the TCP checksum of the IP packet ip on its
// own terms (RFC 1071 over a pseudo-header built byte by byte), not with
// the code under test.
func tcpChecksumOK(ip []byte, v6 bool) bool {
	var pseudo, seg []byte
	if v6 {
		seg = ip[40:]
		pseudo = append(append(pseudo, ip[8:40]...), byte(len(seg)>>24), byte(len(seg)>>16), byte(len(seg)>>8), byte(len(seg)), 0, 0, 0, 6)
	} else {
		seg = ip[int(ip[0]&0x0f)*4 : int(binary.BigEndian.Uint16(ip[2:]))]
		pseudo = append(append(pseudo, ip[12:20]...), 0, 6, byte(len(seg)>>8), byte(len(seg)))
	}
	b := append(pseudo, seg...)
	if len(b)%2 == 1 {
		b = append(b, 0)
	}
	var sum uint32
	for i := 0; i < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

// TestPutCorruptDuplicate: a frame both duplicated and corrupted goes out
// once corrupted and once intact, as netem duplicates before it
// corrupts; a cut segmentation frame's duplicate is the frame uncut.
func TestPutCorruptDuplicate(t *testing.T) {
	payload := make([]byte, 3000)
	for _, gso := range []bool{false, true} {
		l := &line{wake: make(chan struct{}, 1), last: map[uint64]time.Time{}, rng: rand.New(rand.NewPCG(1, 2))}
		f := gsoFrame(false, 1000, payload, 0x10)
		if !gso {
			f = gsoFrame(false, 1000, payload[:500], 0x10)
			f[1] = vnetGSONone
		}
		orig := slices.Clone(f)
		l.put(time.Now(), 1, f, Faults{Delay: time.Second, Duplicate: 1, Corrupt: 1})
		var intact, bad int
		for _, fr := range l.q {
			switch {
			case bytes.Equal(fr.data, orig):
				intact++
			default:
				bad++
			}
		}
		want := 1
		if gso {
			want = 3 // the three segments, one of them corrupted
		}
		if intact != 1 || bad != want || l.corrupted.Load() != 1 || l.duplicated.Load() != 1 {
			t.Errorf("gso=%v: %d intact, %d changed frames queued (want 1 and %d), corrupted %d, duplicated %d", gso, intact, bad, want, l.corrupted.Load(), l.duplicated.Load())
		}
		total := 0
		for _, fr := range l.q {
			total += len(fr.data)
		}
		if l.bytes != total {
			t.Errorf("gso=%v: %d bytes counted, %d queued", gso, l.bytes, total)
		}
	}
}
