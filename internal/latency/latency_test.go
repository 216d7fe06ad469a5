package latency

import (
	"strings"
	"testing"
	"time"
)

const ms = time.Millisecond

var nodes = []string{"n1", "n2", "n3", "n4", "n5"}

// issueMatrix is the issue's example.
func issueMatrix() Matrix {
	return Matrix{
		Regions: map[string][]string{"us": {"n1", "n2"}, "eu": {"n3"}, "ap": {"n4", "n5"}},
		Rules: []Rule{
			{From: "us", To: "eu", Both: true, Value: Value{Delay: 40 * ms}},
			{From: "us", To: "ap", Both: true, Value: Value{Delay: 75 * ms, Jitter: 5 * ms}},
			{From: "eu", To: "ap", Value: Value{Delay: 110 * ms}},
			{From: "ap", To: "eu", Value: Value{Delay: 120 * ms}},
			{From: "n1", To: "n2", Both: true, Value: Value{Delay: 1 * ms}},
		},
	}
}

func TestResolve(t *testing.T) {
	m := issueMatrix()
	if err := m.Check(nodes); err != nil {
		t.Fatal(err)
	}
	got := m.Resolve(nodes)
	for p, want := range map[Pair]Value{
		{"n1", "n3"}: {Delay: 40 * ms}, {"n3", "n2"}: {Delay: 40 * ms},
		{"n2", "n5"}: {Delay: 75 * ms, Jitter: 5 * ms}, {"n4", "n1"}: {Delay: 75 * ms, Jitter: 5 * ms},
		{"n3", "n4"}: {Delay: 110 * ms}, {"n5", "n3"}: {Delay: 120 * ms},
		{"n1", "n2"}: {Delay: 1 * ms}, {"n2", "n1"}: {Delay: 1 * ms},
	} {
		if got[p] != want {
			t.Errorf("%v: %v, want %v", p, got[p], want)
		}
	}
	if _, ok := got[Pair{"n4", "n5"}]; ok {
		t.Errorf("n4 -> n5 (one region, no rule) got a delay")
	}
	if len(got) != 18 {
		t.Errorf("%d pairs, want 18 (20 less ap's two)", len(got))
	}
}

func TestParse(t *testing.T) {
	for s, want := range map[string]Value{"40ms": {Delay: 40 * ms}, "75ms ±5ms": {75 * ms, 5 * ms}, "75ms +- 5ms": {75 * ms, 5 * ms}, "0s": {}} {
		if v, err := ParseValue(s); err != nil || v != want {
			t.Errorf("ParseValue(%q) = %v, %v; want %v", s, v, err, want)
		}
	}
	for s, want := range map[string]string{"-5ms": "negative", "61s": "over 1m0s", "5ms ±6ms": "larger than the delay", "soon": "write a duration", "40ms ±x": "jitter after ±"} {
		if _, err := ParseValue(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseValue(%q): %v, want %q", s, err, want)
		}
	}
	if a, b, both, err := ParseKey("us <-> eu"); err != nil || a != "us" || b != "eu" || !both {
		t.Errorf("ParseKey <->: %q %q %v %v", a, b, both, err)
	}
	if a, b, both, err := ParseKey("eu->ap"); err != nil || a != "eu" || b != "ap" || both {
		t.Errorf("ParseKey ->: %q %q %v %v", a, b, both, err)
	}
	for _, s := range []string{"us eu", "us <- eu", "-> eu", "us <-> "} {
		if _, _, _, err := ParseKey(s); err == nil {
			t.Errorf("ParseKey(%q) accepted", s)
		}
	}
}

func TestCheckRefuses(t *testing.T) {
	for _, c := range []struct {
		m    Matrix
		want string
	}{
		{Matrix{Regions: map[string][]string{"us": {"n1", "zz"}}}, `regions.us: no node named "zz"`},
		{Matrix{Regions: map[string][]string{"us": {"n1"}, "eu": {"n1"}}}, "node n1 is already in region eu"},
		{Matrix{Regions: map[string][]string{"n1": {"n2"}}}, `"n1" is also a node's name`},
		{Matrix{Rules: []Rule{{From: "us", To: "n1", Value: Value{Delay: ms}}}}, `"us" is neither a region nor a node`},
		{Matrix{Rules: []Rule{{From: "n1", To: "n2", Both: true, Value: Value{Delay: ms}}, {From: "n2", To: "n1", Value: Value{Delay: 2 * ms}}}}, "n2 -> n1 is given twice"},
		{Matrix{Rules: []Rule{{From: "n1", To: "n2", Value: Value{Delay: 61 * time.Second}}}}, "over 1m0s"},
	} {
		if err := c.m.Check(nodes); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.m, err, c.want)
		}
	}
	// The same value twice is no conflict.
	m := Matrix{Rules: []Rule{{From: "n1", To: "n2", Both: true, Value: Value{Delay: ms}}, {From: "n2", To: "n1", Value: Value{Delay: ms}}}}
	if err := m.Check(nodes); err != nil {
		t.Error(err)
	}
}

func TestWith(t *testing.T) {
	m := issueMatrix().With(Rule{From: "eu", To: "us", Value: Value{Delay: 50 * ms}})
	if err := m.Check(nodes); err != nil {
		t.Fatal(err)
	}
	got := m.Resolve(nodes)
	if got[Pair{"n3", "n1"}] != (Value{Delay: 50 * ms}) || got[Pair{"n1", "n3"}] != (Value{Delay: 40 * ms}) {
		t.Errorf("one direction replaced: eu->us %v, us->eu %v", got[Pair{"n3", "n1"}], got[Pair{"n1", "n3"}])
	}
	m = m.With(Rule{From: "us", To: "eu", Both: true, Value: Value{Delay: 10 * ms}})
	got = m.Resolve(nodes)
	if got[Pair{"n3", "n1"}] != (Value{Delay: 10 * ms}) || got[Pair{"n1", "n3"}] != (Value{Delay: 10 * ms}) {
		t.Errorf("both replaced: %v %v", got[Pair{"n3", "n1"}], got[Pair{"n1", "n3"}])
	}
}
