package control

import (
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

var (
	v4 = netip.MustParseAddr("172.18.0.50")
	v6 = netip.MustParseAddr("fd00:ac12::32")
)

// good is one well-formed request of every verb.
func good() []Request {
	return []Request{
		{Version: Version, Verb: ExecVerb, Exec: &ExecCall{Node: "db", Argv: []string{"sh", "-c", "true"}, Env: []string{"A=1"}, Dir: "/tmp", Root: true}},
		{Version: Version, Verb: SignalVerb, Signal: &SignalCall{Sig: 15}},
		{Version: Version, Verb: NetVerb, Net: &NetCall{Flaky: &Flaky{Node: "db", Faults: Faults{LossPPM: 300_000}, Set: FaultLoss}}},
		{Version: Version, Verb: NodeVerb, Node: &NodeCall{Action: "stop", Node: "db"}},
		{Version: Version, Verb: AttachVerb, Attach: &AttachCall{Name: "extra", Addr: v4}},
		{Version: Version, Verb: AttachVerb, Attach: &AttachCall{Name: "extra", Addr6: v6}},
		{Version: Version, Verb: AttachVerb, Attach: &AttachCall{Name: "extra", Addr: v4, Addr6: v6}},
		{Version: Version, Verb: SocketVerb, Socket: &SocketCall{Node: "db", Family: unix.AF_INET6, Type: unix.SOCK_DGRAM | unix.SOCK_NONBLOCK}},
	}
}

// TestRequestRoundTrip: every verb's request survives the wire as it
// was, and DecodeRequest accepts it.
func TestRequestRoundTrip(t *testing.T) {
	for _, req := range good() {
		if err := req.Check(); err != nil {
			t.Errorf("%+v: %v", req, err)
			continue
		}
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeRequest(b)
		if err != nil || !reflect.DeepEqual(back, req) {
			t.Errorf("%s came back as %+v, %v", b, back, err)
		}
	}
	// An address not given is left out, not sent as "".
	b, _ := json.Marshal(Request{Version: Version, Verb: AttachVerb, Attach: &AttachCall{Name: "x", Addr: v4}})
	if want := `{"version":2,"verb":"attach","attach":{"name":"x","addr":"172.18.0.50"}}`; string(b) != want {
		t.Errorf("attach on the wire: %s, want %s", b, want)
	}
}

// TestRequestCheck: an unknown verb, a missing body, a second body, a
// body of another verb and a body that fails its own check are refused,
// saying which.
func TestRequestCheck(t *testing.T) {
	for _, c := range []struct {
		req  Request
		want string
	}{
		{Request{Verb: "launch"}, `unknown request "launch"`},
		{Request{}, `unknown request ""`},
		{Request{Verb: ExecVerb}, `request "exec" carries no exec body`},
		{Request{Verb: NetVerb, Node: &NodeCall{Action: "stop", Node: "db"}}, `request "net" carries a node body`},
		{Request{Verb: NodeVerb, Node: &NodeCall{Action: "stop", Node: "db"}, Signal: &SignalCall{Sig: 9}}, `request "node" carries a signal body`},
		{Request{Verb: NodeVerb, Node: &NodeCall{Action: "explode", Node: "db"}}, `unknown action "explode"`},
		{Request{Verb: NetVerb, Net: &NetCall{}}, "exactly one verb"},
		{Request{Verb: ExecVerb, Exec: &ExecCall{Node: "db"}}, "net exec: no command"},
		{Request{Verb: ExecVerb, Exec: &ExecCall{Node: "-x", Argv: []string{"true"}}}, "net exec: node name"},
		{Request{Verb: SignalVerb, Signal: &SignalCall{Sig: 0}}, "0 is not a signal number"},
		{Request{Verb: SignalVerb, Signal: &SignalCall{Sig: 65}}, "65 is not a signal number"},
		{Request{Verb: AttachVerb, Attach: &AttachCall{Name: "x"}}, "give --ip, --ip6 or both"},
		{Request{Verb: AttachVerb, Attach: &AttachCall{Name: "", Addr: v4}}, "--name: node name"},
		{Request{Verb: AttachVerb, Attach: &AttachCall{Name: "x", Addr: v6}}, "--ip: fd00:ac12::32 is not an IPv4 address"},
		{Request{Verb: AttachVerb, Attach: &AttachCall{Name: "x", Addr6: v4}}, "--ip6: 172.18.0.50 is not an IPv6 address"},
		{Request{Verb: AttachVerb, Attach: &AttachCall{Name: "x", Addr6: netip.MustParseAddr("::ffff:1.2.3.4")}}, "--ip6: ::ffff:1.2.3.4 is not an IPv6 address"},
		{Request{Verb: AttachVerb, Attach: &AttachCall{Name: "x", Addr6: netip.MustParseAddr("fe80::1")}}, "--ip6: fe80::1 is link-local"},
		{Request{Verb: AttachVerb, Attach: &AttachCall{Name: "x", Addr6: netip.MustParseAddr("ff02::1")}}, "--ip6: ff02::1 is a multicast address"},
		{Request{Verb: SocketVerb, Socket: &SocketCall{Node: "db", Family: unix.AF_UNIX, Type: unix.SOCK_STREAM}}, "family 1: only IPv4 and IPv6"},
		{Request{Verb: SocketVerb, Socket: &SocketCall{Node: "db", Family: unix.AF_INET, Type: unix.SOCK_RAW}}, "type 3: only stream and datagram"},
		{Request{Verb: SocketVerb, Socket: &SocketCall{Node: "db", Family: unix.AF_INET, Type: unix.SOCK_STREAM, Proto: -1}}, "protocol -1"},
		{Request{Verb: SocketVerb, Socket: &SocketCall{Node: "", Family: unix.AF_INET, Type: unix.SOCK_STREAM}}, "socket: node name"},
	} {
		err := c.req.Check()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error with %q", c.req, err, c.want)
		}
		c.req.Version = Version
		b, _ := json.Marshal(c.req)
		if _, err := DecodeRequest(b); err == nil || errors.Is(err, ErrVersion) {
			t.Errorf("DecodeRequest(%s) accepted it", b)
		}
	}
}

