package nstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nsrun/nsrun/internal/control"
)

// Exec runs argv in the node's namespaces (network, hostname, the run's
// /etc/hosts), as `nsrun net exec` does, and returns its output, stdout and
// stderr together. A command that exits with a code other than 0 returns
// an *ExitError; cancelling ctx kills the command.
func (n *Node) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("nstest: Exec: no command given")
	}
	return n.Command(ctx, argv[0], argv[1:]...).CombinedOutput()
}

// ExitError is a command in a node that exited with a code other than 0.
type ExitError struct {
	Node string
	Argv []string
	// Code is the exit code, 128+N for a command killed by signal N.
	Code int
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("nstest: %s in node %s: exit code %d", strings.Join(e.Argv, " "), e.Node, e.Code)
}

// Cmd is a command to run in a node, like an *exec.Cmd: set its fields,
// then Run, or Start and Wait.
type Cmd struct {
	// Args is the command and its arguments.
	Args []string
	// Env is its environment; nil is the test process's.
	Env []string
	// Dir is its working directory; "" is the test process's.
	Dir string
	// Root runs it as root of the run's user namespace (`nsrun net exec
	// --root`): with every capability over the node's network, enough for
	// ip, tc and nft there.
	Root bool
	// Stdin, Stdout and Stderr are as with exec.Cmd: nil is /dev/null;
	// an *os.File is passed as it is; anything else through a pipe.
	Stdin          io.Reader
	Stdout, Stderr io.Writer

	node    *Node
	ctx     context.Context
	proc    *control.Process
	closers []io.Closer // our ends of the pipes, closed once the command is done
	started []io.Closer // the command's ends of StdinPipe and StdoutPipe, closed once it has them
	copies  sync.WaitGroup
	done    chan struct{}
	code    int
	err     error
}

// Command returns a Cmd that runs name with args in the node; cancelling
// ctx kills it.
func (n *Node) Command(ctx context.Context, name string, args ...string) *Cmd {
	return &Cmd{Args: append([]string{name}, args...), node: n, ctx: ctx}
}

// StdinPipe returns a pipe to the command's stdin (close it to send EOF).
func (c *Cmd) StdinPipe() (io.WriteCloser, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c.Stdin = r
	c.started = append(c.started, r)
	c.closers = append(c.closers, w)
	return w, nil
}

// StdoutPipe returns a pipe from the command's stdout; read it to its end
// before Wait.
func (c *Cmd) StdoutPipe() (io.ReadCloser, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c.Stdout = w
	c.started = append(c.started, w)
	return r, nil
}

// Start starts the command.
func (c *Cmd) Start() error {
	if c.done != nil {
		return errors.New("nstest: Cmd already started")
	}
	if len(c.Args) == 0 {
		return errors.New("nstest: Cmd: no command given")
	}
	if c.node.err != nil {
		return c.node.err
	}
	env := c.Env
	if env == nil {
		env = os.Environ()
	}
	dir := c.Dir
	if dir == "" {
		dir, _ = os.Getwd()
	}
	files := make([]*os.File, 3)
	var err error
	if files[0], err = c.input(c.Stdin); err == nil {
		if files[1], err = c.output(c.Stdout); err == nil {
			if c.Stdout != nil && sameWriter(c.Stderr, c.Stdout) {
				files[2] = files[1]
			} else {
				files[2], err = c.output(c.Stderr)
			}
		}
	}
	if err != nil {
		c.closeAll()
		return err
	}
	proc, err := c.node.net.client.Exec(control.ExecCall{Node: c.node.name, Argv: c.Args, Env: env, Dir: dir, Root: c.Root}, files[0], files[1], files[2])
	// The command holds the ends it was given; ours of its stdin and
	// output pipes are closed, so that its exit ends the copies.
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
	for _, f := range c.started {
		f.Close()
	}
	c.started = nil
	if err != nil {
		c.closeAll()
		return fmt.Errorf("nstest: exec %s in node %s: %w", c.Args[0], c.node.name, err)
	}
	c.proc = proc
	c.done = make(chan struct{})
	go c.wait()
	return nil
}

