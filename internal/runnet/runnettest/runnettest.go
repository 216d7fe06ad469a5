// Package runnettest builds a run's network against the kernel for the
// tests of the packages that work on one (netctl, linkengine): the plan
// of a file, applied by package runnet in a fresh bridge namespace, as
// the supervisor applies it. Its callers' test binaries run in a user
// and network namespace of their own (testns.Main).
package runnettest

import (
	"log/slog"
	"os"
	"testing"

	"github.com/nsrun/nsrun/internal/plan"
	"github.com/nsrun/nsrun/internal/runnet"
	"github.com/nsrun/nsrun/internal/testns"
	"github.com/nsrun/nsrun/internal/topology"
)

// Build applies the network of the file yaml (without uplink) in a
// fresh bridge namespace and waits until every node is wired; t's
// cleanup closes it, also when Build fails midway. It returns the plan,
// the network and the nodes' namespaces, in the plan's order.
func Build(t testing.TB, yaml string) (*plan.Plan, *runnet.Network, []*os.File) {
	t.Helper()
	top, err := topology.Parse("t.yaml", t.TempDir(), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(plan.Input{Top: top})
	if err != nil {
		t.Fatal(err)
	}
	nodeNS := make([]*os.File, len(p.Nodes))
	var n *runnet.Network
	if err := testns.InNewNet(func() error {
		n, err = runnet.Build(p, slog.New(slog.DiscardHandler), func(i int, ns *os.File) { nodeNS[i] = ns })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != nil {
		t.Cleanup(n.Close) // Build returns what it made, also with an error
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := n.WaitAllWired(); err != nil {
		t.Fatal(err)
	}
	return p, n, nodeNS
}
