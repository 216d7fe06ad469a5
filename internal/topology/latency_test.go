package topology

import (
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/latency"
)

// latencyFile is the example, which is the syntax's contract.
const latencyFile = `nodes:
  n1: {ip: 172.18.0.1}
  n2: {ip: 172.18.0.2}
  n3: {ip: 172.18.0.3}
  n4: {ip: 172.18.0.4}
  n5: {ip: 172.18.0.5}
regions:                 # names for groups of nodes; a node is in at most one region
  us: [n1, n2]
  eu: [n3]
  ap: [n4, n5]
latency:                 # one-way delay added between two regions or two nodes, each direction
  us <-> eu: 40ms
  us <-> ap: 75ms ±5ms   # with jitter
  eu -> ap: 110ms        # one direction only
  ap -> eu: 120ms
  n1 <-> n2: 1ms         # a node pair overrides its regions' value
`

func TestParseLatency(t *testing.T) {
	top, err := Parse("nsrun.yaml", t.TempDir(), []byte(latencyFile))
	if err != nil {
		t.Fatal(err)
	}
	m := top.Latency
	if len(m.Regions) != 3 || strings.Join(m.Regions["ap"], " ") != "n4 n5" {
		t.Errorf("regions: %v", m.Regions)
	}
	want := []string{"us <-> eu: 40ms", "us <-> ap: 75ms ±5ms", "eu -> ap: 110ms", "ap -> eu: 120ms", "n1 <-> n2: 1ms"}
	if len(m.Rules) != len(want) {
		t.Fatalf("rules: %v", m.Rules)
	}
	for i, r := range m.Rules {
		if r.String() != want[i] {
			t.Errorf("rule %d: %q, want %q", i, r, want[i])
		}
	}
	got := m.Resolve([]string{"n1", "n2", "n3", "n4", "n5"})
	if got[latency.Pair{From: "n5", To: "n3"}] != (latency.Value{Delay: 120 * time.Millisecond}) {
		t.Errorf("n5 -> n3: %v", got[latency.Pair{From: "n5", To: "n3"}])
	}
}

// TestLatencyBadInput: every bad input the issue lists is refused at its
// file:line:col, naming the field and the fix.
func TestLatencyBadInput(t *testing.T) {
	for _, c := range []struct {
		old, new string
		want     string
	}{
		{"  eu: [n3]", "  eu: [n9]", `nsrun.yaml:9:8: regions.eu: no node named "n9"`},
		{"  eu: [n3]", "  eu: [n3, n1]", "nsrun.yaml:9:12: regions.eu: node n1 is already in region us; a node is in at most one region"},
		{"  us <-> eu: 40ms", "  us <-> mars: 40ms", `nsrun.yaml:12:3: latency: "mars" is neither a region nor a node`},
		{"  ap -> eu: 120ms", "  eu <- ap: 120ms", `nsrun.yaml:15:3: latency: "eu <- ap": write A <-> B (both ways) or A -> B (one way)`},
		{"  ap -> eu: 120ms", "  eu -> us: 120ms", "nsrun.yaml:15:3: latency: eu -> us is given twice, as 40ms (us <-> eu: 40ms) and 120ms; give each pair one value"},
		{"  us <-> eu: 40ms", "  us <-> eu: -40ms", "nsrun.yaml:12:14: latency.us <-> eu: delay -40ms is negative"},
		{"  us <-> eu: 40ms", "  us <-> eu: 61s", "nsrun.yaml:12:14: latency.us <-> eu: delay 1m1s is over 1m0s; write a shorter delay"},
		{"75ms ±5ms", "5ms ±75ms", "nsrun.yaml:13:14: latency.us <-> ap: jitter 75ms is larger than the delay 5ms"},
		{"  us <-> eu: 40ms", "  us <-> eu: 40 ms", `nsrun.yaml:12:14: latency.us <-> eu: "40 ms": write a duration such as 40ms`},
		{"  us: [n1, n2]", "  n3: [n1, n2]", `nsrun.yaml:8:3: regions.n3: "n3" is also a node's name; name the region differently`},
	} {
		y := strings.Replace(latencyFile, c.old, c.new, 1)
		if y == latencyFile {
			t.Fatalf("%q not in the file", c.old)
		}
		_, err := Parse("nsrun.yaml", t.TempDir(), []byte(y))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s -> %s: %v\nwant %s", c.old, c.new, err, c.want)
		}
	}
}
