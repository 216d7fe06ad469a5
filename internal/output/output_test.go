package output

import (
	"bytes"
	"strings"
	"testing"
)

// TestPrefixer: each line of a node's output and each event is printed
// once, whole, behind its name padded to the longest name (or "nsrun"),
// coloured when asked; a nil Prefixer prints nothing.
func TestPrefixer(t *testing.T) {
	var b bytes.Buffer
	p := NewPrefixer(&b, []string{"a", "database"}, false)
	w, err := p.Writer("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString("one\ntwo, then no newline"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	p.Flush()
	p.Event("database", "started (pid 7)")
	p.Note("every node is up")
	want := "a        | one\na        | two, then no newline\nnsrun    | database started (pid 7)\nnsrun    | every node is up\n"
	if b.String() != want {
		t.Errorf("printed:\n%s\nwant:\n%s", b.String(), want)
	}

	b.Reset()
	NewPrefixer(&b, []string{"a", "b"}, true).Event("b", "exited with code 0")
	if got := b.String(); got != "\x1b[1mnsrun |\x1b[0m b exited with code 0\n" {
		t.Errorf("in colour: %q", got)
	}
	b.Reset()
	c := NewPrefixer(&b, []string{"a", "b"}, true)
	w, _ = c.Writer("b")
	_, _ = w.WriteString("x\n")
	w.Close()
	c.Flush()
	if got := b.String(); !strings.HasPrefix(got, "\x1b[33mb     |\x1b[0m x") {
		t.Errorf("node b in colour: %q", got)
	}

	var none *Prefixer
	none.Event("a", "started")
	none.Note("up")
	none.Flush()
}

// TestProgress: on a terminal the progress line is drawn in place, stays
// below every line printed meanwhile and is erased at the end; elsewhere
// it prints nothing. Count says how many nodes, with five names.
func TestProgress(t *testing.T) {
	var b bytes.Buffer
	p := NewPrefixer(&b, []string{"n1"}, true)
	p.Progress("starting 1/2 nodes")
	p.Progress("starting 2/2 nodes")
	p.Event("n1", "ready")
	p.EndProgress()
	p.Note("every node is up")
	nsrun := "\x1b[1mnsrun |\x1b[0m"
	want := "\r\x1b[K" + nsrun + " starting 1/2 nodes" +
		"\r\x1b[K" + nsrun + " starting 2/2 nodes" +
		"\r\x1b[K" + nsrun + " n1 ready\n" + nsrun + " starting 2/2 nodes" +
		"\r\x1b[K" +
		nsrun + " every node is up\n"
	if got := b.String(); got != want {
		t.Errorf("on a terminal:\n%q\nwant:\n%q", got, want)
	}

	b.Reset()
	q := NewPrefixer(&b, []string{"n1"}, false)
	q.Progress("starting 1/2 nodes")
	q.EndProgress()
	q.Note("up")
	if got := b.String(); got != "nsrun | up\n" {
		t.Errorf("not on a terminal: %q, want the note alone", got)
	}
	var none *Prefixer
	none.Progress("x")
	none.EndProgress()

	for _, c := range []struct {
		names []string
		want  string
	}{
		{[]string{"a"}, "1 node started (a)"},
		{[]string{"a", "b", "c", "d", "e"}, "5 nodes started (a b c d e)"},
		{[]string{"a", "b", "c", "d", "e", "f"}, "6 nodes started (a b c d e …)"},
	} {
		if got := Count(c.names, "started"); got != c.want {
			t.Errorf("Count(%v) = %q, want %q", c.names, got, c.want)
		}
	}
}
