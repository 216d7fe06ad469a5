package report

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/partition"
)

func ev(seq int, ms int, kind control.EventKind, node string) control.Event {
	return control.Event{Seq: uint64(seq), Mono: time.Duration(ms) * time.Millisecond, Kind: kind, Node: node, Time: time.Unix(0, 0)}
}

func TestPageOfFiveNodes(t *testing.T) {
	code := 3
	events := []control.Event{ev(1, 0, control.EventNodeStarted, "a"), ev(2, 1, control.EventNodeStarted, "b")}
	cut := ev(3, 100, control.EventNet, "")
	cut.Net = &control.NetState{Partition: partition.State{Verb: "isolate", Clusters: [][]string{{"a"}}}}
	note := ev(4, 150, control.EventAnnotation, "b")
	note.Text = `<script>alert("x")</script>`
	exit := ev(5, 200, control.EventNodeExited, "b")
	exit.Code = &code
	step := ev(6, 210, control.EventFaultStep, "")
	step.Verb, step.Text, step.Step = "net isolate a", "fault", 1
	events = append(events, cut, note, exit, step)
	var b strings.Builder
	if err := Write(&b, "run <x>", events); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{`data-lane="a"`, `data-lane="b"`, `data-lane="partition"`, "{a} cut off: b", "exit 3", "&lt;script&gt;", "run &lt;x&gt;", "net isolate a"} {
		if !strings.Contains(page, want) {
			t.Errorf("no %q in the page", want)
		}
	}
	for _, bad := range []string{"<script", "src=", "href=", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("the page holds %q", bad)
		}
	}
}

func TestTwoHundredNodesInGroups(t *testing.T) {
	var events []control.Event
	for i := range 200 {
		events = append(events, ev(i+1, i, control.EventNodeStarted, fmt.Sprintf("n%03d", i)))
	}
	var b strings.Builder
	if err := Write(&b, "big", events); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if got := strings.Count(page, `<g class="lane"`); got != 3+200/GroupSize {
		t.Errorf("%d lanes for 200 nodes, want %d", got, 3+200/GroupSize)
	}
	if !strings.Contains(page, `data-lane="n000 … n009"`) || strings.Contains(page, `data-lane="n000"`) {
		t.Error("the lanes are not groups of ten")
	}
}
