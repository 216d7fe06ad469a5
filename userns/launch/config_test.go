package launch

import (
	"strings"
	"testing"
)

// TestInitConfig holds the layout nodeinit.c's read_config parses, and
// the refusal of a NUL byte, which would end a field early and shift the
// rest (an argument's tail would become an environment variable).
func TestInitConfig(t *testing.T) {
	b, err := InitConfig("/bin/sh", "/w", 1000, 100, []string{"sh", "-c", "x"}, []string{"A=1", "B=2"})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{"/bin/sh", "/w", "1000", "100", "3", "sh", "-c", "x", "A=1", "B=2"}, "\x00") + "\x00"
	if string(b) != want {
		t.Errorf("InitConfig = %q, want %q", b, want)
	}
	for _, c := range []struct {
		path, dir string
		argv, env []string
		wantInErr string
	}{
		{"/bin/sh", "/", []string{"sh", "x\x00y", "z"}, nil, "argument"},
		{"/bin/sh", "/", []string{"sh"}, []string{"A=x\x00INJ=1"}, "environment variable"},
		{"/bin/s\x00h", "/", []string{"sh"}, nil, "path"},
		{"/bin/sh", "/w\x00", []string{"sh"}, nil, "folder"},
	} {
		if _, err := InitConfig(c.path, c.dir, 0, 0, c.argv, c.env); err == nil || !strings.Contains(err.Error(), c.wantInErr) || !strings.Contains(err.Error(), "NUL") {
			t.Errorf("InitConfig(%q, %q, %q, %q): error %v, want one naming the %s and NUL", c.path, c.dir, c.argv, c.env, err, c.wantInErr)
		}
	}
}
