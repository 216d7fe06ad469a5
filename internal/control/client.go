package control

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Client is a typed client of one run, through its control socket: what
// `nsrun net`, `nsrun node`, `nsrun attach` and package nstest use. Its
// methods take and return typed values and Go errors whose kind
// errors.Is finds (ErrUnknownNode, ErrBadValue, ErrRunGone, ErrVersion,
// ErrRefused); they say nothing of the command line. Each call is one
// connection; a Client may be used from many goroutines.
type Client struct {
	path string
}

// NewClient is the client of the run whose control socket is path (in a
// run folder: Path(dir)).
func NewClient(path string) *Client { return &Client{path: path} }

// ForRun is the client of the run whose folder is runDir.
func ForRun(runDir string) *Client { return NewClient(filepath.Join(runDir, SocketName)) }

// SocketPath is the control socket the client talks to.
func (c *Client) SocketPath() string { return c.path }

// call sends req and reads one answer: its error, or the answer.
func (c *Client) call(req Request, files ...*os.File) (Response, error) {
	conn, err := Dial(c.path, req, files...)
	if err != nil {
		return Response{}, err
	}
	defer conn.Close()
	r, err := conn.Recv()
	if err != nil {
		return r, err
	}
	return r, r.Err()
}

// Net carries out a net verb other than exec (call is checked first) and
// returns what the run says it did, in words, and the network's state
// after it.
func (c *Client) Net(call NetCall) (string, NetState, error) {
	if err := call.Check(); err != nil {
		return "", NetState{}, &Error{Kind: ErrBadValue, Msg: err.Error()}
	}
	r, err := c.call(Request{Verb: NetVerb, Net: &call})
	if err != nil {
		return "", NetState{}, err
	}
	if r.Net == nil {
		return r.Output, NetState{}, fmt.Errorf("net %s: the run sent no state", call.Verb())
	}
	return r.Output, *r.Net, nil
}

// Show returns the network's state: the partition, link faults and
// latency in force.
func (c *Client) Show() (NetState, error) {
	_, st, err := c.Net(NetCall{Show: &Show{}})
	return st, err
}

// Node carries out a node verb (stop, start, restart, pause, resume).
func (c *Client) Node(call NodeCall) error {
	if err := call.Check(); err != nil {
		return &Error{Kind: ErrBadValue, Msg: err.Error()}
	}
	_, err := c.call(Request{Verb: NodeVerb, Node: &call})
	return err
}

// Attach plugs the network namespace ns of a process into the run as
// node call.Name, and returns what the run says it did.
func (c *Client) Attach(call AttachCall, ns *os.File) (string, error) {
	if err := call.Check(); err != nil {
		return "", &Error{Kind: ErrBadValue, Msg: err.Error()}
	}
	r, err := c.call(Request{Verb: AttachVerb, Attach: &call}, ns)
	return r.Output, err
}

// Socket returns socket(family, typ, proto) made in node's network
// namespace (see SocketVerb).
func (c *Client) Socket(node string, family, typ, proto int) (*os.File, error) {
	return Socket(c.path, node, family, typ, proto)
}

// Exec starts call's command in its node with stdin, stdout and stderr,
// which the command uses as they are (the caller may close its own
// copies once Exec returns). Wait for it with the Process.
func (c *Client) Exec(call ExecCall, stdin, stdout, stderr *os.File) (*Process, error) {
	if err := call.Check(); err != nil {
		return nil, &Error{Kind: ErrBadValue, Msg: err.Error()}
	}
	conn, err := Dial(c.path, Request{Verb: ExecVerb, Exec: &call}, stdin, stdout, stderr)
	if err != nil {
		return nil, err
	}
	r, err := conn.Recv()
	if err == nil {
		err = r.Err()
	}
	if err == nil && !r.Started {
		err = fmt.Errorf("exec in node %s: the run answered %+v, not that it started", call.Node, r)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &Process{conn: conn}, nil
}

// Process is a command that Exec started in a node.
type Process struct {
	conn *Conn
}

// Signal sends sig to the command.
func (p *Process) Signal(sig syscall.Signal) error {
	return p.conn.Send(Request{Verb: SignalVerb, Signal: &SignalCall{Sig: int(sig)}})
}

// Wait waits for the command to end and returns its exit code (128+N
// when signal N killed it); an error (ErrRunGone when the run ended
// first) when there is no code.
func (p *Process) Wait() (int, error) {
	defer p.conn.Close()
	for {
		r, err := p.conn.Recv()
		if err != nil {
			return r.ExitCode, err
		}
		if err := r.Err(); err != nil {
			return r.ExitCode, err
		}
		if r.Done {
			return r.ExitCode, nil
		}
	}
}

// Close drops the connection: the command goes on, unwatched.
func (p *Process) Close() error { return p.conn.Close() }
