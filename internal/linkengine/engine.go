// Package linkengine is nsrun's own link emulator: delay, jitter,
// reorder, duplicate and corrupt, on every kernel nsrun runs on and
// without privilege. The kernel's netem is missing on many of the
// machines people test on (WSL2, minimal and ARM kernels, this project's
// CI), so frames of links with such faults pass through user space.
//
// A link with faults is spliced (netsetup.SpliceLink) in the run's bridge
// namespace: the node's veth end leaves the bridge, and a new veth
// takes its place and its name. The engine reads, with a packet socket,
// what the node sends and what the bridge sends it, holds each frame in
// a time-ordered queue (netem's tfifo), and writes it on the other side
// when its time comes. Frames keep their offload state (virtio_net_hdr),
// so a 64 KiB TCP segment crosses as one frame. Links without faults are
// not spliced and stay on the kernel's path at full speed; with no
// faults at all the engine holds no socket and no goroutine.
//
// Two kinds of faults:
//   - Receive faults (`nsrun net flaky NODE --delay ...`) apply to what
//     the node receives, from anywhere.
//   - Pair delays (the file's `latency:` matrix, `nsrun net latency`)
//     apply to what one node sends another, chosen by the frame's
//     destination address; a frame to an address of no node (the uplink,
//     the bridge itself) gets none.
//
// A frame never overtakes an earlier frame to the same destination
// (jitter spreads delays without reordering a stream), except the
// fraction that Reorder sends at once. Each direction of a link holds at
// most maxQueuedFrames frames and maxQueuedBytes bytes; beyond that a
// frame is dropped.
package linkengine

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nsrun/nsrun/internal/netsetup"
	"github.com/nsrun/nsrun/internal/runlog"
)

// Faults are what the engine does to the frames of one direction.
// Probabilities are fractions (0.1: 10%).
type Faults struct {
	Delay time.Duration
	// Jitter is the standard deviation of the delay: each frame waits
	// Delay plus a normally distributed deviation (never less than 0).
	Jitter    time.Duration
	Reorder   float64 // this fraction is sent at once, ahead of the others
	Duplicate float64 // this fraction is sent twice
	Corrupt   float64 // this fraction gets one bit flipped
}

// IsZero reports whether f does nothing.
func (f Faults) IsZero() bool { return f == Faults{} }

// Pair is a one-way pair of nodes, by name.
type Pair struct{ From, To string }

// Config is everything the engine does in a run. The engine keeps it as
// given: the caller must not change it afterwards.
type Config struct {
	// Receive are faults on what a node receives, by node name.
	Receive map[string]Faults
	// Pairs are delays (Delay, Jitter) on what From sends To.
	Pairs map[Pair]Faults
}

// Node is a node of the run as the engine sees it.
type Node struct {
	Name   string
	Addrs  []netip.Addr // its addresses: frames to them are its
	Splice netsetup.Splice
	// NS is its network namespace (nil: not waited for), whose eth0 the
	// engine waits for after a splice takes its link down and up.
	NS *os.File
}

// Engine runs a run's spliced links. Its methods may be called from any
// goroutine.
type Engine struct {
	ns  *os.File
	log *slog.Logger
	cur atomic.Pointer[state]

	mu    sync.Mutex // serializes Set and Close
	links map[string]*link
}

// state is a Config with the lookups each frame needs.
type state struct {
	cfg    Config
	byAddr map[netip.Addr]string
}

// New makes the engine of the run whose bridge namespace is ns (the
// caller keeps it open). It starts nothing until Set asks for faults.
func New(ns *os.File, log *slog.Logger) *Engine {
	e := &Engine{ns: ns, log: log, links: map[string]*link{}}
	e.cur.Store(&state{})
	return e
}

// Needs reports the nodes whose link must pass through the engine.
func (c Config) Needs() map[string]bool {
	out := map[string]bool{}
	for name, f := range c.Receive {
		if !f.IsZero() {
			out[name] = true
		}
	}
	for p, f := range c.Pairs {
		if !f.IsZero() {
			out[p.From] = true
		}
	}
	return out
}

