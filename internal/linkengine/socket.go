package linkengine

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/nsfd"
)

// vnetHdrLen is the size of struct virtio_net_hdr, which prefixes every
// frame on a socket with PACKET_VNET_HDR: it carries the segmentation
// (GSO) and checksum offload state, so that a 64 KiB TCP segment crosses
// the engine as one frame and a checksum left to the device stays so.
const vnetHdrLen = 10

// virtio_net_hdr fields.
const (
	vnetFlagNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetGSONone       = 0 // VIRTIO_NET_HDR_GSO_NONE
)

// maxFrame bounds one frame read from a link (a GSO frame is up to 64 KiB
// of payload plus its headers).
const maxFrame = 1 << 17

// packetSocket is a raw packet socket bound to one interface, non-blocking
// in Go's poller, that sees the frames the interface receives (not those
// it sends) with their virtio_net_hdr.
type packetSocket struct {
	f    *os.File
	name string
}

// openPacket opens a packet socket on interface ifname of the network
// namespace ns.
func openPacket(ns *os.File, ifname string) (*packetSocket, error) {
	var fd int
	err := nsfd.Do(ns, func() error {
		var err error
		// Protocol 0: no frame reaches the socket until bind names the
		// link and the protocol (a socket opened for every protocol is
		// hooked on every link at once, and moving that hook in bind
		// waits for an RCU grace period).
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		ifi, err := ifIndex(ifname)
		if err != nil {
			unix.Close(fd)
			return err
		}
		for _, o := range []struct {
			name string
			opt  int
		}{{"PACKET_VNET_HDR", unix.PACKET_VNET_HDR}, {"PACKET_IGNORE_OUTGOING", unix.PACKET_IGNORE_OUTGOING}} {
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, o.opt, 1); err != nil {
				unix.Close(fd)
				return fmt.Errorf("packet socket on %s: %s: %w", ifname, o.name, err)
			}
		}
		// Each frame's arrival time, from the kernel: a reader that the
		// scheduler runs late does not make the frame's delay longer.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			unix.Close(fd)
			return fmt.Errorf("packet socket on %s: SO_TIMESTAMPNS: %w", ifname, err)
		}
		// As large buffers as the unprivileged limits allow.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<20)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("packet socket: bind to %s: %w", ifname, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &packetSocket{f: os.NewFile(uintptr(fd), "packet:"+ifname), name: ifname}, nil
}

// ifIndex is the index of interface name in the current thread's network
// namespace.
func ifIndex(name string) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("index of %s: %w", name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, fmt.Errorf("index of %s: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("index of %s: %w", name, err)
	}
	return int(ifr.Uint32()), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// read reads one frame (virtio_net_hdr first) into buf, waiting in Go's
// poller; it returns the frame's length and when it arrived (the
// kernel's timestamp).
func (s *packetSocket) read(buf, oob []byte) (int, time.Time, error) {
	rc, err := s.f.SyscallConn()
	if err != nil {
		return 0, time.Time{}, err
	}
	var n, oobn int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_TRUNC)
		return rerr != unix.EAGAIN
	})
	now := time.Now()
	if err != nil {
		return 0, now, err
	}
	if rerr != nil {
		return 0, now, fmt.Errorf("read from %s: %w", s.name, rerr)
	}
	if n > len(buf) {
		return 0, now, errTruncated
	}
	return n, arrival(now, oob[:oobn]), nil
}

// arrival is when the kernel timestamped a frame read at now, from the
// control messages of its read; now if there is none. The result keeps
// now's monotonic clock reading (the kernel's stamp is wall time).
func arrival(now time.Time, oob []byte) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return now
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			ts := time.Unix(int64(binary.NativeEndian.Uint64(m.Data[0:])), int64(binary.NativeEndian.Uint64(m.Data[8:])))
			if age := now.Sub(ts); age >= 0 && age < time.Second {
				return now.Add(-age)
			}
		}
	}
	return now
}

// write sends one frame (virtio_net_hdr first) out of the interface.
func (s *packetSocket) write(frame []byte) error {
	rc, err := s.f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		werr = unix.Send(int(fd), frame, 0)
		return werr != unix.EAGAIN
	})
	if err != nil {
		return err
	}
	return werr
}

func (s *packetSocket) close() error { return s.f.Close() }

// checksumPartial completes the checksum a frame left to the device
// (VIRTIO_NET_HDR_F_NEEDS_CSUM): the one's complement sum from csum_start
// to the end, stored csum_offset further, as the device would. frame
// starts with its virtio_net_hdr. It reports false for a segmentation
// (GSO) frame, whose checksums only the segments have.
func checksumPartial(frame []byte) bool {
	if len(frame) < vnetHdrLen {
		return false
	}
	if frame[1] != vnetGSONone {
		return false
	}
	if frame[0]&vnetFlagNeedsCsum == 0 {
		return true
	}
	pkt := frame[vnetHdrLen:]
	start := int(binary.LittleEndian.Uint16(frame[6:]))
	off := int(binary.LittleEndian.Uint16(frame[8:]))
	if start+off+2 > len(pkt) {
		return false
	}
	var sum uint32
	data := pkt[start:]
	for i := 0; i+1 < len(data); i += 2 {
		sum += uint32(data[i])<<8 | uint32(data[i+1])
	}
	if len(data)%2 == 1 {
		sum += uint32(data[len(data)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	cs := ^uint16(sum)
	if cs == 0 { // the same in one's complement, and UDP's 0 means none
		cs = 0xffff
	}
	binary.BigEndian.PutUint16(pkt[start+off:], cs)
	frame[0] &^= vnetFlagNeedsCsum
	return true
}
