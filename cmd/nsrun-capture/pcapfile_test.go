package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"
)

// frame returns a frame of n bytes whose content says which frame it is.
func frame(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(i + j)
	}
	return b
}

// readAll reads every record of a pcap file, failing on a torn record.
func readAll(t *testing.T, path string) []gopacket.CaptureInfo {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var cis []gopacket.CaptureInfo
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return cis
		}
		if err != nil {
			t.Fatalf("%s: record %d: %v", path, len(cis), err)
		}
		if want := frame(len(cis), ci.CaptureLength); !bytes.Equal(data, want) {
			t.Fatalf("%s: record %d holds the wrong bytes", path, len(cis))
		}
		cis = append(cis, ci)
	}
}

// TestPcapFileWholeRecords writes more than a buffer and several writeback
// windows of frames of many sizes, and checks that the file holds every
// frame in order, and that whenever the writer has flushed, the file ends
// on a whole record (what a live reader sees).
func TestPcapFileWholeRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "link.pcap")
	p, err := createPcapFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{60, 1514, 65536, 9000, 42, 262144, 1}
	base := time.Unix(1700000000, 0)
	total, n := 0, 0
	for ; total < 3*writebackWindow; n++ {
		size := sizes[n%len(sizes)]
		ci := gopacket.CaptureInfo{Timestamp: base.Add(time.Duration(n) * time.Microsecond), CaptureLength: size, Length: size}
		if err := p.writePacket(ci, frame(n, size)); err != nil {
			t.Fatal(err)
		}
		total += size
		if n%997 == 0 {
			if err := p.flush(); err != nil {
				t.Fatal(err)
			}
			if got := len(readAll(t, path)); got != n+1 {
				t.Fatalf("after a flush the file holds %d records, want %d", got, n+1)
			}
		}
	}
	if p.drop == nil || p.kicked < 2*writebackWindow {
		t.Errorf("streamed writeback handed %d bytes to the disk, want at least %d", p.kicked, 2*writebackWindow)
	}
	if err := p.close(); err != nil {
		t.Fatal(err)
	}
	cis := readAll(t, path)
	if len(cis) != n {
		t.Fatalf("file holds %d records, want %d", len(cis), n)
	}
	for i, ci := range cis {
		if want := base.Add(time.Duration(i) * time.Microsecond); !ci.Timestamp.Equal(want) {
			t.Fatalf("record %d: timestamp %v, want %v", i, ci.Timestamp, want)
		}
	}
}

// TestPcapFileNotRegular: a capture into something that is not a regular
// file (here /dev/null, through a symlink) is written without streamed
// writeback.
func TestPcapFileNotRegular(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "link.pcap")
	if err := os.Symlink("/dev/null", path); err != nil {
		t.Fatal(err)
	}
	p, err := createPcapFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.drop != nil {
		t.Error("streamed writeback is on for /dev/null")
	}
	ci := gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: 100, Length: 100}
	for i := 0; i < 2*writebackWindow/100; i++ {
		if err := p.writePacket(ci, frame(i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.close(); err != nil {
		t.Fatal(err)
	}
}
