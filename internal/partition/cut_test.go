package partition

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func nodeNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("n%d", i+1)
	}
	return out
}

// checkCut compares the compiled cut with Blocked, pair by pair.
func checkCut(t *testing.T, what string, s State, nodes []string) Cut {
	t.Helper()
	c := s.Compile(nodes)
	blocked := map[[2]string]bool{}
	for _, p := range s.Blocked(nodes) {
		blocked[p] = true
	}
	for i, a := range nodes {
		for j, b := range nodes {
			if i == j {
				continue
			}
			if c.Reaches(i, j) == blocked[[2]string{a, b}] {
				t.Fatalf("%s: %s -> %s: cut reaches %v, Blocked says blocked %v\nstate %+v\ncut %+v", what, a, b, c.Reaches(i, j), blocked[[2]string{a, b}], s, c)
			}
		}
	}
	return c
}

// TestCompileMatchesBlocked: the classes and ranges cut exactly the pairs
// of the spec's pairwise model, for every verb at several sizes, random
// overlapping splits, and drops on top of clusters.
func TestCompileMatchesBlocked(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{2, 3, 4, 5, 7, 15, 40} {
		nodes := nodeNames(n)
		specs := []struct {
			verb string
			args []string
		}{
			{"fullmesh", nil}, {"isolate", []string{nodes[n-1]}}, {"drop", []string{nodes[0], nodes[n-1]}},
			{"halves", nil}, {"random-node", nil}, {"split", []string{nodes[0], "--", nodes[n-1]}},
		}
		if n >= 3 {
			specs = append(specs, struct {
				verb string
				args []string
			}{"bridge", nil}, struct {
				verb string
				args []string
			}{"majorities-ring", nil})
		}
		for _, sp := range specs {
			for seed := uint64(1); seed <= 3; seed++ {
				s, err := Parse(sp.verb, sp.args, nodes, Options{Seed: seed})
				if err != nil {
					t.Fatal(err)
				}
				checkCut(t, fmt.Sprintf("%s %v at %d", sp.verb, sp.args, n), s, nodes)
			}
		}
		for k := 0; k < 20; k++ {
			var clusters [][]string
			for c := 0; c < 1+r.IntN(5); c++ {
				var cl []string
				for _, nd := range nodes {
					if r.IntN(3) == 0 {
						cl = append(cl, nd)
					}
				}
				clusters = append(clusters, cl)
			}
			s := State{Verb: "split", Clusters: clusters}
			if k%2 == 0 {
				s.Drops = [][2]string{{nodes[r.IntN(n)], nodes[r.IntN(n)]}}
				if s.Drops[0][0] == s.Drops[0][1] {
					s.Drops = nil
				}
			}
			if k%5 == 0 {
				s.Clusters = nil
			}
			checkCut(t, fmt.Sprintf("random state %d at %d", k, n), s, nodes)
		}
	}
}

// TestCompileIsLinear: at 1000 nodes, majorities-ring compiles to at most
// two ranges a node and halves or isolate to a handful, however many pairs
// they cut.
func TestCompileIsLinear(t *testing.T) {
	nodes := nodeNames(1000)
	for _, tc := range []struct {
		verb   string
		args   []string
		ranges int
	}{
		{"majorities-ring", nil, 2 * 1000},
		{"halves", nil, 2},
		{"isolate", []string{"n7"}, 2},
		{"random-node", nil, 2},
		{"bridge", nil, 2},
	} {
		s, err := Parse(tc.verb, tc.args, nodes, Options{Seed: 42})
		if err != nil {
			t.Fatal(err)
		}
		c := s.Compile(nodes)
		if len(c.Blocked) > tc.ranges || len(c.Blocked) == 0 {
			t.Errorf("%s of 1000: %d ranges, want 1 to %d", tc.verb, len(c.Blocked), tc.ranges)
		}
	}
}
