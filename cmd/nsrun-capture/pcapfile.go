package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"
)

// snapLen is the file's snapshot length: whole frames, as tcpdump takes.
const snapLen = 262144

// bufSize is how many bytes of whole records a pcapFile gathers before it
// writes them with one write(2).
const bufSize = 4 << 20

// writebackWindow is how often, in bytes written, a pcapFile on disk
// starts writing its newest pages out and drops the ones already on disk
// from the page cache. A capture writes gigabytes it will not read again:
// streamed like this it needs a few windows of memory instead of filling
// the page cache, which on a small machine ends in the kernel throttling
// the writer to the disk's speed while the ring overflows.
const writebackWindow = 16 << 20

// pcapFile is one pcap file being written: whole records, gathered in a
// buffer and written together, so the file always ends on a record
// boundary and readers (tail -F | tcpdump -r -) never see half a frame.
type pcapFile struct {
	f       *os.File
	fd      int
	w       *pcapgo.Writer
	buf     []byte
	written int64 // bytes in the file

	// Streaming writeback, for regular files only.
	kicked  int64         // bytes already handed to writeback
	drop    chan [2]int64 // ranges to drop once they are on disk
	dropped chan struct{} // closed when the dropper has finished
}

// createPcapFile creates path and writes the pcap file header.
func createPcapFile(path string) (*pcapFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	p := &pcapFile{f: f, fd: int(f.Fd()), buf: make([]byte, 0, bufSize)}
	p.w = pcapgo.NewWriter(p)
	if err := p.w.WriteFileHeader(snapLen, layers.LinkTypeEthernet); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err := p.flush(); err != nil { // already names the file
		_ = f.Close()
		return nil, err
	}
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		p.drop = make(chan [2]int64, 4)
		p.dropped = make(chan struct{})
		go p.dropWritten()
	}
	return p, nil
}

// Write appends to the buffer; pcapgo calls it with a record's header,
// then its frame.
func (p *pcapFile) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	return len(b), nil
}

// writePacket adds one record, first writing out what is gathered if the
// record would not fit beside it.
func (p *pcapFile) writePacket(ci gopacket.CaptureInfo, frame []byte) error {
	if len(p.buf)+16+len(frame) > cap(p.buf) {
		if err := p.flush(); err != nil {
			return err
		}
	}
	return p.w.WritePacket(ci, frame)
}

// flush writes the gathered records.
func (p *pcapFile) flush() error {
	for out := p.buf; len(out) > 0; {
		n, err := unix.Write(p.fd, out)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", p.f.Name(), err)
		}
		out = out[n:]
		p.written += int64(n)
	}
	p.buf = p.buf[:0]
	if p.drop != nil && p.written-p.kicked >= writebackWindow {
		// Start writing the window out now (this does not wait), and
		// let the dropper wait for it and drop it from the page cache.
		// The dropper being behind only means more stays cached.
		_ = unix.SyncFileRange(p.fd, p.kicked, p.written-p.kicked, unix.SYNC_FILE_RANGE_WRITE)
		select {
		case p.drop <- [2]int64{p.kicked, p.written - p.kicked}:
		default:
		}
		p.kicked = p.written
	}
	return nil
}

// dropWritten waits until each range handed to it is on disk, then drops
// its pages from the page cache. Readers still read them, from disk.
func (p *pcapFile) dropWritten() {
	defer close(p.dropped)
	for r := range p.drop {
		const wait = unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER
		if unix.SyncFileRange(p.fd, r[0], r[1], wait) == nil {
			_ = unix.Fadvise(p.fd, r[0], r[1], unix.FADV_DONTNEED)
		}
	}
}

// close writes what is gathered and closes the file.
func (p *pcapFile) close() error {
	err := p.flush()
	if p.drop != nil {
		close(p.drop)
		<-p.dropped
	}
	if cerr := p.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", p.f.Name(), cerr)
	}
	return err
}
