// Package report draws a run's events (control.Event, as events.jsonl
// holds them) as one self-contained HTML page: one lane per node (up,
// ready, paused, stopped, exit codes, link faults), the partition in
// force over time as clusters, the fault schedule's steps and the
// annotations on the same time axis, the exact event on hover (SVG
// titles), and a table of every event. The page loads nothing: no
// script, no font, no image from anywhere.
package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nsrun/nsrun/internal/control"
)

// ReadEvents reads an events.jsonl file.
func ReadEvents(path string) ([]control.Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []control.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var e control.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("%s:%d: not an event: %w", path, line, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// GroupAbove is the number of nodes above which lanes are groups of
// GroupSize nodes each.
const (
	GroupAbove = 40
	GroupSize  = 10
)

// Drawing sizes, in pixels.
const (
	labelW = 170
	plotW  = 1100
	laneH  = 24
	axisH  = 28
	rightW = 60 // room for the labels of the last marks
)

// segment is a span of a lane: from, to (mono), a CSS class, a title.
type segment struct {
	from, to time.Duration
	class    string
	label    string
	title    string
}

// mark is a point of a lane.
type mark struct {
	at    time.Duration
	class string
	label string
	title string
}

type lane struct {
	name  string
	group bool // of GroupSize nodes
	segs  []segment
	marks []mark
}

// Write writes the page of events, titled title, to w.
func Write(w io.Writer, title string, events []control.Event) error {
	var end time.Duration
	for _, e := range events {
		end = max(end, e.Mono)
	}
	end += end/50 + time.Millisecond
	nodes, nodeLanes := nodeLanes(events, end)
	lanes := []*lane{partitionLane(events, nodes, end), stepsLane(events), notesLane(events)}
	var body []*lane
	if len(nodes) > GroupAbove {
		body = groupLanes(nodes, nodeLanes)
	} else {
		for _, n := range nodes {
			body = append(body, nodeLanes[n])
		}
	}
	lanes = append(lanes, body...)
	b := &strings.Builder{}
	fmt.Fprintf(b, `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>%s</title>
<style>
body{font:13px/1.4 sans-serif;margin:16px;color:#222}
h1{font-size:18px;margin:0 0 4px}
.sub{color:#555;margin-bottom:10px}
svg text{font:11px sans-serif}
.lname{font-weight:bold}
.up{fill:#8fd18f}.ready{fill:#2e8b57}.paused{fill:#f2c14e}.stopped{fill:#bbb}.flaky{fill:#e8743b}
.cut{fill:#e57373}.mesh{fill:#d9ecff}.fault{fill:#c62828}.heal{fill:#2e7d32}.note{fill:#1565c0}.exit{fill:#222}.exitbad{fill:#c62828}
.grid{stroke:#eee}.lanebg{fill:#fafafa}
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
table{border-collapse:collapse;margin-top:16px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f0f0f0}tr.fault-step td{background:#fff3f3}tr.annotation td{background:#f0f6ff}
</style></head><body>
<h1>%s</h1>
`, html.EscapeString(title), html.EscapeString(title))
	fmt.Fprintf(b, `<div class="sub">%d events over %.3fs; %d nodes%s. Hover a mark for its event.</div>
`, len(events), end.Seconds(), len(nodes), groupNote(len(nodes)))
	b.WriteString(`<div class="legend"><span><i class="lg" style="background:#8fd18f"></i>up</span><span><i style="background:#2e8b57"></i>ready</span><span><i style="background:#f2c14e"></i>paused</span><span><i style="background:#bbb"></i>stopped</span><span><i style="background:#e8743b"></i>link faults</span><span><i style="background:#e57373"></i>partition</span><span><i style="background:#c62828"></i>fault step</span><span><i style="background:#2e7d32"></i>heal</span><span><i style="background:#1565c0"></i>annotation</span></div>
`)
	drawSVG(b, lanes, end)
	drawTable(b, events)
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func groupNote(n int) string {
	if n > GroupAbove {
		return fmt.Sprintf(", in lanes of %d", GroupSize)
	}
	return ""
}

// x is the position of t on the plot.
func x(t, end time.Duration) float64 {
	return labelW + float64(t)/float64(end)*plotW
}

func drawSVG(b *strings.Builder, lanes []*lane, end time.Duration) {
	h := axisH + len(lanes)*laneH + 4
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="timeline">
`, labelW+plotW+rightW, h)
	// The axis, with about 10 ticks at round steps.
	step := tickStep(end)
	for t := time.Duration(0); t <= end; t += step {
		px := x(t, end)
		fmt.Fprintf(b, `<line class="grid" x1="%.1f" y1="%d" x2="%.1f" y2="%d"/><text x="%.1f" y="14" text-anchor="middle">%s</text>
`, px, axisH-6, px, h, px, t)
	}
	for i, l := range lanes {
		y := axisH + i*laneH
		fmt.Fprintf(b, `<g class="lane" data-lane="%s"><rect class="lanebg" x="%d" y="%d" width="%d" height="%d"/><text class="lname" x="4" y="%d">%s</text>
`, html.EscapeString(l.name), labelW, y+1, plotW, laneH-2, y+16, html.EscapeString(l.name))
		for _, s := range l.segs {
			x1, x2 := x(s.from, end), x(s.to, end)
			sy, sh := y+3, laneH-6
			if s.class == "flaky" {
				sy, sh = y+laneH-8, 5
			}
			fmt.Fprintf(b, `<rect class="%s" x="%.1f" y="%d" width="%.1f" height="%d" opacity="%s"><title>%s</title></rect>`,
				s.class, x1, sy, max(x2-x1, 1), sh, opacity(l, s), html.EscapeString(s.title))
			if l := fit(s.label, x2-x1-6); l != "" {
				fmt.Fprintf(b, `<text x="%.1f" y="%d" pointer-events="none">%s</text>`, x1+3, y+16, html.EscapeString(l))
			}
			b.WriteByte('\n')
		}
		for j, m := range l.marks {
			px := x(m.at, end)
			// A label takes the room up to the next mark, cut to fit
			// (the whole event is in the title).
			room := labelW + plotW + rightW - px
			if j+1 < len(l.marks) {
				room = x(l.marks[j+1].at, end) - px
			}
			fmt.Fprintf(b, `<g><rect class="%s" x="%.1f" y="%d" width="3" height="%d"/><text x="%.1f" y="%d">%s</text><title>%s</title></g>
`, m.class, px-1, y+2, laneH-4, px+4, y+16, html.EscapeString(fit(m.label, room-6)), html.EscapeString(m.title))
		}
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
}

// fit cuts label to about px pixels of 11px text.
func fit(label string, px float64) string {
	n := int(px / 6.2)
	r := []rune(label)
	switch {
	case len(r) <= n:
		return label
	case n < 2:
		return ""
	}
	return string(r[:n-1]) + "…"
}

// opacity lets the up segments of a group's nodes add up, under their
// pauses, stops and link faults.
func opacity(l *lane, s segment) string {
	if l.group && s.class == "up" {
		return "0.35"
	}
	return "1"
}

func tickStep(end time.Duration) time.Duration {
	for _, s := range []time.Duration{10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute, 10 * time.Minute, time.Hour} {
		if end/s <= 12 {
			return s
		}
	}
	return 6 * time.Hour
}

// describe is an event in one line: what the hover and the table show.
func describe(e control.Event) string {
	var parts []string
	parts = append(parts, fmt.Sprintf("#%d %.3fs %s", e.Seq, e.Mono.Seconds(), e.Kind))
	if e.Node != "" {
		parts = append(parts, "node "+e.Node)
	}
	if e.Pid != 0 {
		parts = append(parts, fmt.Sprintf("pid %d", e.Pid))
	}
	if e.Code != nil {
		parts = append(parts, fmt.Sprintf("code %d", *e.Code))
	}
	if e.Step != 0 {
		parts = append(parts, fmt.Sprintf("step %d", e.Step))
	}
	if e.Verb != "" {
		parts = append(parts, "verb "+e.Verb)
	}
	if e.Net != nil {
		parts = append(parts, "partition "+clusters(e.Net))
	}
	if e.Faults != nil {
		parts = append(parts, "faults "+faultText(*e.Faults))
	}
	if e.Text != "" {
		parts = append(parts, e.Text)
	}
	parts = append(parts, e.Time.Format(time.RFC3339Nano))
	return strings.Join(parts, "; ")
}

// clusters is a partition in words: "{n1 n2} {n3}" or "full mesh".
func clusters(st *control.NetState) string {
	p := st.Partition
	if p.Clusters == nil && len(p.Drops) == 0 && len(p.UplinkCut) == 0 {
		return "full mesh"
	}
	var parts []string
	for _, c := range p.Clusters {
		if len(c) > 6 { // a big run's cluster: its ends and its size
			parts = append(parts, fmt.Sprintf("{%s … %s: %d nodes}", c[0], c[len(c)-1], len(c)))
			continue
		}
		parts = append(parts, "{"+strings.Join(c, " ")+"}")
	}
	for _, d := range p.Drops {
		parts = append(parts, d[0]+"↛"+d[1])
	}
	if len(p.UplinkCut) > 0 {
		parts = append(parts, "uplink cut: "+strings.Join(p.UplinkCut, " "))
	}
	if p.Clusters != nil && len(p.Clusters) == 0 {
		parts = append(parts, "every node alone")
	}
	return strings.Join(parts, " ")
}

func faultText(f control.Faults) string {
	var parts []string
	if f.LossPPM > 0 {
		parts = append(parts, fmt.Sprintf("loss %g%%", f.Loss()*100))
	}
	if f.Rate > 0 {
		parts = append(parts, fmt.Sprintf("rate %dbit", f.Rate))
	}
	if f.Delay > 0 {
		parts = append(parts, fmt.Sprintf("delay %s±%s", f.Delay, f.Jitter))
	}
	if f.ReorderPercent > 0 {
		parts = append(parts, fmt.Sprintf("reorder %g%%", f.ReorderPercent))
	}
	if f.DuplicatePercent > 0 {
		parts = append(parts, fmt.Sprintf("duplicate %g%%", f.DuplicatePercent))
	}
	if f.CorruptPercent > 0 {
		parts = append(parts, fmt.Sprintf("corrupt %g%%", f.CorruptPercent))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// nodeLanes are the nodes in the order they first appear and a lane
// each: up (started to exited), ready, paused, stopped, exit codes, link
// faults.
func nodeLanes(events []control.Event, end time.Duration) ([]string, map[string]*lane) {
	var order []string
	lanes := map[string]*lane{}
	type open struct {
		at time.Duration
		e  control.Event
		ok bool
	}
	up, paused, stopped, flaky := map[string]open{}, map[string]open{}, map[string]open{}, map[string]open{}
	get := func(n string) *lane {
		if l, ok := lanes[n]; ok {
			return l
		}
		order = append(order, n)
		lanes[n] = &lane{name: n}
		return lanes[n]
	}
	closeSeg := func(m map[string]open, n string, to time.Duration, class, label string) {
		if o := m[n]; o.ok {
			get(n).segs = append(get(n).segs, segment{from: o.at, to: to, class: class, label: label, title: describe(o.e)})
			delete(m, n)
		}
	}
	for _, e := range events {
		n := e.Node
		if n == "" || e.Kind == control.EventAnnotation {
			if n != "" {
				get(n)
			}
			continue
		}
		l := get(n)
		switch e.Kind {
		case control.EventNodeStarted:
			closeSeg(stopped, n, e.Mono, "stopped", "stopped")
			up[n] = open{e.Mono, e, true}
		case control.EventNodeReady:
			l.marks = append(l.marks, mark{at: e.Mono, class: "ready", label: "ready", title: describe(e)})
		case control.EventNodeExited:
			closeSeg(paused, n, e.Mono, "paused", "paused")
			closeSeg(up, n, e.Mono, "up", "")
			class := "exit"
			if e.Code != nil && *e.Code != 0 {
				class = "exitbad"
			}
			code := "?"
			if e.Code != nil {
				code = fmt.Sprint(*e.Code)
			}
			l.marks = append(l.marks, mark{at: e.Mono, class: class, label: "exit " + code, title: describe(e)})
		case control.EventNodeStopped:
			stopped[n] = open{e.Mono, e, true}
		case control.EventNodePaused:
			paused[n] = open{e.Mono, e, true}
		case control.EventNodeResumed:
			closeSeg(paused, n, e.Mono, "paused", "paused")
		case control.EventLinkFaults:
			closeSeg(flaky, n, e.Mono, "flaky", "")
			if e.Faults != nil && *e.Faults != (control.Faults{}) {
				flaky[n] = open{e.Mono, e, true}
			}
		}
	}
	for _, n := range order {
		closeSeg(up, n, end, "up", "")
		closeSeg(paused, n, end, "paused", "paused")
		closeSeg(stopped, n, end, "stopped", "stopped")
		closeSeg(flaky, n, end, "flaky", "")
	}
	// Up first, so that paused, stopped and link faults draw over it.
	for _, l := range lanes {
		slices.SortStableFunc(l.segs, func(a, b segment) int { return segRank[a.class] - segRank[b.class] })
	}
	return order, lanes
}

// segRank orders a lane's segments for drawing: up first, so that
// stopped, paused and link faults draw over it.
var segRank = map[string]int{"up": 0, "stopped": 1, "paused": 2, "flaky": 3}

// groupLanes folds node lanes into lanes of GroupSize nodes.
func groupLanes(nodes []string, lanes map[string]*lane) []*lane {
	var out []*lane
	for i := 0; i < len(nodes); i += GroupSize {
		j := min(i+GroupSize, len(nodes))
		g := &lane{name: nodes[i] + " … " + nodes[j-1], group: true}
		for _, n := range nodes[i:j] {
			for _, s := range lanes[n].segs {
				s.label = "" // the nodes' spans overlap: their words are in the titles
				g.segs = append(g.segs, s)
			}
			for _, m := range lanes[n].marks {
				if m.class != "ready" {
					m.label = n + " " + m.label
					g.marks = append(g.marks, m)
				}
			}
		}
		slices.SortStableFunc(g.segs, func(a, b segment) int { return segRank[a.class] - segRank[b.class] })
		out = append(out, g)
	}
	return out
}

// partitionLane is the cut in force over time, from each net verb's
// state.
func partitionLane(events []control.Event, nodes []string, end time.Duration) *lane {
	l := &lane{name: "partition"}
	var cur *control.Event
	flush := func(to time.Duration) {
		if cur == nil {
			return
		}
		text := clusters(cur.Net)
		if cl := cur.Net.Partition.Clusters; cl != nil {
			var alone []string
			for _, n := range nodes {
				if !slices.ContainsFunc(cl, func(c []string) bool { return slices.Contains(c, n) }) {
					alone = append(alone, n)
				}
			}
			if len(alone) > 0 {
				text += " cut off: " + strings.Join(alone, " ")
			}
		}
		class := "cut"
		if text == "full mesh" {
			class = "mesh"
		}
		l.segs = append(l.segs, segment{from: cur.Mono, to: to, class: class, label: text, title: describe(*cur)})
	}
	for i, e := range events {
		if e.Net == nil {
			continue
		}
		flush(e.Mono)
		cur = &events[i]
	}
	flush(end)
	return l
}

// stepsLane are the fault schedule's steps.
func stepsLane(events []control.Event) *lane {
	l := &lane{name: "fault steps"}
	for _, e := range events {
		if e.Kind != control.EventFaultStep || e.Verb == "" {
			continue
		}
		class := "fault"
		if strings.HasPrefix(e.Text, "heal") {
			class = "heal"
		}
		l.marks = append(l.marks, mark{at: e.Mono, class: class, label: e.Verb, title: describe(e)})
	}
	return l
}

// notesLane are the annotations.
func notesLane(events []control.Event) *lane {
	l := &lane{name: "annotations"}
	for _, e := range events {
		if e.Kind != control.EventAnnotation {
			continue
		}
		label := e.Text
		if e.Node != "" {
			label = e.Node + ": " + e.Text
		}
		l.marks = append(l.marks, mark{at: e.Mono, class: "note", label: label, title: describe(e)})
	}
	return l
}

func drawTable(b *strings.Builder, events []control.Event) {
	b.WriteString(`<h2 style="font-size:15px;margin-top:18px">Every event</h2>
<table><thead><tr><th>#</th><th>time</th><th>kind</th><th>node</th><th>what</th><th>wall clock</th></tr></thead><tbody>
`)
	for _, e := range events {
		var what []string
		if e.Code != nil {
			what = append(what, fmt.Sprintf("code %d", *e.Code))
		}
		if e.Pid != 0 {
			what = append(what, fmt.Sprintf("pid %d", e.Pid))
		}
		if e.Verb != "" {
			what = append(what, e.Verb)
		}
		if e.Net != nil {
			what = append(what, "partition: "+clusters(e.Net))
		}
		if e.Faults != nil {
			what = append(what, "faults: "+faultText(*e.Faults))
		}
		if e.Text != "" {
			what = append(what, e.Text)
		}
		fmt.Fprintf(b, "<tr class=\"%s\"><td>%d</td><td>%.3fs</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>\n",
			html.EscapeString(string(e.Kind)), e.Seq, e.Mono.Seconds(), html.EscapeString(string(e.Kind)), html.EscapeString(e.Node),
			html.EscapeString(strings.Join(what, "; ")), e.Time.Format("15:04:05.000"))
	}
	b.WriteString("</tbody></table>\n")
}
