package linkengine

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Limits of one direction of a spliced link: frames beyond them are
// dropped, as a full queue drops them (netem's limit is 1000 packets).
const (
	maxQueuedFrames = 20000
	maxQueuedBytes  = 32 << 20
)

// maxFlows is how many flows a line remembers before it forgets those
// with no frame waiting.
const maxFlows = 4096

// preciseWait is how long before a frame is due the line stops waiting
// on Go's timer and sleeps in the kernel.
const preciseWait = 2 * time.Millisecond

// frame is one frame held by a delay line.
type frame struct {
	at   time.Time // when it leaves
	seq  uint64    // arrival order, to break ties
	data []byte    // virtio_net_hdr + the frame
}

type frameHeap []frame

func (h frameHeap) Len() int { return len(h) }
func (h frameHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h frameHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *frameHeap) Push(x any)   { *h = append(*h, x.(frame)) }
func (h *frameHeap) Pop() any {
	old := *h
	f := old[len(old)-1]
	old[len(old)-1] = frame{}
	*h = old[:len(old)-1]
	return f
}

// Stats count what one direction of a link did.
type Stats struct {
	Frames     uint64 `json:"frames"`
	Bytes      uint64 `json:"bytes"`
	Dropped    uint64 `json:"dropped_full"` // over the queue's limits
	Reordered  uint64 `json:"reordered,omitempty"`
	Duplicated uint64 `json:"duplicated,omitempty"`
	Corrupted  uint64 `json:"corrupted,omitempty"`
}

// line is one direction of a spliced link: frames wait in time order
// (netem's tfifo) and leave through out when their time comes.
type line struct {
	out  *packetSocket
	wake chan struct{}
	done chan struct{}

	mu     sync.Mutex
	q      frameHeap
	bytes  int
	seq    uint64
	last   map[uint64]time.Time // per flow: when its last frame leaves
	rng    *rand.Rand
	closed bool
	// writing: the sender is writing frames it took off the queue.
	writing bool

	frames, nbytes, dropped, reordered, duplicated, corrupted atomic.Uint64
}

