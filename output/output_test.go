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
