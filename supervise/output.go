package supervise

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/nsrun/nsrun/plan"
)

// prefixer writes every node's output line by line, prefixed with the
// node's name (coloured on a terminal), as `docker compose up` does.
type prefixer struct {
	mu     sync.Mutex
	w      io.Writer
	width  int
	colors map[string]string
	wg     sync.WaitGroup
}

var palette = []string{"36", "33", "32", "35", "34", "31", "96", "93", "92", "95"}

func newPrefixer(w io.Writer, nodes []plan.Node, color bool) *prefixer {
	p := &prefixer{w: w, width: len("nsrun"), colors: map[string]string{}}
	for i, n := range nodes {
		p.width = max(p.width, len(n.Name))
		if color {
			p.colors[n.Name] = palette[i%len(palette)]
		}
	}
	if color {
		p.colors["nsrun"] = "1"
	}
	return p
}

func (p *prefixer) line(name, text string) {
	prefix := fmt.Sprintf("%-*s |", p.width, name)
	if c, ok := p.colors[name]; ok {
		prefix = "\x1b[" + c + "m" + prefix + "\x1b[0m"
	}
	p.mu.Lock()
	fmt.Fprintf(p.w, "%s %s\n", prefix, text)
	p.mu.Unlock()
}

// event reports a node's life-cycle step (nil-safe: `nsrun -- CMD` has no
// prefixer and reports nothing).
func (p *prefixer) event(name, what string) {
	if p != nil {
		p.line("nsrun", name+" "+what)
	}
}

// note reports something about the whole run (nil-safe).
func (p *prefixer) note(what string) {
	if p != nil {
		p.line("nsrun", what)
	}
}

// writer returns the write end of a pipe whose lines are printed with
// name's prefix. The caller closes it once the process has it.
func (p *prefixer) writer(name string) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			p.line(name, sc.Text())
		}
	}()
	return w, nil
}

// flush waits briefly for the last lines of nodes that have ended (their
// own children may keep a pipe open; those are not waited for).
func (p *prefixer) flush() {
	if p == nil {
		return
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(200 * time.Millisecond):
	}
}