func newLine(out *packetSocket, seed uint64) *line {
	l := &line{out: out, wake: make(chan struct{}, 1), done: make(chan struct{}), last: map[uint64]time.Time{}, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	go l.send()
	return l
}

// put queues data (owned by the line from now on), which arrived now and
// belongs to flow (flowKey), with the faults f.
func (l *line) put(now time.Time, flow uint64, data []byte, f Faults) {
	l.frames.Add(1)
	l.nbytes.Add(uint64(len(data)))
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	if len(l.q) >= maxQueuedFrames || l.bytes+len(data) > maxQueuedBytes {
		l.mu.Unlock()
		l.dropped.Add(1)
		return
	}
	copies := 1
	if f.Duplicate > 0 && l.rng.Float64() < f.Duplicate {
		copies = 2
		l.duplicated.Add(1)
	}
	// frames go out copies times; a duplicate of a corrupted frame goes
	// out intact (dup), as netem duplicates before it corrupts.
	frames, dup := [][]byte{data}, [][]byte(nil)
	if f.Corrupt > 0 && l.rng.Float64() < f.Corrupt {
		// A TCP segmentation frame is cut into the segments a device
		// would send, and one of them gets the bit (netem flips it in
		// the first).
		if segs := segmentTCP(data); segs != nil {
			if len(l.q)+len(segs)*copies > maxQueuedFrames || l.bytes+len(data)*2*copies > maxQueuedBytes {
				l.mu.Unlock()
				l.dropped.Add(1)
				return
			}
			corrupt(segs[l.rng.IntN(len(segs))], l.rng)
			frames = segs
			l.corrupted.Add(1)
		} else {
			intact := data
			if copies > 1 {
				intact = slices.Clone(data)
			}
			if corrupt(data, l.rng) {
				l.corrupted.Add(1)
			}
			data = intact
		}
		if copies > 1 {
			dup = [][]byte{data}
			copies = 1
		}
	}
	at := now
	if f.Delay > 0 {
		d := f.Delay
		if f.Jitter > 0 {
			d += time.Duration(l.rng.NormFloat64() * float64(f.Jitter))
			d = max(d, 0)
		}
		at = now.Add(d)
	}
	if f.Reorder > 0 && f.Delay > 0 && l.rng.Float64() < f.Reorder {
		// Sent at once, ahead of the frames that wait (netem's reorder).
		at = now
		l.reordered.Add(1)
	} else if last, ok := l.last[flow]; ok && at.Before(last) {
		// A frame never overtakes an earlier one of its flow (jitter
		// spreads the delay, it does not reorder a stream).
		at = last
	} else {
		if len(l.last) >= maxFlows {
			for k, t := range l.last {
				if t.Before(now) {
					delete(l.last, k)
				}
			}
		}
		l.last[flow] = at
	}
	if at.Equal(now) && copies == 1 && dup == nil && len(l.q) == 0 && !l.writing {
		// Nothing waits and nothing is being written: the frame leaves
		// at once from here, without waking the sender (one hand-off
		// less for the links of a matrix, whose frames to nodes
		// without a delay pass straight through).
		l.mu.Unlock()
		for _, fr := range frames {
			_ = l.out.write(fr)
		}
		return
	}
	before := l.seq
	for range copies {
		dup = append(dup, frames...)
	}
	for _, fr := range dup {
		l.seq++
		heap.Push(&l.q, frame{at: at, seq: l.seq, data: fr})
		l.bytes += len(fr)
	}
	head := l.q[0].seq > before // a new frame leaves first: wake the sender
	l.mu.Unlock()
	if head {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// corrupt flips one random bit of the frame past its Ethernet header,
// after completing a checksum left to the device (which would otherwise
// be computed over the flipped bit and hide it). A segmentation frame
// is left alone (false): put cuts a TCP one into segments first
// (segmentTCP).
func corrupt(data []byte, rng *rand.Rand) bool {
	const eth = 14
	if len(data) <= vnetHdrLen+eth || !checksumPartial(data) {
		return false
	}
	i := vnetHdrLen + eth + rng.IntN(len(data)-vnetHdrLen-eth)
	data[i] ^= 1 << rng.IntN(8)
	return true
}

// send writes each frame out when its time comes, until close.
func (l *line) send() {
	t := time.NewTimer(time.Duration(math.MaxInt64))
	defer t.Stop()
	for {
		l.mu.Lock()
		var due []frame
		now := time.Now()
		for len(l.q) > 0 && !l.q[0].at.After(now) {
			f := heap.Pop(&l.q).(frame)
			l.bytes -= len(f.data)
			due = append(due, f)
		}
		var wait time.Duration = -1
		if len(l.q) > 0 {
			wait = l.q[0].at.Sub(now)
		}
		closed := l.closed
		l.writing = len(due) > 0
		l.mu.Unlock()
		if closed {
			close(l.done)
			return
		}
		for _, f := range due {
			// A frame the link cannot take now is lost, as on a wire.
			_ = l.out.write(f.data)
		}
		if len(due) > 0 {
			l.mu.Lock()
			l.writing = false
			l.mu.Unlock()
			continue
		}
		if wait >= 0 && wait <= preciseWait {
			// Go's timers wake up to a millisecond late (the poller
			// waits in whole milliseconds); the kernel's sleep is
			// precise to tens of microseconds.
			ts := unix.NsecToTimespec(int64(wait))
			_ = unix.Nanosleep(&ts, nil)
			continue
		}
		if wait >= 0 {
			t.Reset(wait - preciseWait)
		}
		select {
		case <-l.wake:
			t.Stop() // (since Go 1.23 no stale tick can follow)
		case <-t.C:
		}
	}
}

// flush sends every waiting frame now, in order: the line is about to
// close and its link to go back to the kernel's path, and a frame
// dropped there would stall a TCP stream for a retransmission timeout.
func (l *line) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.q) > 0 {
		f := heap.Pop(&l.q).(frame)
		l.bytes -= len(f.data)
		_ = l.out.write(f.data)
	}
}

// close stops the line; frames still waiting are dropped.
func (l *line) close() {
	l.mu.Lock()
	l.closed = true
	l.q = nil
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	<-l.done
}

func (l *line) stats() Stats {
	return Stats{Frames: l.frames.Load(), Bytes: l.nbytes.Load(), Dropped: l.dropped.Load(), Reordered: l.reordered.Load(), Duplicated: l.duplicated.Load(), Corrupted: l.corrupted.Load()}
}
