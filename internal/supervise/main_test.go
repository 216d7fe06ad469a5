package supervise

import (
	"testing"

	"github.com/nsrun/nsrun/internal/testns"
)

// TestMain runs every test of the package in a user and network
// namespace of its own (package testns), as the launcher runs the
// supervisor: the test's network namespace is the bridge namespace. The
// test binary also serves as a node's init (package launch's C code runs
// it before the Go runtime), as nsrun does.
func TestMain(m *testing.M) {
	testns.Main(m)
}
