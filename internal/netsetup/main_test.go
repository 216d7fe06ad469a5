package netsetup

import (
	"testing"

	"github.com/nsrun/nsrun/internal/testns"
)

// TestMain runs every test of the package in a user and network
// namespace of its own (package testns): against the real kernel, without
// root.
func TestMain(m *testing.M) { testns.Main(m) }
