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
// exits. Each packet is written
// with one write(2), so a file cut short by SIGKILL still ends on a whole
// record, and the files can be read while they grow
// (tail -Fc +0 web.pcap | tcpdump -nr -). It is a separate binary so that
// nsrun itself does not carry the pcap library.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"
)

const snapLen = 65536

func main() {
	files := os.Args[1:]
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "usage: nsrun-capture FILE... (started by nsrun with one packet socket per file)")
		os.Exit(2)
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
	fmt.Println("ready")
	for _, l := range writers {
		wg.Add(1)
		go func() { defer wg.Done(); l.run() }()
	}
	ended := make(chan struct{})
	go func() { wg.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-stop:
	}
	for _, l := range writers {
		l.reportDrops()
	}
}

// link copies one socket's frames into one pcap file.
type link struct {
	fd  int
	buf *bufio.Writer
	w   *pcapgo.Writer
	f   *os.File
}

// reportDrops says how many frames the kernel dropped for want of room in
// the socket's buffer since the capture started.
func (l *link) reportDrops() {
	st, err := unix.GetsockoptTpacketStats(l.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil || st.Drops == 0 {
		return
	}
	fmt.Fprintf(os.Stderr, "nsrun-capture: %s: %d frames were not captured: the writer fell behind the link (packet sockets never slow a link down); capture fewer or slower links\n",
		filepath.Base(l.f.Name()), st.Drops)
}

func newLink(fd int, path string) (*link, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	// Big enough for a whole record, so that Flush is a single write.
	buf := bufio.NewWriterSize(f, snapLen+64)
	w := pcapgo.NewWriter(buf)
	if err := w.WriteFileHeader(snapLen, layers.LinkTypeEthernet); err != nil {
		return nil, err
	}
	if err := buf.Flush(); err != nil {
		return nil, err
	}
	return &link{fd: fd, buf: buf, w: w, f: f}, nil
}

func (l *link) run() {
	data := make([]byte, snapLen)
	for {
		n, _, err := unix.Recvfrom(l.fd, data, unix.MSG_TRUNC)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			return
		}
		capLen := min(n, snapLen)
		ci := gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: capLen, Length: n}
		if l.w.WritePacket(ci, data[:capLen]) != nil || l.buf.Flush() != nil {
			return
		}
	}
}
