package ipam

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
)

func TestLeases(t *testing.T) {
	alive := map[string]bool{}
	var mu sync.Mutex
	l := &Leases{Dir: t.TempDir(), Pool: netip.MustParsePrefix("172.18.192.0/28"), Alive: func(o string) bool {
		mu.Lock()
		defer mu.Unlock()
		return alive[o]
	}}
	seen := map[netip.Prefix]bool{}
	for _, owner := range []string{"a", "b", "c", "d"} {
		alive[owner] = true
		p, err := l.Acquire(owner)
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] || p.Bits() != 30 || !l.Pool.Contains(p.Addr()) {
			t.Fatalf("lease %s for %s: duplicate or outside the pool", p, owner)
		}
		seen[p] = true
	}
	alive["e"] = true
	if _, err := l.Acquire("e"); err == nil || !strings.Contains(err.Error(), "all 4 uplinks of 172.18.192.0/28 are used") {
		t.Fatalf("exhausted pool: err = %v", err)
	}
	// b dies: its lease goes to e.
	alive["b"] = false
	p, err := l.Acquire("e")
	if err != nil {
		t.Fatal(err)
	}
	held, _ := l.Held()
	if held[p] != "e" || len(held) != 4 {
		t.Errorf("after reclaim: %v", held)
	}
	if err := l.Release(p, "e"); err != nil {
		t.Fatal(err)
	}
	alive["c"] = false
	removed, err := l.GC()
	if err != nil || len(removed) != 1 {
		t.Errorf("GC removed %v, %v; want c's lease", removed, err)
	}
	if held, _ := l.Held(); len(held) != 2 {
		t.Errorf("after release and GC: %v", held)
	}
}

func TestLeasesConcurrent(t *testing.T) {
	l := &Leases{Dir: t.TempDir(), Pool: netip.MustParsePrefix("172.18.192.0/19"), Alive: func(string) bool { return true }}
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[netip.Prefix]int{}
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			p, err := l.Acquire(string(rune('A' + i%26)))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			got[p]++
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	if len(got) != 100 {
		t.Errorf("100 concurrent leases gave %d distinct blocks", len(got))
	}
}