// input is the file the command reads stdin from.
func (c *Cmd) input(r io.Reader) (*os.File, error) {
	switch r := r.(type) {
	case nil:
		return os.Open(os.DevNull)
	case *os.File:
		return dupFile(r)
	default:
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		c.closers = append(c.closers, pw)
		go func() {
			_, _ = io.Copy(pw, r)
			pw.Close()
		}()
		return pr, nil
	}
}

// output is the file the command writes to w through.
func (c *Cmd) output(w io.Writer) (*os.File, error) {
	switch w := w.(type) {
	case nil:
		return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	case *os.File:
		return dupFile(w)
	default:
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		c.closers = append(c.closers, pr)
		c.copies.Add(1)
		go func() {
			defer c.copies.Done()
			_, _ = io.Copy(w, pr)
		}()
		return pw, nil
	}
}

// sameWriter reports whether a and b are the same writer (as exec.Cmd
// does: a type that cannot be compared is never the same).
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

// dupFile is a copy of f that Start may close.
func dupFile(f *os.File) (*os.File, error) {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), f.Name()), nil
}

func (c *Cmd) wait() {
	defer close(c.done)
	responses := make(chan error, 1)
	go func() {
		code, err := c.proc.Wait()
		if err != nil {
			responses <- fmt.Errorf("nstest: exec in node %s: %w", c.node.name, err)
			return
		}
		c.code = code
		responses <- nil
	}()
	var ctxDone <-chan struct{}
	if c.ctx != nil {
		ctxDone = c.ctx.Done()
	}
	select {
	case c.err = <-responses:
	case <-ctxDone:
		_ = c.Signal(syscall.SIGKILL)
		c.err = <-responses
		if c.err == nil {
			c.err = c.ctx.Err()
		}
	}
	c.proc.Close()
	// Output the command's own children still hold is not waited for
	// long (as exec.Cmd's WaitDelay).
	copied := make(chan struct{})
	go func() { c.copies.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-time.After(time.Second):
	}
	c.closeAll()
	if c.err == nil && c.code != 0 {
		c.err = &ExitError{Node: c.node.name, Argv: c.Args, Code: c.code}
	}
}

func (c *Cmd) closeAll() {
	for _, cl := range append(c.closers, c.started...) {
		cl.Close()
	}
	c.closers, c.started = nil, nil
}

// Signal sends sig to the command.
func (c *Cmd) Signal(sig syscall.Signal) error {
	if c.proc == nil {
		return errors.New("nstest: Cmd not started")
	}
	return c.proc.Signal(sig)
}

// Wait waits for the command to exit: nil for code 0, an *ExitError for
// another code.
func (c *Cmd) Wait() error {
	if c.done == nil {
		return errors.New("nstest: Cmd not started")
	}
	<-c.done
	return c.err
}

// ExitCode is the command's exit code once Wait returned (128+N when
// killed by signal N).
func (c *Cmd) ExitCode() int { return c.code }

// Run starts the command and waits for it.
func (c *Cmd) Run() error {
	if err := c.Start(); err != nil {
		return err
	}
	return c.Wait()
}

// Output runs the command and returns its stdout.
func (c *Cmd) Output() ([]byte, error) {
	var b bytes.Buffer
	c.Stdout = &b
	err := c.Run()
	return b.Bytes(), err
}

// CombinedOutput runs the command and returns stdout and stderr together.
func (c *Cmd) CombinedOutput() ([]byte, error) {
	var b syncBuffer
	c.Stdout, c.Stderr = &b, &b
	err := c.Run()
	return b.Bytes(), err
}

// syncBuffer is a bytes.Buffer safe for one writer at a time.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Bytes()
}
