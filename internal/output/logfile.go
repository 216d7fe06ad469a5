package output

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultLogCap is the most a run's output log holds: the current file
// and the one before it, each at most half of it.
const DefaultLogCap = 16 << 20

// LogFile is a run's output log: the lines a Prefixer prints, each after
// the time it was printed (RFC 3339, UTC), without colour. It holds at
// most its cap: once the current file would pass half of it, it becomes
// PATH.1 (replacing the one before) and a new file starts.
type LogFile struct {
	mu   sync.Mutex
	path string
	half int64
	f    *os.File
	size int64
}

// OpenLog creates the output log path, capped at limit bytes.
func OpenLog(path string, limit int64) (*LogFile, error) {
	l := &LogFile{path: path, half: max(limit/2, 1)}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *LogFile) open() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("open output log: %w", err)
	}
	l.f, l.size = f, 0
	return nil
}

// Write appends one or more whole lines, rotating first when they would
// pass the cap.
func (l *LogFile) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, errors.New("output log closed")
	}
	if l.size > 0 && l.size+int64(len(b)) > l.half {
		l.f.Close()
		l.f = nil
		if err := os.Rename(l.path, l.path+".1"); err != nil {
			return 0, fmt.Errorf("rotate output log: %w", err)
		}
		if err := l.open(); err != nil {
			return 0, err
		}
	}
	n, err := l.f.Write(b)
	l.size += int64(n)
	return n, err
}

// Close closes the log.
func (l *LogFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Paths are the files of the output log path, oldest first (those that
// exist).
func Paths(path string) []string {
	var out []string
	for _, p := range []string{path + ".1", path} {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// LogLine is one line of an output log.
type LogLine struct {
	Time time.Time
	Name string // the node's name, or "nsrun" for nsrun's own events
	Text string // the line as `nsrun up` printed it (prefix and text)
}

// ParseLogLine reads one line of an output log (without its newline).
func ParseLogLine(s string) (LogLine, bool) {
	ts, rest, ok := strings.Cut(s, " ")
	if !ok {
		return LogLine{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return LogLine{}, false
	}
	name, _, ok := strings.Cut(rest, " |")
	if !ok {
		return LogLine{}, false
	}
	return LogLine{Time: t, Name: strings.TrimSpace(name), Text: rest}, true
}

// ScanLog calls fn for every line of the output log file r.
func ScanLog(r io.Reader, fn func(LogLine)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 2*1024*1024)
	for sc.Scan() {
		if l, ok := ParseLogLine(sc.Text()); ok {
			fn(l)
		}
	}
	return sc.Err()
}