// Set makes cfg the engine's faults, for every pair at once: links that
// need the engine are spliced, those that no longer do go back to the
// kernel's path. nodes are the run's nodes as they are now.
func (e *Engine) Set(cfg Config, nodes []Node) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := &state{cfg: cfg, byAddr: map[netip.Addr]string{}}
	byName := map[string]Node{}
	for _, n := range nodes {
		byName[n.Name] = n
		for _, a := range n.Addrs {
			st.byAddr[a] = n.Name
		}
	}
	need := cfg.Needs()
	for name := range need {
		n, ok := byName[name]
		if !ok {
			return fmt.Errorf("link engine: no node %q in this run", name)
		}
		if n.Splice.Port == "" {
			return fmt.Errorf("link engine: node %q has tap links only; delays apply to a node's eth0", name)
		}
	}
	e.cur.Store(st)
	var add []Node
	for _, name := range slices.Sorted(maps.Keys(need)) {
		if e.links[name] == nil {
			add = append(add, byName[name])
		}
	}
	var drop []*link
	for name, l := range e.links {
		if !need[name] {
			drop = append(drop, l)
			delete(e.links, name)
		}
	}
	// Several at a time: most of a splice is waiting for the kernel to
	// report the links up, which it does for all of them at once.
	added := make([]*link, len(add))
	errs := make([]error, len(add)+len(drop))
	parallel(len(add)+len(drop), func(i int) {
		if i < len(add) {
			added[i], errs[i] = e.splice(add[i])
		} else {
			errs[i] = e.unsplice(drop[i-len(add)])
		}
	})
	for i, l := range added {
		if l != nil {
			e.links[add[i].Name] = l
		}
	}
	return errors.Join(errs...)
}

// spliceWorkers bounds how many links are spliced at once.
const spliceWorkers = 8

// parallel runs fn(0..n-1), spliceWorkers at a time, and waits.
func parallel(n int, fn func(i int)) {
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range min(spliceWorkers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// Spliced are the nodes whose links pass through the engine now.
func (e *Engine) Spliced() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Sorted(maps.Keys(e.links))
}

// LinkStats are the counters of one spliced link.
type LinkStats struct {
	// Sent is what the node sent (toward the bridge); Received what it
	// received.
	Sent     Stats `json:"sent"`
	Received Stats `json:"received"`
}

// Stats are the counters of every spliced link, by node.
func (e *Engine) Stats() map[string]LinkStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]LinkStats{}
	for name, l := range e.links {
		out[name] = LinkStats{Sent: l.up.stats(), Received: l.down.stats()}
	}
	return out
}

// Close stops every link (the frames still waiting are dropped). The
// links stay spliced: the bridge namespace goes with the run.
func (e *Engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	// All at once: closing a packet socket waits for an RCU grace period
	// (synchronize_net), which closes in parallel share; one after
	// another, 60 sockets held a 30-node run's tear-down for 0.6 s.
	var wg sync.WaitGroup
	for name, l := range e.links {
		wg.Add(1)
		go func() { defer wg.Done(); l.stop() }()
		delete(e.links, name)
	}
	wg.Wait()
}

// link is one spliced link.
type link struct {
	node              Node
	nodeSock, engSock *packetSocket
	up, down          *line // up: from the node, to the bridge; down: to the node
	readers           sync.WaitGroup
	stopping          atomic.Bool // the sockets are being closed
}

func (e *Engine) splice(n Node) (l *link, err error) {
	done := runlog.Step(e.log, "splice link into the link engine (user space)", "node", n.Name, "port", n.Splice.Port, "node_end", n.Splice.NodeEnd, "engine_end", n.Splice.EngineEnd)
	defer func() { done(err) }()
	h, err := netsetup.Handle(e.ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	// A link the plan wired spliced (the file's matrix) needs only its
	// sockets.
	swapped := !netsetup.IsSpliced(h, n.Splice)
	if swapped {
		if err := netsetup.SpliceLink(h, n.Splice); err != nil {
			return nil, fmt.Errorf("link engine: node %q: %w", n.Name, err)
		}
	}
	if swapped && n.NS != nil {
		if err := netsetup.WaitGuestUp(n.NS); err != nil {
			return nil, fmt.Errorf("link engine: node %q: %w", n.Name, err)
		}
	}
	l = &link{node: n}
	if l.nodeSock, err = openPacket(e.ns, n.Splice.NodeEnd); err == nil {
		l.engSock, err = openPacket(e.ns, n.Splice.EngineEnd)
	}
	if err != nil {
		if l.nodeSock != nil {
			l.nodeSock.close()
		}
		return nil, errors.Join(fmt.Errorf("link engine: node %q: %w", n.Name, err), netsetup.UnspliceLink(h, n.Splice))
	}
	seed := uint64(time.Now().UnixNano())
	l.up = newLine(l.engSock, seed)
	l.down = newLine(l.nodeSock, seed+1)
	l.readers.Add(2)
	go e.read(l, l.nodeSock, l.up, true)
	go e.read(l, l.engSock, l.down, false)
	return l, nil
}

func (e *Engine) unsplice(l *link) (err error) {
	done := runlog.Step(e.log, "take link out of the link engine", "node", l.node.Name, "port", l.node.Splice.Port)
	defer func() { done(err) }()
	// The link's faults are zero by now (Set stored the new state): what
	// arrives from here on leaves at once, and what waits leaves now.
	l.up.flush()
	l.down.flush()
	l.stop()
	h, err := netsetup.Handle(e.ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := netsetup.UnspliceLink(h, l.node.Splice); err != nil {
		return fmt.Errorf("link engine: node %q: %w", l.node.Name, err)
	}
	if l.node.NS != nil {
		if err := netsetup.WaitGuestUp(l.node.NS); err != nil {
			return fmt.Errorf("link engine: node %q: %w", l.node.Name, err)
		}
	}
	return nil
}

// stop closes the sockets and the lines.
func (l *link) stop() {
	l.stopping.Store(true)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); l.nodeSock.close() }()
	l.engSock.close()
	wg.Wait()
	l.readers.Wait()
	l.up.close()
	l.down.close()
}

