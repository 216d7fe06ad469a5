// Package partition turns the verbs of `nsrun net` into a whole network
// state: which node may send to which, and which nodes are cut from the
// uplink. Specs are pure data, computed and validated without root; package
// nft turns a State into rules.
//
// Semantics follow vagga's network-testing verbs: a spec describes the
// whole state (applying one twice changes nothing, each replaces the last),
// nodes always keep reaching their bridge, and connectivity is symmetric
// except for `drop`.
package partition

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
)

// State is the complete partition of a run.
type State struct {
	// Verb and Args are what produced the state, for `net show`.
	Verb string   `json:"verb"`
	Args []string `json:"args,omitempty"`
	// Clusters, when set, are the groups whose members reach each other; a
	// node in no cluster reaches nobody. Nil means everyone reaches everyone.
	Clusters [][]string `json:"clusters,omitempty"`
	// Drops are one-way cuts [from, to], on top of the clusters.
	Drops [][2]string `json:"drops,omitempty"`
	// UplinkCut are nodes that cannot reach the host or the outside.
	UplinkCut []string `json:"uplink_cut,omitempty"`
}

// Fullmesh is the healed state.
func Fullmesh() State { return State{Verb: "fullmesh"} }

// Blocked lists every ordered pair [from, to] of distinct nodes that may
// not send to each other, sorted. It is the spec's own model of who
// reaches whom, pair by pair (Compile gives the same cut in classes).
func (s State) Blocked(nodes []string) [][2]string {
	sorted := slices.Clone(nodes)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	drops := map[[2]string]bool{}
	for _, d := range s.Drops {
		drops[d] = true
	}
	var member map[string]bitset
	if s.Clusters != nil {
		member = s.membership(sorted)
	}
	var out [][2]string
	for _, a := range sorted {
		for _, b := range sorted {
			if a == b {
				continue
			}
			p := [2]string{a, b}
			if member != nil && !member[a].meets(member[b]) || drops[p] {
				out = append(out, p)
				delete(drops, p)
			}
		}
	}
	if len(drops) > 0 { // drops of nodes not among nodes
		for p := range drops {
			out = append(out, p)
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i][0] != out[j][0] {
				return out[i][0] < out[j][0]
			}
			return out[i][1] < out[j][1]
		})
	}
	return out
}

func splitClusters(args []string) [][]string {
	var out [][]string
	cur := []string{}
	for _, a := range args {
		if a == "--" {
			out = append(out, cur)
			cur = []string{}
			continue
		}
		cur = append(cur, a)
	}
	return append(out, cur)
}

func firstDuplicate(xs []string) string {
	seen := map[string]bool{}
	for _, x := range xs {
		if seen[x] {
			return x
		}
		seen[x] = true
	}
	return ""
}

// jepsen computes Jepsen's partition shapes over nodes, shuffled by the
// seed (so that the same seed gives the same cut).
func jepsen(verb string, nodes []string, o Options) (State, error) {
	if len(nodes) < 2 {
		return State{}, fmt.Errorf("%s needs at least two nodes", verb)
	}
	seed := o.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	shuffled := append([]string(nil), nodes...)
	sort.Strings(shuffled)
	r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	s := State{Verb: verb, Args: []string{fmt.Sprintf("--seed=%d", seed)}}
	n := len(shuffled)
	switch verb {
	case "halves":
		// Two halves; the first has the extra node.
		h := (n + 1) / 2
		s.Clusters = [][]string{shuffled[:h], shuffled[h:]}
	case "bridge":
		// Two halves that share one node, the bridge.
		if n < 3 {
			return State{}, fmt.Errorf("bridge needs at least three nodes")
		}
		h := n / 2
		s.Clusters = [][]string{shuffled[:h+1], shuffled[h:]}
	case "random-node":
		s.Clusters = [][]string{shuffled[1:]}
	case "majorities-ring":
		// Every node sees a majority of the ring around it; no two nodes
		// see the same majority.
		if n < 3 {
			return State{}, fmt.Errorf("majorities-ring needs at least three nodes")
		}
		// Node i sees the r nearest nodes on each side of the ring: itself
		// and 2r others, a majority; pairs further apart are cut both ways.
		// Two nodes are at most r apart exactly when one window of r+1
		// neighbours on the ring holds both: the windows are the clusters,
		// n of them (never the O(n²) pairs they cut).
		r := n / 2 / 2
		if 2*r+1 <= n/2 {
			r++
		}
		for i := 0; i < n; i++ {
			w := make([]string, 0, r+1)
			for k := 0; k <= r; k++ {
				w = append(w, shuffled[(i+k)%n])
			}
			s.Clusters = append(s.Clusters, w)
		}
	}
	if o.Uplink {
		s.UplinkCut = append([]string(nil), nodes...)
	}
	return s, nil
}

