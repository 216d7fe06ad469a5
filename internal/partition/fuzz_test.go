package partition

import (
	"slices"
	"strings"
	"testing"
)

// FuzzSpec: any verb and arguments over five nodes either are refused with
// an error or give a state that keeps the partition rules: nobody is cut
// from itself, connectivity is symmetric except for drop, the groups say
// exactly what Blocked says, isolate cuts exactly its nodes, and the same
// spec gives the same state.
func FuzzSpec(f *testing.F) {
	for _, s := range []string{
		"isolate n1", "isolate n1 n3", "disjoint n1 n2 -- n3 n4 n5", "split n1 n2 -- n2 n3", "split n1 -- -- n2",
		"drop n1 n2", "fullmesh", "halves", "bridge", "majorities-ring", "random-node", "isolate zz", "disjoint n1 -- n1",
	} {
		f.Add(s, uint64(7), false)
	}
	f.Add("isolate n2", uint64(1), true)
	f.Fuzz(func(t *testing.T, line string, seed uint64, uplink bool) {
		f := strings.Fields(line)
		if len(f) == 0 {
			return
		}
		sp, err := ParseSpec(f[0], f[1:], Options{Seed: seed, Uplink: uplink})
		if err != nil {
			return
		}
		st, err := sp.State(five)
		if err != nil {
			return
		}
		if st.Verb != f[0] {
			t.Fatalf("%q: state of verb %q", line, st.Verb)
		}
		blocked := st.Blocked(five)
		for _, p := range blocked {
			if p[0] == p[1] {
				t.Fatalf("%q: %s is cut from itself", line, p[0])
			}
			if f[0] != "drop" && f[0] != "majorities-ring" && !slices.Contains(blocked, [2]string{p[1], p[0]}) {
				t.Fatalf("%q: %s -> %s cut one way only", line, p[0], p[1])
			}
		}
		var fromGroups [][2]string
		for _, g := range st.Groups(five) {
			for _, a := range g.From {
				for _, b := range g.To {
					if a != b {
						fromGroups = append(fromGroups, [2]string{a, b})
					}
				}
			}
		}
		slices.SortFunc(fromGroups, func(x, y [2]string) int { return strings.Compare(x[0]+" "+x[1], y[0]+" "+y[1]) })
		fromGroups = slices.Compact(fromGroups)
		if !slices.Equal(fromGroups, blocked) {
			t.Fatalf("%q: groups cut %v, Blocked says %v", line, fromGroups, blocked)
		}
		if iso, ok := sp.(Isolate); ok {
			for _, a := range five {
				for _, b := range five {
					cut := a != b && (slices.Contains(iso.Nodes, a) || slices.Contains(iso.Nodes, b))
					if cut == st.Reach(five, a, b) {
						t.Fatalf("%q: %s -> %s reach %v", line, a, b, !cut)
					}
				}
			}
		}
		// Applying a spec twice gives the same state (a shape without a
		// seed picks a random one each time).
		if sh, ok := sp.(Shape); ok && sh.Seed == 0 {
			return
		}
		again, err := sp.State(five)
		if err != nil || !slices.EqualFunc(again.Blocked(five), blocked, func(x, y [2]string) bool { return x == y }) {
			t.Fatalf("%q: a second State differs: %v", line, err)
		}
	})
}
