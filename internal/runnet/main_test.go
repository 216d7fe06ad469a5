package runnet

import (
	"testing"

	"github.com/nsrun/nsrun/internal/testns"
)

// TestMain runs every test of the package in a user and network
// namespace of its own (package testns), as the launcher runs the
// supervisor: the test's network namespace is the bridge namespace.
func TestMain(m *testing.M) { testns.Main(m) }
