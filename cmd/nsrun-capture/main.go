// Command nsrun-capture writes the frames of packet sockets to pcap files,
// one per link, while a run goes. The run supervisor starts it with the
// sockets (AF_PACKET, bound to each node's bridge port) as fds 3, 4, ...
// and the files to write as arguments, in the same order:
//
//	nsrun-capture FILE...
//
// It prints "ready" once every file has its header. On SIGTERM it says how
// many frames the kernel dropped because the writer fell behind (at
// multi-Gbit/s rates a packet socket does not slow the link down), then
// exits. Records are written whole (gathered, then written together
// whenever the kernel has nothing more ready), so the files can be read
// while they grow (tail -Fc +0 web.pcap | tcpdump -nr -). The supervisor
// stops it with SIGTERM, even when nsrun was killed, so files end on a
// whole record; a SIGKILL of this process could land inside a write(2).
// Files on disk are streamed: written out and dropped from the page cache
// as they grow (see pcapFile). It is a separate binary so that nsrun
// itself does not carry the pcap library.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket"
	"golang.org/x/sys/unix"
)

// The receive ring of each packet socket (TPACKET_V3): blocks the kernel
// fills and hands over whole, retired at the latest after ringTimeout ms.
const (
	ringBlockSize = 1 << 20
	ringBlocks    = 32
	ringFrameSize = 1 << 11
	ringTimeout   = 10
)

// usage is nsrun-capture --help.
const usage = `Usage: nsrun-capture FILE...

Writes the frames of packet sockets to pcap files, one per link, while a
run goes. nsrun starts it for nsrun up --capture DIR (or capture: true on a
node), with one packet socket per FILE as fds 3, 4, ...: it is not run by
hand. It prints "ready" once every file has its header, and ends on
SIGTERM, saying how many frames the kernel dropped.
`

func main() {
	files := os.Args[1:]
	if len(files) == 0 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	for _, f := range files {
		switch {
		case f == "-h" || f == "-help" || f == "--help":
			fmt.Print(usage)
			os.Exit(0)
		case strings.HasPrefix(f, "-"):
			fmt.Fprintf(os.Stderr, "nsrun-capture: unknown flag %s: it takes none; see nsrun-capture --help\n", f)
			os.Exit(2)
		}
	}
	var wg sync.WaitGroup
	var writers []*link
	for i, path := range files {
		l, err := newLink(3+i, path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "nsrun-capture:", err)
			os.Exit(1)
		}
		writers = append(writers, l)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	var stopping atomic.Bool
	fmt.Println("ready")
	for _, l := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := l.run(&stopping)
			if cerr := l.out.close(); err == nil {
				err = cerr
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "nsrun-capture:", err)
			}
		}()
	}
	ended := make(chan struct{})
	go func() { wg.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-stop:
		// Write what the kernel still holds (it retires the last block
		// within ringTimeout), then stop.
		stopping.Store(true)
		<-ended
	}
	for _, l := range writers {
		l.reportDrops()
	}
}

// link copies one socket's frames into one pcap file.
type link struct {
	fd   int
	ring []byte
	out  *pcapFile
}

func newLink(fd int, path string) (*link, error) {
	if domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || domain != unix.AF_PACKET {
		return nil, fmt.Errorf("%s: fd %d is not a packet socket: nsrun-capture is started by nsrun (see nsrun-capture --help)", path, fd)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return nil, fmt.Errorf("packet socket: TPACKET_V3: %w", err)
	}
	req := unix.TpacketReq3{
		Block_size:     ringBlockSize,
		Block_nr:       ringBlocks,
		Frame_size:     ringFrameSize,
		Frame_nr:       ringBlockSize / ringFrameSize * ringBlocks,
		Retire_blk_tov: ringTimeout,
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fmt.Errorf("packet socket: receive ring: %w", err)
	}
	ring, err := unix.Mmap(fd, 0, ringBlockSize*ringBlocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("packet socket: map the receive ring: %w", err)
	}
	out, err := createPcapFile(path)
	if err != nil {
		return nil, err
	}
	return &link{fd: fd, ring: ring, out: out}, nil
}

// Offsets in struct tpacket_block_desc (its header is a tpacket_hdr_v1).
const (
	blockStatus   = 8
	blockNumPkts  = 12
	blockFirstPkt = 16
)

// run writes every block the kernel hands over, in order, until the
// socket fails or, once stopping is set, no block is left. What it has
// gathered goes to the file whenever the kernel has nothing more ready, so
// a reader sees frames within about ringTimeout.
//
// Once stopping is set it writes at most one ring's worth of blocks more:
// all the kernel held then, and not what keeps arriving on a busy link.
func (l *link) run(stopping *atomic.Bool) error {
	left := -1 // blocks still to write once stopping
	for cur := 0; ; cur = (cur + 1) % ringBlocks {
		if left < 0 && stopping.Load() {
			left = ringBlocks + 1
		}
		if left == 0 {
			return nil
		}
		if left > 0 {
			left--
		}
		blk := l.ring[cur*ringBlockSize : (cur+1)*ringBlockSize]
		status := (*uint32)(unsafe.Pointer(&blk[blockStatus]))
		for atomic.LoadUint32(status)&unix.TP_STATUS_USER == 0 {
			if err := l.out.flush(); err != nil {
				return err
			}
			fds := []unix.PollFd{{Fd: int32(l.fd), Events: unix.POLLIN | unix.POLLERR}}
			n, err := unix.Poll(fds, 2*ringTimeout)
			if err != nil && !errors.Is(err, unix.EINTR) {
				return fmt.Errorf("poll the packet socket: %w", err)
			}
			if n > 0 && fds[0].Revents&unix.POLLERR != 0 {
				// The link went down and up (the link engine splices it
				// in and out): the kernel set ENETDOWN on the socket and
				// goes on capturing once it is up; reading the error
				// clears it, or every poll would return at once.
				_, _ = unix.GetsockoptInt(l.fd, unix.SOL_SOCKET, unix.SO_ERROR)
			}
			if n == 0 && stopping.Load() && atomic.LoadUint32(status)&unix.TP_STATUS_USER == 0 {
				return nil
			}
		}
		npkts := *(*uint32)(unsafe.Pointer(&blk[blockNumPkts]))
		off := *(*uint32)(unsafe.Pointer(&blk[blockFirstPkt]))
		for i := uint32(0); i < npkts; i++ {
			h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&blk[off]))
			start := off + uint32(h.Mac)
			data := blk[start : start+h.Snaplen]
			ci := gopacket.CaptureInfo{
				Timestamp:     time.Unix(int64(h.Sec), int64(h.Nsec)),
				CaptureLength: len(data),
				Length:        int(h.Len),
			}
			if err := l.out.writePacket(ci, data); err != nil {
				return err
			}
			off += h.Next_offset
		}
		atomic.StoreUint32(status, unix.TP_STATUS_KERNEL)
	}
}

// reportDrops says how many frames the kernel dropped for want of room in
// the ring since the capture started, out of how many reached the socket.
func (l *link) reportDrops() {
	st, err := unix.GetsockoptTpacketStats(l.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil || st.Drops == 0 {
		return
	}
	// For TPACKET_V3 the kernel counts dropped frames in Packets too.
	fmt.Fprintf(os.Stderr, "nsrun-capture: %s: %d of %d frames were not captured: the writer fell behind the link (packet sockets never slow a link down); capture fewer or slower links\n",
		filepath.Base(l.out.f.Name()), st.Drops, st.Packets)
}
