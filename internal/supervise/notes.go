package supervise

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/nsfd"
)

// NotesAddr is where a node's program sends annotations, one UDP
// datagram of one line each, to the supervisor: the discard port of the
// node's own loopback, which the supervisor holds in every node's network
// namespace. A node finds it in $NSRUN_EVENTS; in bash:
//
//	echo "leader=n2" > /dev/udp/${NSRUN_EVENTS/://}
const NotesAddr = "127.0.0.1:9"

// envNotes is the variable that tells a node NotesAddr.
const envNotes = "NSRUN_EVENTS"

// maxNote is the longest annotation kept; a longer one is cut.
const maxNote = 512

// A node's program is untrusted, and each annotation becomes a line of
// events.jsonl on the user's runtime folder and a message to every
// subscriber: a node may add notesPerSecond a second on average, in
// bursts of notesBurst, and maxNotes in all; the rest are dropped, and
// the timeline says how many.
const (
	notesPerSecond = 20
	notesBurst     = 100
	maxNotes       = 10000
)

// noteLimiter is a token bucket with a total: allow says whether one more
// annotation may be kept at now.
type noteLimiter struct {
	tokens  float64
	last    time.Time
	kept    int
	dropped int // since the last kept one
}

func (l *noteLimiter) allow(now time.Time) bool {
	if l.last.IsZero() {
		l.tokens = notesBurst
	} else {
		l.tokens = min(notesBurst, l.tokens+now.Sub(l.last).Seconds()*notesPerSecond)
	}
	l.last = now
	if l.tokens < 1 || l.kept >= maxNotes {
		l.dropped++
		return false
	}
	l.tokens--
	l.kept++
	return true
}

// listenNotes opens node n's annotation socket in its network namespace
// (once) and publishes what arrives on it as annotations of n, until the
// run closes it.
func (s *supervisor) listenNotes(n *node) error {
	n.notesOnce.Do(func() {
		var fd int
		n.notesErr = nsfd.Do(n.ns, func() error {
			var err error
			if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
				return err
			}
			if err := unix.Bind(fd, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
				unix.Close(fd)
				return err
			}
			return nil
		})
		if n.notesErr != nil {
			n.notesErr = fmt.Errorf("node %s: the annotation socket %s: %w", n.cfg.Name, NotesAddr, n.notesErr)
			return
		}
		f := os.NewFile(uintptr(fd), "notes-"+n.cfg.Name)
		c, err := net.FilePacketConn(f)
		f.Close()
		if err != nil {
			n.notesErr = err
			return
		}
		n.notes = c
		go s.readNotes(n, c)
	})
	return n.notesErr
}

// readNotes publishes each datagram of c as annotations of n, a line
// each.
func (s *supervisor) readNotes(n *node, c net.PacketConn) {
	buf := make([]byte, 4096)
	var limit noteLimiter
	for {
		k, _, err := c.ReadFrom(buf)
		if err != nil {
			return // closed by tearDown
		}
		for _, line := range strings.Split(string(buf[:k]), "\n") {
			line = strings.TrimSpace(strings.ToValidUTF8(line, "?"))
			if line == "" {
				continue
			}
			if dropped := limit.dropped; !limit.allow(time.Now()) {
				continue
			} else if dropped > 0 {
				s.publish(control.Event{Kind: control.EventAnnotation, Node: n.cfg.Name, Text: fmt.Sprintf("(%d annotations dropped: more than %d a second, or %d in all)", dropped, notesPerSecond, maxNotes)})
				limit.dropped = 0
			}
			if len(line) > maxNote {
				cut := maxNote
				for cut > 0 && !utf8.RuneStart(line[cut]) {
					cut--
				}
				line = line[:cut]
			}
			s.publish(control.Event{Kind: control.EventAnnotation, Node: n.cfg.Name, Text: line})
			if s.plan.Run.Up {
				s.out.Event(n.cfg.Name, "note: "+line)
			}
		}
	}
}

// noteVerb publishes the event a client adds (control.NoteVerb): a step
// of a schedule run from outside, or an annotation.
func (s *supervisor) noteVerb(p *control.Peer) {
	c := p.Req.Note // checked (control.Request.Check)
	if c.Node != "" {
		if _, ok := s.lookup(c.Node); !ok {
			p.Fail(control.Errorf(control.ErrUnknownNode, "note: no node %q in this run; its nodes: %s", c.Node, s.nodeNames()))
			return
		}
	}
	s.publish(control.Event{Kind: c.Kind, Node: c.Node, Verb: c.Verb, Step: c.Step, Text: c.Text})
	p.Reply(control.Response{Done: true})
}

// closeNotes closes every node's annotation socket.
func (s *supervisor) closeNotes() {
	for _, n := range s.allNodes() {
		if n.notes != nil {
			n.notes.Close()
		}
	}
}
