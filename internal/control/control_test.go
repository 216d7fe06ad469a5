package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/internal/exitcode"
	"github.com/nsrun/nsrun/internal/partition"
)

// serve listens on a control socket in a folder of t's and serves handle
// there until t ends; it returns the socket's path.
func serve(t *testing.T, handle func(*Peer)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), SocketName)
	srv, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	go srv.Serve(handle)
	return path
}

// TestRoundTrip sends a request with stdio-like files attached and checks
// that the server gets them, answers, and receives a later signal.
func TestRoundTrip(t *testing.T) {
	got := make(chan Request, 2)
	path := serve(t, func(p *Peer) {
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

// TestDialNoRun: a run that is not there is ErrRunGone, with no advice
// for the command line in its message.
func TestDialNoRun(t *testing.T) {
	_, err := Dial(filepath.Join(t.TempDir(), "none"), Request{Verb: "net"})
	if !errors.Is(err, ErrRunGone) || strings.Contains(err.Error(), "nsrun") {
		t.Errorf("err = %v, want ErrRunGone without advice", err)
	}
}

// TestNextRefusesBadRequest: a further request that fails its check is
// ErrBadRequest, and the one after it is still read.
func TestNextRefusesBadRequest(t *testing.T) {
	errs := make(chan error, 3)
	path := serve(t, func(p *Peer) {
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
	path := serve(t, func(p *Peer) { p.Reply(Response{Done: true, Output: "handled"}) })
	c, err := Dial(path, Request{Verb: SocketVerb, Node: &NodeCall{Action: "stop", Node: "db"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Recv()
	if err != nil || r.Done || r.ExitCode != exitcode.SetupFailed || r.Error != `request "socket" carries a node body` {
		t.Errorf("%+v, %v", r, err)
	}
	if err := r.Err(); !errors.Is(err, ErrBadValue) {
		t.Errorf("Err() = %v, want ErrBadValue", err)
	}
}

// TestVersionMismatch: a request of another protocol version, or of
// version 1 (no version field), even one with fields this version does
// not know, is refused with one error that names both versions and says
// which nsrun to use; the client reads it as a *VersionError.
func TestVersionMismatch(t *testing.T) {
	for line, client := range map[string]int{
		`{"version":3,"verb":"net","net":{"show":{}},"future":{"x":1}}`: 3,
		`{"verb":"net","net":{"show":{}}}`:                              1,
		`{"version":1,"verb":"net","net":{"show":{}}}`:                  1,
	} {
		_, err := DecodeRequest([]byte(line))
		var ve *VersionError
		if !errors.As(err, &ve) || ve.Client != client || ve.Run != Version || !errors.Is(err, ErrVersion) {
			t.Errorf("%s: %v, want a *VersionError %d against %d", line, err, client, Version)
			continue
		}
		want := fmt.Sprintf("control protocol version %d (this nsrun) against version %d (the run): use the nsrun that started the run", client, Version)
		if err.Error() != want {
			t.Errorf("%s:\n%s\nwant\n%s", line, err, want)
		}
	}
	if _, err := DecodeRequest([]byte(fmt.Sprintf(`{"version":%d,"verb":"net","net":{"show":{}}}`, Version))); err != nil {
		t.Errorf("this version: %v", err)
	}

	// Over the socket: a client of version 3 sends its request raw.
	path := serve(t, func(p *Peer) { p.Reply(Response{Done: true, Output: "handled"}) })
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, `{"version":3,"verb":"events","events":{"follow":true}}`+"\n"); err != nil {
		t.Fatal(err)
	}
	var r Response
	if err := json.NewDecoder(c).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.Done || r.Version != Version || Kind(r.Kind) != ErrVersion || r.ExitCode != exitcode.SetupFailed {
		t.Errorf("answer %+v", r)
	}
	var ve *VersionError
	if err := r.Err(); !errors.As(err, &ve) || ve.Run != Version {
		t.Errorf("Err() = %v", err)
	}

	// A run of version 1 refuses the version field itself; the client
	// reads that as version 1.
	old := Response{Error: `bad request: json: unknown field "version"`, ExitCode: 125}
	if err := old.Err(); !errors.As(err, &ve) || ve.Client != Version || ve.Run != 1 {
		t.Errorf("a version 1 run's answer: %v", err)
	}
}

// TestTypedErrors: the run's errors keep their kind across the socket,
// and Go callers find it with errors.Is; the kinds do not mix.
func TestTypedErrors(t *testing.T) {
	_, partErr := partition.Isolate{Nodes: []string{"zz"}}.State([]string{"a", "b"})
	fails := map[string]error{
		"a": Errorf(ErrUnknownNode, "no node %q", "zz"),
		"b": Errorf(ErrBadValue, "flaky: --reorder needs a delay"),
		"c": partErr,
		"d": errors.New("netlink: operation not permitted"),
		"e": Errorf(ErrRefused, "node a has no control of its run"),
	}
	path := serve(t, func(p *Peer) { p.Fail(fails[p.Req.Node.Node]) })
	for node, want := range map[string]Kind{"a": ErrUnknownNode, "b": ErrBadValue, "c": ErrUnknownNode, "d": "", "e": ErrRefused} {
		c, err := Dial(path, Request{Verb: NodeVerb, Node: &NodeCall{Action: "stop", Node: node}})
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.Recv()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		err = r.Err()
		if err == nil || err.Error() != fails[node].Error() || KindOf(err) != want {
			t.Errorf("%s: %v (kind %q), want %q of kind %q", node, err, KindOf(err), fails[node], want)
		}
		for _, k := range []Kind{ErrUnknownNode, ErrBadValue, ErrRunGone, ErrVersion, ErrRefused} {
			if errors.Is(err, k) != (k == want) {
				t.Errorf("%s: errors.Is(%v, %q) = %v", node, err, k, !(k == want))
			}
		}
	}
}

// TestEventsSubscription: a subscription reads the run's events in order
// and ends at the run's last answer; a run gone mid-stream is ErrRunGone.
func TestEventsSubscription(t *testing.T) {
	code := 3
	path := serve(t, func(p *Peer) {
		if p.Req.Events == nil || !p.Req.Events.Follow || p.Req.Events.After != 1 {
			p.Fail(Errorf(ErrBadValue, "want a following subscription after 1, got %+v", p.Req.Events))
			return
		}
		p.Reply(Response{Event: &Event{Seq: 2, Kind: EventNodeStarted, Node: "a", Pid: 9}})
		p.Reply(Response{Event: &Event{Seq: 3, Kind: EventNodeExited, Node: "a", Code: &code}})
		p.Reply(Response{Done: true})
	})
	sub, err := NewClient(path).Events(EventsCall{After: 1, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var got []string
	for {
		e, err := sub.Next()
		if errors.Is(err, ErrEventsEnded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %s %s", e.Seq, e.Kind, e.Node))
		if e.Kind == EventNodeExited && (e.Code == nil || *e.Code != 3) {
			t.Errorf("exit without its code: %+v", e)
		}
	}
	if strings.Join(got, ", ") != "2 node-started a, 3 node-exited a" {
		t.Errorf("events %q", got)
	}
	if _, err := sub.Next(); !errors.Is(err, ErrEventsEnded) {
		t.Errorf("after the end: %v", err)
	}
}
