package netctl

import (
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/linkengine"
	"github.com/nsrun/nsrun/internal/netsetup"
)

// TestFaultsMerged follows one node's faults through a series of flaky
// verbs: each sets the kinds it names and keeps the others, and what
// show says, what the rate qdisc and the link engine get and what the
// state reports all follow from the result.
func TestFaultsMerged(t *testing.T) {
	var f faults
	for _, step := range []struct {
		fl     control.Flaky
		words  string
		shape  netsetup.Shaping
		engine linkengine.Faults
	}{
		{control.Flaky{Set: control.FaultLoss, Faults: control.Faults{LossPPM: 3000}},
			"n1: loss 0.3%, rate -, delay -, jitter -", netsetup.Shaping{}, linkengine.Faults{}},
		{control.Flaky{Set: control.FaultRate, Faults: control.Faults{Rate: 1_000_000}},
			"n1: loss 0.3%, rate 1000000bit, delay -, jitter -", netsetup.Shaping{Rate: 1_000_000}, linkengine.Faults{}},
		{control.Flaky{Set: control.FaultDelay | control.FaultReorder, Faults: control.Faults{Delay: 30 * time.Millisecond, Jitter: 5 * time.Millisecond, ReorderPercent: 25}},
			"n1: loss 0.3%, rate 1000000bit, delay 30ms, jitter 5ms, reorder 25%", netsetup.Shaping{Rate: 1_000_000},
			linkengine.Faults{Delay: 30 * time.Millisecond, Jitter: 5 * time.Millisecond, Reorder: 0.25}},
		{control.Flaky{Set: control.FaultDuplicate | control.FaultCorrupt | control.FaultLoss, Faults: control.Faults{DuplicatePercent: 50, CorruptPercent: 1.5}},
			"n1: loss 0%, rate 1000000bit, delay 30ms, jitter 5ms, reorder 25%, duplicate 50%, corrupt 1.5%", netsetup.Shaping{Rate: 1_000_000},
			linkengine.Faults{Delay: 30 * time.Millisecond, Jitter: 5 * time.Millisecond, Reorder: 0.25, Duplicate: 0.5, Corrupt: 0.015}},
		{control.Flaky{Set: control.FaultRate | control.FaultDelay},
			"n1: loss 0%, rate -, delay -, jitter -, reorder 25%, duplicate 50%, corrupt 1.5%", netsetup.Shaping{},
			linkengine.Faults{Reorder: 0.25, Duplicate: 0.5, Corrupt: 0.015}},
	} {
		f = f.merged(step.fl)
		if got := f.String("n1"); got != step.words {
			t.Errorf("after %+v: %q, want %q", step.fl, got, step.words)
		}
		if got := f.shaping(); got != step.shape {
			t.Errorf("after %+v: shaping %+v, want %+v", step.fl, got, step.shape)
		}
		if got := f.engine(); got != step.engine {
			t.Errorf("after %+v: engine %+v, want %+v", step.fl, got, step.engine)
		}
	}
	if f = f.merged(control.Flaky{}); f != (faults{}) {
		t.Errorf("flaky with no kind left %+v, want none", f)
	}
}