// Reach reports whether from may send to to under s.
func (s State) Reach(nodes []string, from, to string) bool {
	if from == to || slices.Contains(s.Drops, [2]string{from, to}) {
		return from == to
	}
	if s.Clusters == nil {
		return true
	}
	m := s.membership([]string{from, to})
	return m[from].meets(m[to])
}

// Group is a set of sources cut from the same destinations: one rule.
type Group struct {
	From, To []string
}

// Groups returns the cuts of s as groups, computed from cluster membership
// without listing every pair: nodes in the same clusters share a group,
// and a one-way drop splits its source off. A partition into k clusters
// gives at most k+1 groups, in O(nodes·k) work, however many pairs they
// cut. The groups say exactly what Blocked says.
func (s State) Groups(nodes []string) []Group {
	if s.Clusters == nil && len(s.Drops) == 0 {
		return nil
	}
	// Membership signature of each node.
	member := map[string][]int{}
	for i, c := range s.Clusters {
		for _, n := range c {
			member[n] = append(member[n], i)
		}
	}
	sigOf := map[string]string{}
	bySig := map[string][]string{}
	var sigs []string
	for _, n := range nodes {
		sig := "*" // everyone reaches everyone
		if s.Clusters != nil {
			sig = fmt.Sprint(member[n])
		}
		sigOf[n] = sig
		if _, ok := bySig[sig]; !ok {
			sigs = append(sigs, sig)
		}
		bySig[sig] = append(bySig[sig], n)
	}
	sort.Strings(sigs)
	memberOfSig := func(sig string) []int { return member[bySig[sig][0]] }
	blockedSig := func(a, b string) bool {
		if s.Clusters == nil {
			return false
		}
		for _, i := range memberOfSig(a) {
			for _, j := range memberOfSig(b) {
				if i == j {
					return false
				}
			}
		}
		return true
	}
	to := map[string][]string{}
	for _, a := range sigs {
		for _, b := range sigs {
			if blockedSig(a, b) {
				to[a] = append(to[a], bySig[b]...)
			}
		}
	}
	// One-way drops: their sources get groups of their own.
	extra := map[string][]string{}
	for _, d := range s.Drops {
		extra[d[0]] = append(extra[d[0]], d[1])
	}
	var out []Group
	for _, sig := range sigs {
		var from []string
		for _, n := range bySig[sig] {
			if _, ok := extra[n]; !ok {
				from = append(from, n)
			}
		}
		if len(from) > 0 && len(to[sig]) > 0 {
			out = append(out, Group{From: from, To: without(to[sig], "")})
		}
	}
	var srcs []string
	for n := range extra {
		srcs = append(srcs, n)
	}
	sort.Strings(srcs)
	for _, n := range srcs {
		dst := append(append([]string{}, to[sigOf[n]]...), extra[n]...)
		out = append(out, Group{From: []string{n}, To: without(dst, n)})
	}
	return out
}

// without returns xs less x, each element once.
func without(xs []string, x string) []string {
	seen := map[string]bool{x: true}
	var out []string
	for _, y := range xs {
		if !seen[y] {
			seen[y] = true
			out = append(out, y)
		}
	}
	return out
}
