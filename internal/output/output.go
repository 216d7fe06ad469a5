// Package output prints the output of a run's nodes the way `docker
// compose up` does: line by line, each line prefixed with its node's name
// (coloured on a terminal), with nsrun's own events under the name
// "nsrun".
package output

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Prefixer writes every node's output line by line, prefixed with the
// node's name. Its methods may be called from any goroutine; Event, Note
// and Flush also on a nil Prefixer (`nsrun -- CMD` has none), which
// prints nothing.
type Prefixer struct {
	mu       sync.Mutex
	w        io.Writer
	width    int
	colors   map[string]string
	terminal bool
	status   string // the progress line at the bottom, on a terminal
	wg       sync.WaitGroup
	log      io.Writer // the run's output log (LogFile), if any
}

var palette = []string{"36", "33", "32", "35", "34", "31", "96", "93", "92", "95"}

// NewPrefixer makes the prefixer of a run whose nodes are named names
// (the prefix is as wide as the longest), writing to w, in colour when
// color is set (w is a terminal: Progress draws there too).
func NewPrefixer(w io.Writer, names []string, color bool) *Prefixer {
	p := &Prefixer{w: w, width: len("nsrun"), colors: map[string]string{}, terminal: color}
	for i, name := range names {
		p.width = max(p.width, len(name))
		if color {
			p.colors[name] = palette[i%len(palette)]
		}
	}
	if color {
		p.colors["nsrun"] = "1"
	}
	return p
}

// LogTo writes every line to log too (a LogFile), after its time and
// without colour. It is called before any line is printed.
func (p *Prefixer) LogTo(log io.Writer) { p.log = log }

// prefix is name's prefix, plain and as printed (coloured or not).
func (p *Prefixer) prefix(name string) (plain, prefix string) {
	plain = fmt.Sprintf("%-*s |", p.width, name)
	prefix = plain
	if c, ok := p.colors[name]; ok {
		prefix = "\x1b[" + c + "m" + plain + "\x1b[0m"
	}
	return plain, prefix
}

// clearLine returns the cursor to the start of the line and erases it.
const clearLine = "\r\x1b[K"

func (p *Prefixer) line(name, text string) {
	plain, prefix := p.prefix(name)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status == "" {
		fmt.Fprintf(p.w, "%s %s\n", prefix, text)
	} else {
		// The line goes above the progress line, which is drawn again.
		fmt.Fprintf(p.w, "%s%s %s\n%s", clearLine, prefix, text, p.status)
	}
	if p.log != nil {
		fmt.Fprintf(p.log, "%s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), plain, text)
	}
}

// Progress shows what (for example "starting 412/1000 nodes") on the
// last line of a terminal, in place of what it showed before, below the
// nodes' output; elsewhere (and in the log) it prints nothing.
// EndProgress removes it.
func (p *Prefixer) Progress(what string) {
	if p == nil || !p.terminal {
		return
	}
	_, prefix := p.prefix("nsrun")
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = prefix + " " + what
	fmt.Fprint(p.w, clearLine+p.status)
}

// EndProgress erases the progress line, if any.
func (p *Prefixer) EndProgress() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status != "" {
		fmt.Fprint(p.w, clearLine)
		p.status = ""
	}
}

// Count says how many nodes did what, and the first five names: "1 node
// started (db)", "1000 nodes started (n1 n2 n3 n4 n5 …)".
func Count(names []string, what string) string {
	first := strings.Join(names[:min(5, len(names))], " ")
	if len(names) > 5 {
		first += " …"
	}
	if len(names) == 1 {
		return "1 node " + what + " (" + first + ")"
	}
	return fmt.Sprintf("%d nodes %s (%s)", len(names), what, first)
}

// Event reports a step of node name's life ("started (pid 7)").
func (p *Prefixer) Event(name, what string) {
	if p != nil {
		p.line("nsrun", name+" "+what)
	}
}

// Note reports something about the whole run.
func (p *Prefixer) Note(what string) {
	if p != nil {
		p.line("nsrun", what)
	}
}

// Writer returns the write end of a pipe whose lines are printed with
// name's prefix. The caller closes it once the process has it.
func (p *Prefixer) Writer(name string) (*os.File, error) {
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

// Flush waits briefly for the last lines of nodes that have ended (their
// own children may keep a pipe open; those are not waited for).
func (p *Prefixer) Flush() {
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
