package supervise

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/eventlog"
	"github.com/nsrun/nsrun/internal/partition"
)

// TestNetVerbEvents: in a run in this process, against the kernel, every
// net verb that changes the network publishes its event before it
// answers (so a reader after the verb finds it), with the state it left
// and without the blocked pairs; show publishes nothing; flaky publishes
// the node's faults in typed values; the subscribers of a closed log get
// their end.
func TestNetVerbEvents(t *testing.T) {
	s := testRun(t, "nodes:\n  a: {ip: 172.18.0.2}\n  b: {ip: 172.18.0.3}\n  c: {ip: 172.18.0.4}\n")
	events0, err := eventlog.Open(filepath.Join(t.TempDir(), EventsFile), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s.events.Store(events0)
	client := control.NewClient(control.Path(s.plan.Run.Dir))
	events := func() []control.Event {
		t.Helper()
		sub, err := client.Events(control.EventsCall{})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		var out []control.Event
		for {
			e, err := sub.Next()
			if errors.Is(err, control.ErrEventsEnded) {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, e)
		}
	}
	if _, _, err := client.Net(control.SpecCall(partition.Isolate{Nodes: []string{"c"}})); err != nil {
		t.Fatal(err)
	}
	evs := events()
	if len(evs) != 1 || evs[0].Kind != control.EventNet || evs[0].Verb != "isolate" || evs[0].Net == nil ||
		evs[0].Net.Partition.Verb != "isolate" || evs[0].Net.Blocked != nil || !strings.HasPrefix(evs[0].Text, "isolate applied") {
		t.Fatalf("after isolate: %+v", evs)
	}
	if _, err := client.Show(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := client.Net(control.NetCall{Flaky: &control.Flaky{Node: "b", Faults: control.Faults{LossPPM: 250_000, Rate: 2_000_000}, Set: control.FaultLoss | control.FaultRate}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := client.Net(control.NetCall{Flaky: &control.Flaky{Node: "zz"}}); !errors.Is(err, control.ErrUnknownNode) {
		t.Errorf("flaky of no node: %v, want ErrUnknownNode", err)
	}
	evs = events()
	if len(evs) != 2 || evs[1].Seq != 2 || evs[1].Kind != control.EventLinkFaults || evs[1].Node != "b" || evs[1].Faults == nil ||
		evs[1].Faults.Loss() != 0.25 || evs[1].Faults.Rate != 2_000_000 {
		t.Fatalf("after show and flaky: %+v", evs)
	}
	// A follower gets what is there, then its end when the log closes.
	sub, err := client.Events(control.EventsCall{After: 1, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if e, err := sub.Next(); err != nil || e.Seq != 2 {
		t.Fatalf("follower: %+v, %v", e, err)
	}
	_ = s.events.Load().Close()
	if _, err := sub.Next(); !errors.Is(err, control.ErrEventsEnded) {
		t.Errorf("follower after the log closed: %v, want its end", err)
	}
}
