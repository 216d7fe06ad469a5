package control

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRoundTrip sends a request with stdio-like files attached and checks
// that the server gets them, answers, and receives a later signal.
func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	srv, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	got := make(chan Request, 2)
	go srv.Serve(func(p *Peer) {
		got <- p.Req
		if len(p.Files) != 1 {
			p.Reply(Response{Error: "want one file"})
			return
		}
		_, _ = io.WriteString(p.Files[0], "written by the server\n")
		p.Reply(Response{Started: true})
		next, err := p.Next()
		if err == nil {
			got <- next
		}
		p.Reply(Response{Done: true, ExitCode: 7})
	})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(path, Request{Verb: ExecVerb, Exec: &ExecCall{Node: "db", Argv: []string{"true"}}}, w)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w.Close()
	if resp, err := c.Recv(); err != nil || !resp.Started {
		t.Fatalf("first response %+v, %v", resp, err)
	}
	if err := c.Send(Request{Verb: SignalVerb, Signal: &SignalCall{Sig: 15}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := c.Recv(); err != nil || !resp.Done || resp.ExitCode != 7 {
		t.Fatalf("second response %+v, %v", resp, err)
	}
	if req := <-got; req.Verb != "exec" || req.Exec == nil || req.Exec.Node != "db" || strings.Join(req.Exec.Argv, " ") != "true" {
		t.Errorf("request %+v", req)
	}
	if req := <-got; req.Verb != "signal" || req.Signal == nil || req.Signal.Sig != 15 {
		t.Errorf("signal %+v", req)
	}
	b := make([]byte, 100)
	n, _ := r.Read(b)
	if string(b[:n]) != "written by the server\n" {
		t.Errorf("the passed file got %q", b[:n])
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, %v; want 0600", fi.Mode(), err)
	}
}

func TestDialNoRun(t *testing.T) {
	_, err := Dial(filepath.Join(t.TempDir(), "none"), Request{Verb: "net"})
	if err == nil || !strings.Contains(err.Error(), "has the run ended? see nsrun ls") {
		t.Errorf("err = %v", err)
	}
}

// TestNextRefusesBadRequest: a further request that fails its check is
// ErrBadRequest, and the one after it is still read.
func TestNextRefusesBadRequest(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	srv, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	errs := make(chan error, 3)
	go srv.Serve(func(p *Peer) {
		p.Reply(Response{Started: true})
		for range 2 {
			next, err := p.Next()
			if err == nil && (next.Signal == nil || next.Signal.Sig != 2) {
				err = errors.New("wrong request")
			}
			errs <- err
		}
		p.Reply(Response{Done: true})
	})
	c, err := Dial(path, Request{Verb: ExecVerb, Exec: &ExecCall{Node: "db", Argv: []string{"true"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r, err := c.Recv(); err != nil || !r.Started {
		t.Fatalf("%+v, %v", r, err)
	}
	if err := c.Send(Request{Verb: SignalVerb, Signal: &SignalCall{Sig: 0}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(Request{Verb: SignalVerb, Signal: &SignalCall{Sig: 2}}); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "0 is not a signal number") {
		t.Errorf("signal 0: %v, want ErrBadRequest", err)
	}
	if err := <-errs; err != nil {
		t.Errorf("signal 2 after it: %v", err)
	}
	if r, err := c.Recv(); err != nil || !r.Done {
		t.Fatalf("%+v, %v", r, err)
	}
}

// TestServeRefusesBadRequest: a first request that fails its check gets
// an error answer, and the handler never sees it.
func TestServeRefusesBadRequest(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	srv, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go srv.Serve(func(p *Peer) { p.Reply(Response{Done: true, Output: "handled"}) })
	c, err := Dial(path, Request{Verb: SocketVerb, Node: &NodeCall{Action: "stop", Node: "db"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r, err := c.Recv(); err != nil || r.Done || r.ExitCode != 125 || r.Error != `request "socket" carries a node body` {
		t.Errorf("%+v, %v", r, err)
	}
}
