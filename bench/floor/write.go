package main

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// writeFloor writes each file at mbps megabytes a second for d, the way
// nsrun-capture streams a pcap file to disk (4 MiB writes; every 16 MiB
// written out and dropped from the page cache), with nothing else: what
// putting that many bytes on this disk costs. It removes the files and
// prints the rate reached per file.
func writeFloor(d time.Duration, mbps float64, files []string) error {
	errs := make([]error, len(files))
	rates := make([]float64, len(files))
	var wg sync.WaitGroup
	for i, path := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rates[i], errs[i] = writePaced(path, d, mbps*1e6)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return err
		}
		fmt.Printf("%s: %.2f GB/s\n", files[i], rates[i]/1e9)
	}
	return nil
}

func writePaced(path string, d time.Duration, rate float64) (float64, error) {
	const chunk, window = 4 << 20, 16 << 20
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	defer os.Remove(path)
	defer f.Close()
	fd := int(f.Fd())
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = byte(i)
	}
	start := time.Now()
	var written, kicked int64
	for time.Since(start) < d {
		due := start.Add(time.Duration(float64(written) / rate * float64(time.Second)))
		time.Sleep(time.Until(due))
		n, err := unix.Write(fd, buf)
		if err != nil {
			return 0, fmt.Errorf("write %s: %w", path, err)
		}
		written += int64(n)
		if written-kicked >= window {
			_ = unix.SyncFileRange(fd, kicked, written-kicked, unix.SYNC_FILE_RANGE_WRITE)
			if kicked >= window {
				const wait = unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER
				_ = unix.SyncFileRange(fd, kicked-window, window, wait)
				_ = unix.Fadvise(fd, kicked-window, window, unix.FADV_DONTNEED)
			}
			kicked = written
		}
	}
	return float64(written) / time.Since(start).Seconds(), nil
}
