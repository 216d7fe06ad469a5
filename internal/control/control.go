// Package control is the run supervisor's control socket: a unix socket in
// the run's state folder through which `nsrun net ...` (from the host with
// --run ID, or from inside any node) asks the supervisor to act inside the
// run: run a command in a node's namespaces, change the partition.
// One request per connection: a JSON Request, with the caller's stdin,
// stdout and stderr attached as SCM_RIGHTS for exec; then JSON Responses.
package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/exitcode"
)

// SocketName is the socket's name in the run folder.
const SocketName = "ctl"

// Request is what a client asks: Verb, and exactly the one typed body that
// Verb names — "exec" (Exec; the caller's stdin, stdout and stderr
// attached), "signal" (Signal, on an exec's connection), "net" (Net),
// "node" (Node), "attach" (Attach; the process's network namespace
// attached) or SocketVerb (Socket). The client builds and checks the body
// before sending; the server reads every request through Check (in
// Serve and Next), so a handler sees only well-formed ones.
type Request struct {
	// Version is the client's protocol version (Version; Dial and Send
	// set it): a run of another version refuses the request.
	Version int         `json:"version"`
	Verb    string      `json:"verb"`
	Exec    *ExecCall   `json:"exec,omitempty"`
	Signal  *SignalCall `json:"signal,omitempty"`
	// Net is a `nsrun net` verb other than exec.
	Net *NetCall `json:"net,omitempty"`
	// Node is a `nsrun node` verb.
	Node   *NodeCall   `json:"node,omitempty"`
	Attach *AttachCall `json:"attach,omitempty"`
	Socket *SocketCall `json:"socket,omitempty"`
	Events *EventsCall `json:"events,omitempty"`
	Note   *NoteCall   `json:"note,omitempty"`
}

// Response is the supervisor's answer: Started (exec), then Done with
// ExitCode, or Error with its Kind.
type Response struct {
	// Version is the run's protocol version (Reply sets it).
	Version  int    `json:"version,omitempty"`
	Started  bool   `json:"started,omitempty"`
	Done     bool   `json:"done,omitempty"`
	ExitCode int    `json:"exit_code"`
	Output   string `json:"output,omitempty"`
	Error    string `json:"error,omitempty"`
	// Kind is the Error's kind (a Kind), "" for a failure of the run.
	Kind string `json:"kind,omitempty"`
	// Net is the network's state after a net verb, or show's.
	Net *NetState `json:"net,omitempty"`
	// Event is one event of a subscription (EventsVerb).
	Event *Event `json:"event,omitempty"`
}

// Err is r's error as a Go error (nil without one): a *VersionError for
// a run of another protocol version, an *Error of r's Kind otherwise.
func (r Response) Err() error {
	switch {
	case r.Error == "":
		return nil
	case Kind(r.Kind) == ErrVersion:
		return &VersionError{Client: Version, Run: r.Version}
	case r.Version == 0 && strings.Contains(r.Error, `unknown field "version"`):
		// A run of version 1, which had no version field.
		return &VersionError{Client: Version, Run: 1}
	}
	return &Error{Kind: Kind(r.Kind), Msg: r.Error, Code: r.ExitCode}
}

// Path returns the control socket of the run folder runDir.
func Path(runDir string) string { return filepath.Join(runDir, SocketName) }

// Conn is one request's connection.
type Conn struct {
	c   *net.UnixConn
	dec *json.Decoder
}

// Dial connects to the supervisor at path and sends req with files
// attached, after the caller's pid namespace (see Peer.FromPIDNS).
func Dial(path string, req Request, files ...*os.File) (*Conn, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, &Error{Kind: ErrRunGone, Msg: fmt.Sprintf("reach the run's supervisor at %s: %v", path, err)}
	}
	if err := checkServer(c, path); err != nil {
		c.Close()
		return nil, err
	}
	req.Version = Version
	b, _ := json.Marshal(req)
	var fds []int
	if ns, err := os.Open("/proc/self/ns/pid"); err == nil {
		defer ns.Close()
		fds = append(fds, int(ns.Fd()))
	}
	for _, f := range files {
		fds = append(fds, int(f.Fd()))
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix(append(b, '\n'), oob, nil); err != nil {
		c.Close()
		return nil, fmt.Errorf("send request: %w", err)
	}
	return &Conn{c: c, dec: json.NewDecoder(c)}, nil
}

// checkServer refuses a socket at path that is not a run's supervisor,
// as far as the caller can see it: a supervisor is PID 1 of a pid
// namespace that is a child of the caller's (the launcher made it so),
// and a node of any run lies at least two namespaces deeper. A node
// runs as the user and may reach the folder of a run that was not
// hidden from it, move it aside and serve a socket of its own there,
// answering every cut with "applied" (TestNodeCannotImpersonateARun). A
// server this process cannot see (pid 0: the caller is inside a run, a
// control: true node) is not checked; nor is this process itself.
func checkServer(c *net.UnixConn, path string) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("who serves %s: %w", path, err)
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("who serves %s: %w", path, err)
	}
	if serr != nil {
		return fmt.Errorf("who serves %s: SO_PEERCRED: %w", path, serr)
	}
	if cred.Pid == 0 || int(cred.Pid) == os.Getpid() {
		return nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cred.Pid))
	if err != nil {
		return fmt.Errorf("who serves %s: %w", path, err)
	}
	var nspid []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "NSpid:" {
			nspid = f[1:]
		}
	}
	if len(nspid) != 2 || nspid[1] != "1" {
		return &Error{Kind: ErrRefused, Msg: fmt.Sprintf("%s is not the supervisor of run %s: process %d serving it is not PID 1 of a pid namespace of the run's own (its pids: %s); a node may have put it there: check %s", path, filepath.Base(filepath.Dir(path)), cred.Pid, strings.Join(nspid, " "), filepath.Dir(path))}
	}
	return nil
}

