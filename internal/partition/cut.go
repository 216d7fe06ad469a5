package partition

import (
	"slices"
	"strings"
)

// Cut is a State compiled for rules whose size grows with the number of
// nodes, not with the number of pairs they cut: every node gets a class
// (nodes that every cut treats alike share one), and each class lists the
// ranges of classes it may not send to. Classes are numbered in the order
// the state's clusters name their nodes, so that a cluster's members get
// neighbouring numbers: a partition into k clusters blocks each class in at
// most two ranges, and majorities-ring, whose clusters are windows of the
// ring, in at most two ranges a node.
type Cut struct {
	// Nodes are the run's nodes and Class[i] the class of Nodes[i], from 0
	// to Classes-1.
	Nodes   []string
	Class   []int
	Classes int
	// Blocked are the class ranges that may not send to each other,
	// sorted by From, then Lo.
	Blocked []Block
}

// Block says that class From may not send to the classes Lo to Hi
// (inclusive).
type Block struct{ From, Lo, Hi int }

// bitset is a set of cluster indexes.
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (b bitset) set(i int) { b[i/64] |= 1 << (i % 64) }

func (b bitset) meets(o bitset) bool {
	for i := range b {
		if b[i]&o[i] != 0 {
			return true
		}
	}
	return false
}

func (b bitset) key() string {
	var s strings.Builder
	for _, w := range b {
		for i := 0; i < 8; i++ {
			s.WriteByte(byte(w >> (8 * i)))
		}
	}
	return s.String()
}

// membership returns each node's set of clusters.
func (s State) membership(nodes []string) map[string]bitset {
	m := make(map[string]bitset, len(nodes))
	for _, n := range nodes {
		m[n] = newBitset(len(s.Clusters))
	}
	for i, c := range s.Clusters {
		for _, n := range c {
			if b, ok := m[n]; ok {
				b.set(i)
			}
		}
	}
	return m
}

// Compile computes the Cut of s over the run's nodes. It blocks exactly
// the pairs Blocked lists (and, within a class that is in no cluster, a
// node from itself, which no packet between two nodes meets).
func (s State) Compile(nodes []string) Cut {
	c := Cut{Nodes: slices.Clone(nodes), Class: make([]int, len(nodes))}
	if s.Clusters == nil && len(s.Drops) == 0 {
		if len(nodes) > 0 {
			c.Classes = 1
		}
		return c
	}
	// The order classes are numbered in: as the clusters name the nodes,
	// then the nodes in no cluster.
	index := make(map[string]int, len(nodes))
	for i, n := range nodes {
		index[n] = i
	}
	order := make([]int, 0, len(nodes))
	placed := make([]bool, len(nodes))
	for _, cl := range s.Clusters {
		for _, n := range cl {
			if i, ok := index[n]; ok && !placed[i] {
				placed[i] = true
				order = append(order, i)
			}
		}
	}
	for i := range nodes {
		if !placed[i] {
			order = append(order, i)
		}
	}
	member := s.membership(nodes)
	// A node in a drop has a class of its own.
	alone := map[string]bool{}
	for _, d := range s.Drops {
		alone[d[0]], alone[d[1]] = true, true
	}
	classOf := map[string]int{}
	var classBits []bitset
	var classAlone []bool
	for _, i := range order {
		n := nodes[i]
		key := member[n].key()
		if alone[n] {
			key = "\x00" + n
		}
		cl, ok := classOf[key]
		if !ok {
			cl = len(classBits)
			classOf[key] = cl
			classBits = append(classBits, member[n])
			classAlone = append(classAlone, alone[n])
		}
		c.Class[i] = cl
	}
	c.Classes = len(classBits)
	drops := map[[2]int]bool{}
	for _, d := range s.Drops {
		a, okA := index[d[0]]
		b, okB := index[d[1]]
		if okA && okB {
			drops[[2]int{c.Class[a], c.Class[b]}] = true
		}
	}
	blocked := func(a, b int) bool {
		if drops[[2]int{a, b}] {
			return true
		}
		if s.Clusters == nil {
			return false
		}
		if a == b && classAlone[a] {
			return false // one node: never blocked from itself
		}
		return !classBits[a].meets(classBits[b])
	}
	for a := 0; a < c.Classes; a++ {
		lo := -1
		for b := 0; b <= c.Classes; b++ {
			in := b < c.Classes && blocked(a, b)
			switch {
			case in && lo < 0:
				lo = b
			case !in && lo >= 0:
				c.Blocked = append(c.Blocked, Block{From: a, Lo: lo, Hi: b - 1})
				lo = -1
			}
		}
	}
	return c
}

// Reaches reports whether node i may send to node j under the cut.
func (c Cut) Reaches(i, j int) bool {
	if i == j {
		return true
	}
	a, b := c.Class[i], c.Class[j]
	k, _ := slices.BinarySearchFunc(c.Blocked, a, func(x Block, a int) int { return x.From - a })
	for ; k < len(c.Blocked) && c.Blocked[k].From == a; k++ {
		if b >= c.Blocked[k].Lo && b <= c.Blocked[k].Hi {
			return false
		}
	}
	return true
}