// TestDecodeRequestRefuses: what no client of this version sends.
func TestDecodeRequestRefuses(t *testing.T) {
	for _, line := range []string{
		``,
		`not json`,
		`{"version":2,"verb":"exec","node":"db","args":["true"]}`, // the untyped form of old
		`{"version":2,"verb":"attach","attach":{"name":"x","addr":"172.18.0.500"}}`,
		`{"version":2,"verb":"attach","attach":{"name":"x","addr":"172.18.0.5"}} {}`,
		`{"version":2,"verb":"socket","socket":{"node":"db","family":"2","type":1,"proto":0}}`,
	} {
		if r, err := DecodeRequest([]byte(line)); err == nil || errors.Is(err, ErrVersion) {
			t.Errorf("%s: accepted as %+v", line, r)
		}
	}
}

// TestParseAttach: the client's reading of --name, --ip and --ip6.
func TestParseAttach(t *testing.T) {
	c, err := ParseAttach("extra", "172.18.0.50", "fd00:ac12::32")
	if err != nil || c != (AttachCall{Name: "extra", Addr: v4, Addr6: v6}) {
		t.Errorf("got %+v, %v", c, err)
	}
	if c, err := ParseAttach("extra", "", "fd00:ac12::32"); err != nil || c.Addr.IsValid() || c.Addr6 != v6 {
		t.Errorf("--ip6 only: %+v, %v", c, err)
	}
	for _, in := range []struct{ name, ip, ip6, want string }{
		{"x", "", "", "give --ip, --ip6 or both"},
		{"x", "fd00::1", "", `--ip: "fd00::1" is not an IPv4 address`},
		{"x", "172.18.0", "", `--ip: "172.18.0" is not an IPv4 address`},
		{"x", "", "172.18.0.9", `--ip6: "172.18.0.9" is not an IPv6 address`},
		{"x", "", "::ffff:172.18.0.9", `--ip6: "::ffff:172.18.0.9" is not an IPv6 address`},
		{"x", "", "fe80::1", "link-local"},
		{"no/slash", "172.18.0.5", "", "--name"},
	} {
		if _, err := ParseAttach(in.name, in.ip, in.ip6); err == nil || !strings.Contains(err.Error(), in.want) {
			t.Errorf("ParseAttach(%q, %q, %q): %v, want an error with %q", in.name, in.ip, in.ip6, err, in.want)
		}
	}
}

// FuzzDecodeRequest: whatever a line holds, DecodeRequest either refuses
// it or returns a request that passes Check, has exactly its verb's body,
// and encodes to a line that decodes to a request with the same encoding.
func FuzzDecodeRequest(f *testing.F) {
	for _, req := range good() {
		b, _ := json.Marshal(req)
		f.Add(b)
	}
	f.Add([]byte(`{"version":2,"verb":"attach","attach":{"name":"x","addr":"::1"}}`))
	f.Add([]byte(`{"version":2,"verb":"net","net":{"isolate":{"nodes":["a"]},"show":{}}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := DecodeRequest(line)
		if err != nil {
			return
		}
		if err := r.Check(); err != nil {
			t.Fatalf("%s: decoded, but fails its check: %v", line, err)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("%s: %+v does not encode: %v", line, r, err)
		}
		// The same request, on the wire: an empty list and a missing one
		// are one (omitempty), so compare encodings.
		back, err := DecodeRequest(b)
		if err != nil {
			t.Fatalf("%s: %s is refused when sent again: %v", line, b, err)
		}
		if b2, _ := json.Marshal(back); string(b2) != string(b) {
			t.Fatalf("%s: %s came back as %s", line, b, b2)
		}
	})
}
