package start

import (
	"slices"
	"testing"
)

// TestDetachedEnv: the child of `nsrun up -d` gets the caller's
// environment with one EnvDetachFD, naming fd 3, whatever the caller had.
func TestDetachedEnv(t *testing.T) {
	env := []string{"A=1", EnvDetachFD + "=7", "NSRUN_DETACH_FDX=2", "B=2", EnvDetachFD + "=9"}
	want := []string{"A=1", "NSRUN_DETACH_FDX=2", "B=2", EnvDetachFD + "=3"}
	if got := DetachedEnv(env); !slices.Equal(got, want) {
		t.Errorf("DetachedEnv(%q) = %q, want %q", env, got, want)
	}
}