var errTruncated = errors.New("frame larger than the engine's buffer")

// read reads the frames arriving on s and queues them on out: from the
// node (sent: pair delays by destination) or to it (its receive faults).
func (e *Engine) read(l *link, s *packetSocket, out *line, sent bool) {
	defer l.readers.Done()
	buf := make([]byte, maxFrame)
	oob := make([]byte, 128)
	for {
		n, now, err := s.read(buf, oob)
		if errors.Is(err, errTruncated) {
			continue
		}
		if err != nil {
			if !l.stopping.Load() {
				e.log.Error("link engine: read", "node", l.node.Name, "err", err)
			}
			return
		}
		st := e.cur.Load()
		dst := st.dest(buf[vnetHdrLen:n])
		var f Faults
		if sent {
			f = st.cfg.Pairs[Pair{l.node.Name, dst}]
		} else {
			f = st.cfg.Receive[l.node.Name]
		}
		out.put(now, flowKey(buf[vnetHdrLen:n]), slices.Clone(buf[:n]), f)
	}
}

// flowKey identifies a frame's flow: its addresses, protocol and ports
// (TCP, UDP), or its ethertype and destination MAC for other frames.
func flowKey(pkt []byte) uint64 {
	h := fnv.New64a()
	if len(pkt) < 14 {
		return 0
	}
	h.Write(pkt[12:14])
	var ip, l4 []byte
	var proto byte
	switch uint16(pkt[12])<<8 | uint16(pkt[13]) {
	case 0x0800:
		if len(pkt) >= 14+20 {
			ihl := int(pkt[14]&0xf) * 4
			ip, proto = pkt[14+12:14+20], pkt[14+9]
			if len(pkt) >= 14+ihl+4 {
				l4 = pkt[14+ihl : 14+ihl+4]
			}
		}
	case 0x86dd:
		if len(pkt) >= 14+40 {
			ip, proto = pkt[14+8:14+40], pkt[14+6]
			if len(pkt) >= 14+44 {
				l4 = pkt[14+40 : 14+44]
			}
		}
	}
	if ip == nil {
		h.Write(pkt[0:6])
		return h.Sum64()
	}
	h.Write(ip)
	h.Write([]byte{proto})
	if proto == 6 || proto == 17 {
		h.Write(l4)
	}
	return h.Sum64()
}

// dest is the node a frame is addressed to, by its IPv4, IPv6 or ARP
// target address; "" for none.
func (st *state) dest(pkt []byte) string {
	if len(pkt) < 14 {
		return ""
	}
	var a netip.Addr
	switch uint16(pkt[12])<<8 | uint16(pkt[13]) {
	case 0x0800:
		if len(pkt) >= 14+20 {
			a = netip.AddrFrom4([4]byte(pkt[14+16 : 14+20]))
		}
	case 0x86dd:
		if len(pkt) >= 14+40 {
			a = netip.AddrFrom16([16]byte(pkt[14+24 : 14+40]))
		}
	case 0x0806:
		if len(pkt) >= 14+28 {
			a = netip.AddrFrom4([4]byte(pkt[14+24 : 14+28]))
		}
	}
	return st.byAddr[a]
}
