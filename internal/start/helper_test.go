package start

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestHelperPath: the note names nsrun-helper beside nsrun, else the one
// in PATH, by absolute path; else its name.
func TestHelperPath(t *testing.T) {
	dir := t.TempDir()
	beside := filepath.Join(dir, "nsrun-helper")
	exe := func() (string, error) { return filepath.Join(dir, "nsrun"), nil }
	inPath := func(string) (string, error) { return "/opt/x/nsrun-helper", nil }
	none := func(string) (string, error) { return "", errors.New("not found") }
	if got := helperPath(exe, inPath); got != "/opt/x/nsrun-helper" {
		t.Errorf("none beside: %q", got)
	}
	if err := os.WriteFile(beside, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := helperPath(exe, inPath); got != beside {
		t.Errorf("beside nsrun: %q, want %q", got, beside)
	}
	noExe := func() (string, error) { return "", errors.New("no") }
	if got := helperPath(noExe, none); got != "nsrun-helper" {
		t.Errorf("nowhere: %q", got)
	}
}
