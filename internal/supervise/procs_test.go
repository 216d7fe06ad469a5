package supervise

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestScansFresh: every caller gets a scan begun after it asked, and
// callers that ask while one scan runs share the next one.
func TestScansFresh(t *testing.T) {
	var n atomic.Int64
	release := make(chan struct{})
	s := newScans(func() map[nsID][]int {
		k := n.Add(1)
		if k == 1 {
			<-release // the first scan is slow
		}
		return map[nsID][]int{{ino: uint64(k)}: nil}
	})
	first := make(chan map[nsID][]int)
	go func() { first <- s.fresh() }()
	for n.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	// Asked while scan 1 runs: scan 1 began before, so none of these may
	// have it; they share the next ones (scan 2, or 3 for a goroutine
	// that came late).
	var wg sync.WaitGroup
	got := make([]map[nsID][]int, 20)
	for i := range got {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = s.fresh() }()
	}
	time.Sleep(20 * time.Millisecond) // let them all wait
	close(release)
	if r := <-first; !hasKey(r, 1) {
		t.Fatalf("first caller got %v, want scan 1", r)
	}
	wg.Wait()
	for i, r := range got {
		if hasKey(r, 1) {
			t.Errorf("caller %d got scan 1, begun before it asked", i)
		}
	}
	k := n.Load()
	if k > 5 {
		t.Errorf("%d scans for 21 callers: not shared", k)
	}
	// A later caller gets a new scan.
	if r := s.fresh(); !hasKey(r, uint64(k+1)) {
		t.Errorf("a later caller got %v, want scan %d", r, k+1)
	}
}

func hasKey(m map[nsID][]int, ino uint64) bool {
	_, ok := m[nsID{ino: ino}]
	return ok
}
