// Package kvstore is a small replicated key-value store, the service under
// test of this example: every replica holds every key, and reads and
// writes go to a majority of the replicas (the ABD algorithm: a write first
// reads the highest version from a majority, then writes a higher one to a
// majority; a read takes the highest version a majority holds and writes it
// back). A replica cut off from the majority refuses both, so no partition
// can make two replicas disagree on a value that was acknowledged.
//
// The protocol is one line per request on TCP:
//
//	PUT key value    -> OK | ERR reason          (clients)
//	GET key          -> VALUE value | NONE | ERR reason
//	READ key         -> VER n node value | VER 0 - -   (replicas)
//	WRITE key n node value -> ACK
//
// Keys and values are single words.
package kvstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is one replica.
type Server struct {
	// ID names the replica; it breaks ties between equal versions.
	ID string
	// Peers are the other replicas, host:port.
	Peers []string
	// Dial connects to a peer; nil is a net.Dialer's.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Timeout bounds each round of requests to the peers (default 500ms).
	Timeout time.Duration

	mu   sync.Mutex
	data map[string]version
}

// version is a value with its version: higher N wins, then higher Node.
type version struct {
	N    uint64
	Node string
	Val  string
}

func (v version) newer(w version) bool {
	return v.N > w.N || v.N == w.N && v.Node > w.Node
}

// ErrNoQuorum is returned when fewer than a majority of replicas answer.
var ErrNoQuorum = errors.New("no quorum")

// Serve answers requests on l until it is closed.
func (s *Server) Serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go s.conn(c)
	}
}

func (s *Server) conn(c net.Conn) {
	defer c.Close()
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		fmt.Fprintln(c, s.request(strings.Fields(sc.Text())))
	}
}

func (s *Server) request(f []string) string {
	switch {
	case len(f) == 3 && f[0] == "PUT":
		if err := s.Put(f[1], f[2]); err != nil {
			return "ERR " + err.Error()
		}
		return "OK"
	case len(f) == 2 && f[0] == "GET":
		v, ok, err := s.Get(f[1])
		switch {
		case err != nil:
			return "ERR " + err.Error()
		case !ok:
			return "NONE"
		}
		return "VALUE " + v
	case len(f) == 2 && f[0] == "READ":
		v := s.local(f[1])
		if v.N == 0 {
			return "VER 0 - -"
		}
		return fmt.Sprintf("VER %d %s %s", v.N, v.Node, v.Val)
	case len(f) == 5 && f[0] == "WRITE":
		n, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			return "ERR bad version"
		}
		s.store(f[1], version{N: n, Node: f[3], Val: f[4]})
		return "ACK"
	}
	return "ERR unknown request"
}

// Put writes key=val on a majority.
func (s *Server) Put(key, val string) error {
	cur, err := s.readQuorum(key)
	if err != nil {
		return err
	}
	return s.writeQuorum(key, version{N: cur.N + 1, Node: s.ID, Val: val})
}

// Get reads key from a majority.
func (s *Server) Get(key string) (string, bool, error) {
	cur, err := s.readQuorum(key)
	if err != nil {
		return "", false, err
	}
	if cur.N == 0 {
		return "", false, nil
	}
	// Written back, so that no later read returns an older value.
	if err := s.writeQuorum(key, cur); err != nil {
		return "", false, err
	}
	return cur.Val, true, nil
}

func (s *Server) local(key string) version {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data[key]
}

func (s *Server) store(key string, v version) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.data == nil {
		s.data = map[string]version{}
	}
	if v.newer(s.data[key]) {
		s.data[key] = v
	}
}

// readQuorum returns the newest version of key that a majority holds.
func (s *Server) readQuorum(key string) (version, error) {
	best := s.local(key)
	answers := s.ask("READ " + key)
	got := 1
	for _, a := range answers {
		f := strings.Fields(a)
		if len(f) != 4 || f[0] != "VER" {
			continue
		}
		got++
		n, _ := strconv.ParseUint(f[1], 10, 64)
		if v := (version{N: n, Node: f[2], Val: f[3]}); n > 0 && v.newer(best) {
			best = v
		}
	}
	if got < s.majority() {
		return version{}, fmt.Errorf("%w: %d of %d replicas answered", ErrNoQuorum, got, len(s.Peers)+1)
	}
	return best, nil
}

// writeQuorum stores v here and on the peers, and succeeds once a majority
// has it.
func (s *Server) writeQuorum(key string, v version) error {
	s.store(key, v)
	acks := 1
	for _, a := range s.ask(fmt.Sprintf("WRITE %s %d %s %s", key, v.N, v.Node, v.Val)) {
		if a == "ACK" {
			acks++
		}
	}
	if acks < s.majority() {
		return fmt.Errorf("%w: %d of %d replicas acknowledged", ErrNoQuorum, acks, len(s.Peers)+1)
	}
	return nil
}

func (s *Server) majority() int { return (len(s.Peers)+1)/2 + 1 }

// ask sends line to every peer at once and returns the answers that came
// within the timeout.
func (s *Server) ask(line string) []string {
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 500 * time.Millisecond
	}
	dial := s.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	answers := make(chan string, len(s.Peers))
	for _, p := range s.Peers {
		go func() {
			a, err := request(ctx, dial, p, line)
			if err != nil {
				a = ""
			}
			answers <- a
		}()
	}
	var out []string
	for range s.Peers {
		if a := <-answers; a != "" {
			out = append(out, a)
		}
	}
	return out
}

// request sends one line to address and returns the answer.
func request(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), address, line string) (string, error) {
	c, err := dial(ctx, "tcp", address)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	if _, err := fmt.Fprintln(c, line); err != nil {
		return "", err
	}
	a, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(a), err
}