// Send sends a further request on the same connection (signals to exec).
func (c *Conn) Send(req Request) error {
	req.Version = Version
	b, _ := json.Marshal(req)
	_, err := c.c.Write(append(b, '\n'))
	return err
}

// Recv reads the next response; a connection the run closed first is
// ErrRunGone.
func (c *Conn) Recv() (Response, error) {
	var r Response
	if err := c.dec.Decode(&r); err != nil {
		return r, &Error{Kind: ErrRunGone, Msg: fmt.Sprintf("no answer from the run: %v", err)}
	}
	return r, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// Server accepts requests.
type Server struct {
	l *net.UnixListener
}

// Listen creates the socket at path (mode 0600).
func Listen(path string) (*Server, error) {
	_ = os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	_ = os.Chmod(path, 0o600)
	return &Server{l: l}, nil
}

// Close stops accepting.
func (s *Server) Close() error { return s.l.Close() }

// Peer is the server's side of one request.
type Peer struct {
	c     *net.UnixConn
	enc   *json.Encoder
	dec   *json.Decoder
	Req   Request
	Files []*os.File
	// pidns is the pid namespace the client sent before its files (Dial
	// sends its own), nil if none.
	pidns *os.File
}

// FromPIDNS reports whether the client sent an open descriptor of the
// pid namespace ns (Dial sends the caller's own, before the request's
// files). A process can send only a namespace it holds open, and /proc
// shows it only the namespaces of the processes it sees: a node, which
// sees none but its own, cannot send the pid namespace of the user's
// shell on the host.
func (p *Peer) FromPIDNS(ns *os.File) bool {
	return p.pidns != nil && ns != nil && sameFile(p.pidns, ns)
}

// sameFile reports whether a and b are one file (device and inode).
func sameFile(a, b *os.File) bool {
	var sa, sb unix.Stat_t
	return unix.Fstat(int(a.Fd()), &sa) == nil && unix.Fstat(int(b.Fd()), &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// Serve calls handle for every request until the server is closed.
func (s *Server) Serve(handle func(*Peer)) {
	for {
		c, err := s.l.AcceptUnix()
		if err != nil {
			return
		}
		go func() {
			p, err := readRequest(c)
			if p == nil {
				c.Close()
				return
			}
			defer p.close()
			if err != nil {
				p.Fail(err)
				return
			}
			handle(p)
		}()
	}
}

func readRequest(c *net.UnixConn) (*Peer, error) {
	buf := make([]byte, 1<<16)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	p := &Peer{c: c, enc: json.NewEncoder(c)}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			f := os.NewFile(uintptr(fd), "peer")
			if p.pidns == nil && len(p.Files) == 0 && isPIDNS(f) {
				p.pidns = f
				continue
			}
			p.Files = append(p.Files, f)
		}
	}
	line := buf[:n]
	// The first message may carry more than the request line (a signal
	// sent right after): keep the rest for the decoder.
	first, rest, _ := cutLine(line)
	p.dec = json.NewDecoder(prepend(rest, c))
	p.Req, err = DecodeRequest(first)
	return p, err
}

// DecodeRequest reads one request line and checks it: a request of
// another protocol version is refused first, with a *VersionError that
// names both versions (its other fields may not be this version's); then
// (Request.Check) a field no body has, an unknown verb and a body that is
// not the verb's are refused, with an error that is ErrBadRequest.
func DecodeRequest(line []byte) (Request, error) {
	var v struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(line, &v); err != nil {
		return Request{}, badRequest{fmt.Errorf("bad request: %w", err)}
	}
	switch {
	case v.Version == nil:
		return Request{}, &VersionError{Client: 1, Run: Version}
	case *v.Version != Version:
		return Request{}, &VersionError{Client: *v.Version, Run: Version}
	}
	var r Request
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Request{}, badRequest{fmt.Errorf("bad request: %w", err)}
	}
	if dec.More() {
		return Request{}, badRequest{errors.New("bad request: more than one value on its line")}
	}
	if err := r.Check(); err != nil {
		return Request{}, badRequest{err}
	}
	return r, nil
}

// ErrBadRequest is what errors.Is finds in DecodeRequest's (and Next's)
// error for a request that was read but refused.
var ErrBadRequest = errors.New("bad request")

// badRequest is a refused request's error, as ErrBadRequest.
type badRequest struct{ error }

func (e badRequest) Unwrap() error      { return e.error }
func (badRequest) Is(target error) bool { return target == ErrBadRequest }

// Reply sends a response, with the run's protocol version.
func (p *Peer) Reply(r Response) {
	r.Version = Version
	_ = p.enc.Encode(r)
}

// Fail replies with err: its message, its kind (KindOf) and nsrun's exit
// code for a failure (exitcode.SetupFailed).
func (p *Peer) Fail(err error) {
	p.Reply(Response{Error: err.Error(), Kind: string(KindOf(err)), ExitCode: exitcode.SetupFailed})
}

// Next reads a further request (signals) until the client goes away; a
// request that fails its Check is an error that is ErrBadRequest, after
// which the next one can still be read.
func (p *Peer) Next() (Request, error) {
	var raw json.RawMessage
	if err := p.dec.Decode(&raw); err != nil {
		return Request{}, err
	}
	return DecodeRequest(raw)
}

// isPIDNS reports whether f is a pid namespace (nsfs).
func isPIDNS(f *os.File) bool {
	typ, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	return err == nil && typ == unix.CLONE_NEWPID
}

func (p *Peer) close() {
	for _, f := range p.Files {
		f.Close()
	}
	if p.pidns != nil {
		p.pidns.Close()
	}
	p.c.Close()
}
