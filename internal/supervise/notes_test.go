package supervise

import (
	"testing"
	"time"
)

// TestNoteLimiter: a flood from a node keeps a burst, then the rate; a
// quiet node gets its burst back; nothing passes the total.
func TestNoteLimiter(t *testing.T) {
	var l noteLimiter
	now := time.Unix(1000, 0)
	kept := 0
	for range 10 * notesBurst {
		if l.allow(now) {
			kept++
		}
	}
	if kept != notesBurst || l.dropped != 9*notesBurst {
		t.Fatalf("flood at one instant: kept %d, dropped %d; want %d kept", kept, l.dropped, notesBurst)
	}
	// One second later, the rate's worth more.
	now = now.Add(time.Second)
	kept = 0
	for range 10 * notesBurst {
		if l.allow(now) {
			kept++
		}
	}
	if kept != notesPerSecond {
		t.Fatalf("a second later: kept %d, want %d", kept, notesPerSecond)
	}
	// However slow, no more than maxNotes in all.
	total := notesBurst + notesPerSecond
	for range 2 * maxNotes {
		now = now.Add(time.Second)
		if l.allow(now) {
			total++
		}
	}
	if total != maxNotes {
		t.Fatalf("kept %d in all, want %d", total, maxNotes)
	}
}
