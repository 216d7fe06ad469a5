package output

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogFileCapAndLines: the prefixer's lines go to the log after their
// time and without colour; the log holds at most its cap, in two files,
// rotating on whole lines; ScanLog reads the lines back.
func TestLogFileCapAndLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "output.log")
	const limit = 4096
	l, err := OpenLog(path, limit)
	if err != nil {
		t.Fatal(err)
	}
	var screen bytes.Buffer
	p := NewPrefixer(&screen, []string{"web"}, true)
	p.LogTo(l)
	before := time.Now().Add(-time.Second)
	for i := range 500 {
		p.Event("web", strings.Repeat("x", i%50))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(screen.String(), "\x1b[") {
		t.Error("the terminal lost its colour")
	}
	var total int64
	var lines []LogLine
	for _, f := range Paths(path) {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		total += fi.Size()
		r, _ := os.Open(f)
		if err := ScanLog(r, func(l LogLine) { lines = append(lines, l) }); err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
	if len(Paths(path)) != 2 || total > limit {
		t.Errorf("log files %v hold %d bytes; want two, at most %d", Paths(path), total, limit)
	}
	if len(lines) < 20 {
		t.Fatalf("only %d lines read back", len(lines))
	}
	last := lines[len(lines)-1]
	if last.Name != "nsrun" || last.Text != "nsrun | web "+strings.Repeat("x", 499%50) || last.Time.Before(before) || strings.Contains(last.Text, "\x1b") {
		t.Errorf("last line %+v", last)
	}
	for i := 1; i < len(lines); i++ {
		if lines[i].Time.Before(lines[i-1].Time) {
			t.Fatalf("lines out of order at %d", i)
		}
	}
}
