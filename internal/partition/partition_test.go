package partition

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

var five = []string{"n1", "n2", "n3", "n4", "n5"}

// matrix renders who reaches whom, row = from.
func matrix(s State, nodes []string) string {
	var b strings.Builder
	for _, a := range nodes {
		for _, c := range nodes {
			switch {
			case a == c:
				b.WriteByte('.')
			case s.Reach(nodes, a, c):
				b.WriteByte('1')
			default:
				b.WriteByte('0')
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func mustParse(t *testing.T, verb string, args ...string) State {
	t.Helper()
	s, err := Parse(verb, args, five, Options{Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerbs(t *testing.T) {
	for _, tc := range []struct {
		verb string
		args []string
		want string
	}{
		{"fullmesh", nil, ".1111\n1.111\n11.11\n111.1\n1111.\n"},
		{"isolate", []string{"n1", "n3"}, ".0000\n0.010\n00.00\n010.1\n01010\n"[:0] + ".0000\n0.011\n00.00\n010.1\n0101.\n"},
		{"disjoint", []string{"n1", "n2", "--", "n3", "n4", "n5"}, ".1000\n1.000\n00.11\n001.1\n0011.\n"},
		{"split", []string{"n1", "n2", "--", "n2", "n3"}, ".1000\n1.100\n01.00\n000.0\n0000.\n"},
		{"drop", []string{"n1", "n2"}, ".0111\n1.111\n11.11\n111.1\n1111.\n"},
	} {
		if got := matrix(mustParse(t, tc.verb, tc.args...), five); got != tc.want {
			t.Errorf("%s %v:\n%s\nwant\n%s", tc.verb, tc.args, got, tc.want)
		}
	}
}

func TestJepsenShapes(t *testing.T) {
	reach := func(s State, n string) int {
		c := 0
		for _, o := range five {
			if o != n && s.Reach(five, n, o) && s.Reach(five, o, n) {
				c++
			}
		}
		return c
	}
	h := mustParse(t, "halves")
	if len(h.Clusters) != 2 || len(h.Clusters[0]) != 3 || len(h.Clusters[1]) != 2 {
		t.Errorf("halves: %v", h.Clusters)
	}
	if again := mustParse(t, "halves"); strings.Join(again.Clusters[0], ",") != strings.Join(h.Clusters[0], ",") {
		t.Error("the same seed gave another cut")
	}
	// seeing counts the nodes that reach k others both ways.
	seeing := func(s State, k int) int {
		c := 0
		for _, n := range five {
			if reach(s, n) == k {
				c++
			}
		}
		return c
	}
	b := mustParse(t, "bridge")
	if bridges := seeing(b, 4); bridges != 1 {
		t.Errorf("bridge: %d nodes see everyone, want exactly 1\n%s", bridges, matrix(b, five))
	}
	if alone := seeing(mustParse(t, "random-node"), 0); alone != 1 {
		t.Errorf("random-node: %d isolated nodes", alone)
	}
	mr := mustParse(t, "majorities-ring")
	views := map[string]bool{}
	for _, n := range five {
		if reach(mr, n)+1 != 3 {
			t.Errorf("majorities-ring: %s sees %d nodes (itself included), want a majority of 3\n%s", n, reach(mr, n)+1, matrix(mr, five))
		}
		var v []string
		for _, o := range five {
			if o == n || mr.Reach(five, n, o) {
				v = append(v, o)
			}
		}
		views[strings.Join(v, ",")] = true
	}
	if len(views) != 5 {
		t.Errorf("majorities-ring: %d distinct views, want 5", len(views))
	}
}

func TestBadSpecs(t *testing.T) {
	for _, tc := range []struct {
		verb string
		args []string
		want string
	}{
		{"isolate", []string{"zz"}, `no node "zz" in this run`},
		{"isolate", nil, "name the nodes"},
		{"disjoint", []string{"n1", "n2", "--", "n2", "n3", "n4", "n5"}, `"n2" is in two clusters`},
		{"disjoint", []string{"n1", "n2", "--", "n3"}, `node "n4" is in no cluster`},
		{"disjoint", []string{"n1", "--", "--", "n2"}, "empty cluster"},
		{"split", []string{"n1"}, "at least two clusters"},
		{"drop", []string{"n1"}, "write nsrun net drop FROM TO"},
		{"drop", []string{"n1", "n1"}, "both"},
		{"fullmesh", []string{"n1"}, "takes no nodes"},
		{"halves", []string{"n1"}, "takes no nodes"},
		{"frob", nil, "unknown verb"},
	} {
		if _, err := Parse(tc.verb, tc.args, five, Options{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: %v, want %q", tc.verb, tc.args, err, tc.want)
		}
	}
}

func TestBlockedScales(t *testing.T) {
	var nodes []string
	for i := 0; i < 250; i++ {
		nodes = append(nodes, "n"+string(rune('a'+i/26))+string(rune('a'+i%26)))
	}
	s, err := Parse("halves", nil, nodes, Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(s.Blocked(nodes)); got != 2*125*125 {
		t.Errorf("halves of 250: %d blocked pairs, want %d", got, 2*125*125)
	}
}

// TestGroupsMatchBlocked: the groups cut exactly the pairs Blocked lists,
// for every verb and shape.
func TestGroupsMatchBlocked(t *testing.T) {
	var nodes []string
	for i := 1; i <= 9; i++ {
		nodes = append(nodes, fmt.Sprintf("n%d", i))
	}
	specs := []struct {
		verb string
		args []string
	}{
		{"fullmesh", nil}, {"isolate", []string{"n1"}}, {"isolate", []string{"n2", "n5", "n9"}},
		{"disjoint", []string{"n1", "n2", "n3", "--", "n4", "n5", "--", "n6", "n7", "n8", "n9"}},
		{"split", []string{"n1", "n2", "--", "n2", "n3", "--", "n3", "n4", "n9"}},
		{"drop", []string{"n3", "n7"}}, {"halves", nil}, {"bridge", nil}, {"random-node", nil}, {"majorities-ring", nil},
	}
	for _, sp := range specs {
		for seed := uint64(1); seed <= 5; seed++ {
			st, err := Parse(sp.verb, sp.args, nodes, Options{Seed: seed})
			if err != nil {
				t.Fatal(err)
			}
			want := map[[2]string]bool{}
			for _, p := range st.Blocked(nodes) {
				want[p] = true
			}
			got := map[[2]string]bool{}
			for _, g := range st.Groups(nodes) {
				for _, a := range g.From {
					for _, b := range g.To {
						if a != b {
							got[[2]string{a, b}] = true
						}
					}
				}
			}
			if fmt.Sprint(sortedPairs(got)) != fmt.Sprint(sortedPairs(want)) {
				t.Errorf("%s %v seed %d: groups cut %v\nwant %v", sp.verb, sp.args, seed, sortedPairs(got), sortedPairs(want))
			}
		}
	}
	// Drops on top of clusters.
	st := State{Clusters: [][]string{{"n1", "n2"}, {"n3"}}, Drops: [][2]string{{"n1", "n2"}}}
	small := []string{"n1", "n2", "n3"}
	got := map[[2]string]bool{}
	for _, g := range st.Groups(small) {
		for _, a := range g.From {
			for _, b := range g.To {
				if a != b {
					got[[2]string{a, b}] = true
				}
			}
		}
	}
	want := map[[2]string]bool{}
	for _, p := range st.Blocked(small) {
		want[p] = true
	}
	if fmt.Sprint(sortedPairs(got)) != fmt.Sprint(sortedPairs(want)) {
		t.Errorf("clusters+drop: %v want %v", sortedPairs(got), sortedPairs(want))
	}
}

func sortedPairs(m map[[2]string]bool) []string {
	var out []string
	for p := range m {
		out = append(out, p[0]+">"+p[1])
	}
	sort.Strings(out)
	return out
}
