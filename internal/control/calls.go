package control

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/ipam"
)

// The verbs of a Request besides "net" and "node" (whose sub-verbs the
// table Verbs lists).
const (
	ExecVerb   = "exec"   // ExecCall: `nsrun net exec`, nstest's Cmd
	SignalVerb = "signal" // SignalCall, on an exec's connection
	AttachVerb = "attach" // AttachCall: `nsrun attach`
	NetVerb    = "net"    // NetCall: `nsrun net VERB` other than exec
	NodeVerb   = "node"   // NodeCall: `nsrun node VERB`
)

// ExecCall runs a command in a node's namespaces with the caller's stdin,
// stdout and stderr, which the request carries as SCM_RIGHTS.
type ExecCall struct {
	Node string   `json:"node"`
	Argv []string `json:"argv"`
	Env  []string `json:"env,omitempty"`
	Dir  string   `json:"dir,omitempty"` // used when it exists in the node's mount namespace
	// Root runs the command as root of the run's user namespace.
	Root bool `json:"root,omitempty"`
}

// Check refuses a name that cannot be a node and an empty command.
func (c ExecCall) Check() error {
	if err := ipam.CheckNodeName("net exec", c.Node); err != nil {
		return err
	}
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return errors.New("net exec: no command")
	}
	return nil
}

// SignalCall forwards a signal to the command an exec started, on that
// exec's connection.
type SignalCall struct {
	Sig int `json:"sig"`
}

// Check refuses a number that is no signal.
func (c SignalCall) Check() error {
	if c.Sig < 1 || c.Sig > 64 {
		return fmt.Errorf("signal: %d is not a signal number (1 to 64)", c.Sig)
	}
	return nil
}

// AttachCall plugs a process's network namespace (the request carries it
// as SCM_RIGHTS) into the run as node Name. Either address may be
// invalid (not given), not both; without Addr6, the supervisor gives a
// node of a dual-stack subnet the IPv6 address Addr maps to. Which subnet
// the addresses are in, and whether the run has them already, only the
// supervisor knows: it checks that.
type AttachCall struct {
	Name  string     `json:"name"`
	Addr  netip.Addr `json:"addr,omitzero"`
	Addr6 netip.Addr `json:"addr6,omitzero"`
}

// Check refuses a name that cannot be a node, an address of the wrong
// family, and a call without an address.
func (c AttachCall) Check() error {
	if err := ipam.CheckNodeName("--name", c.Name); err != nil {
		return err
	}
	if !c.Addr.IsValid() && !c.Addr6.IsValid() {
		return errors.New("attach: give --ip, --ip6 or both")
	}
	if c.Addr.IsValid() && !c.Addr.Is4() {
		return fmt.Errorf("--ip: %s is not an IPv4 address (IPv6 addresses go under --ip6)", c.Addr)
	}
	if c.Addr6.IsValid() {
		if !c.Addr6.Is6() || c.Addr6.Is4In6() {
			return fmt.Errorf("--ip6: %s is not an IPv6 address such as fd00:ac12::7", c.Addr6)
		}
		if err := ipam.CheckAddr6("--ip6", c.Addr6); err != nil {
			return err
		}
	}
	return nil
}

// ParseAttach reads `nsrun attach`'s --name, --ip and --ip6 (either
// address may be "", not both) into a checked call.
func ParseAttach(name, ip, ip6 string) (AttachCall, error) {
	c := AttachCall{Name: name}
	var err error
	if ip != "" {
		if c.Addr, err = netip.ParseAddr(ip); err != nil || !c.Addr.Is4() {
			return c, fmt.Errorf("--ip: %q is not an IPv4 address (IPv6 addresses go under --ip6)", ip)
		}
	}
	if ip6 != "" {
		if c.Addr6, err = netip.ParseAddr(ip6); err != nil || !c.Addr6.Is6() || c.Addr6.Is4In6() {
			return c, fmt.Errorf("--ip6: %q is not an IPv6 address such as fd00:ac12::7", ip6)
		}
	}
	return c, c.Check()
}

// SocketCall asks for socket(Family, Type, Proto) made in node Node's
// network namespace (see SocketVerb).
type SocketCall struct {
	Node   string `json:"node"`
	Family int    `json:"family"` // AF_INET or AF_INET6
	Type   int    `json:"type"`   // SOCK_STREAM or SOCK_DGRAM, SOCK_NONBLOCK and SOCK_CLOEXEC allowed
	Proto  int    `json:"proto"`
}

// Check refuses a name that cannot be a node, and sockets other than
// IPv4 and IPv6 stream and datagram ones.
func (c SocketCall) Check() error {
	if err := ipam.CheckNodeName("socket", c.Node); err != nil {
		return err
	}
	if c.Family != unix.AF_INET && c.Family != unix.AF_INET6 {
		return fmt.Errorf("socket in node %s: family %d: only IPv4 and IPv6 sockets are made", c.Node, c.Family)
	}
	if t := c.Type &^ (unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC); t != unix.SOCK_STREAM && t != unix.SOCK_DGRAM {
		return fmt.Errorf("socket in node %s: type %d: only stream and datagram sockets are made", c.Node, c.Type)
	}
	if c.Proto < 0 {
		return fmt.Errorf("socket in node %s: protocol %d is negative", c.Node, c.Proto)
	}
	return nil
}

// checker is a request body.
type checker interface{ Check() error }

// Check refuses a request whose verb is unknown, or whose body is not
// exactly the one its verb names, or whose body fails its own Check: the
// one step with which the supervisor reads every request (the client ran
// the same checks before sending).
func (r Request) Check() error {
	bodies := []struct {
		verb string
		set  bool
		body checker
	}{
		{ExecVerb, r.Exec != nil, r.Exec},
		{SignalVerb, r.Signal != nil, r.Signal},
		{NetVerb, r.Net != nil, r.Net},
		{NodeVerb, r.Node != nil, r.Node},
		{AttachVerb, r.Attach != nil, r.Attach},
		{SocketVerb, r.Socket != nil, r.Socket},
		{EventsVerb, r.Events != nil, r.Events},
		{NoteVerb, r.Note != nil, r.Note},
	}
	var want checker
	known := false
	for _, b := range bodies {
		if b.verb == r.Verb {
			known = true
			if b.set {
				want = b.body
			}
		} else if b.set {
			return fmt.Errorf("request %q carries a %s body", r.Verb, b.verb)
		}
	}
	switch {
	case !known:
		return fmt.Errorf("unknown request %q", r.Verb)
	case want == nil:
		return fmt.Errorf("request %q carries no %s body", r.Verb, r.Verb)
	}
	return want.Check()
}
