package jsonout

import (
	"errors"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	var b strings.Builder
	if err := Write(&b, map[string][]int{"a": {1}}); err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"a\": [\n    1\n  ]\n}\n"; b.String() != want {
		t.Errorf("Write = %q, want %q", b.String(), want)
	}
}

type failing struct{}

func (failing) Write([]byte) (int, error) { return 0, errors.New("closed") }

// TestWriteFails: a failed write is returned, not dropped.
func TestWriteFails(t *testing.T) {
	if err := Write(failing{}, 1); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Write to a failing writer: %v", err)
	}
}
