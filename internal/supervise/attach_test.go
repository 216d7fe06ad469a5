package supervise

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/netsetup"
	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/internal/plan"
	"github.com/nsrun/nsrun/internal/runstate"
	"github.com/nsrun/nsrun/internal/testns"
	"github.com/nsrun/nsrun/internal/topology"
)

// testRun sets up the network, the run folder and the control socket of
// a supervisor of the file yaml, in a network namespace of its own (the
// bridge namespace), without starting any node; the test's cleanup tears
// it down.
func testRun(t *testing.T, yaml string) *supervisor {
	t.Helper()
	top, err := topology.Parse("t.yaml", t.TempDir(), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "runs", "0123abcd")
	p, err := plan.Build(plan.Input{Top: top, Run: plan.Run{ID: "0123abcd", Dir: dir, RuntimeDir: filepath.Dir(filepath.Dir(dir))}})
	if err != nil {
		t.Fatal(err)
	}
	s := newSupervisor(p, Handles{})
	s.log, s.logEnd = slog.New(slog.DiscardHandler), io.NopCloser(nil)
	t.Cleanup(s.tearDown)
	if err := testns.InNewNet(s.buildNetwork); err != nil {
		t.Fatal(err)
	}
	if err := s.net.WaitAllWired(); err != nil {
		t.Fatal(err)
	}
	if s.state, err = runstate.Create(p.Run.Dir, p.Run.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.state.WriteFile("hosts", hostsFile(p.Hosts)); err != nil {
		t.Fatal(err)
	}
	if s.ctl, err = control.Listen(control.Path(p.Run.Dir)); err != nil {
		t.Fatal(err)
	}
	go s.ctl.Serve(s.handle)
	return s
}

// request sends req with files to s's control socket and returns the
// reply.
func request(t *testing.T, s *supervisor, req control.Request, files ...*os.File) control.Response {
	t.Helper()
	c, err := control.Dial(control.Path(s.plan.Run.Dir), req, files...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Recv()
	if err != nil {
		t.Fatalf("%s: %v", req.Verb, err)
	}
	return r
}

// TestAttachInProcess plugs network namespaces into a run through its
// control socket, against the kernel: the attached namespace gets eth0
// with its addresses and default routes, its port is on the subnet's
// bridge, a node of the run reaches it, the run's hosts file and info
// list it; bad names and addresses, and a namespace the run cannot
// enter, are refused with the flag's name and the fix, changing nothing.
func TestAttachInProcess(t *testing.T) {
	s := testRun(t, "nodes:\n  a: {ip: 172.18.0.2}\n")
	attach := func(ns *os.File, name, ip, ip6 string) control.Response {
		c, err := control.ParseAttach(name, ip, ip6)
		if err != nil { // the client's check: the supervisor never sees it
			return control.Response{Error: err.Error(), ExitCode: 125}
		}
		return request(t, s, control.Request{Verb: control.AttachVerb, Attach: &c}, ns)
	}
	ns, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	r := attach(ns, "extra", "172.18.0.50", "")
	if !r.Done || r.Error != "" || !strings.HasPrefix(r.Output, "attached extra as 172.18.0.50") {
		t.Fatalf("attach: %+v", r)
	}
	br := s.plan.Bridges[0]
	if !br.Prefix6.IsValid() {
		t.Fatalf("the default subnet has no IPv6: %+v", br)
	}

	// Its eth0: the addresses, up, default routes via the bridge.
	if err := nsfd.Do(ns, func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		eth, err := h.LinkByName(plan.GuestIfName)
		if err != nil {
			return err
		}
		if eth.Attrs().OperState != netlink.OperUp {
			t.Errorf("eth0 is %s", eth.Attrs().OperState)
		}
		addrs, err := h.AddrList(eth, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		// Without --ip6, the address its IPv4 one maps to.
		want := []string{"172.18.0.50/24", "fd00:ac12::32/64"}
		for _, w := range want {
			found := false
			for _, a := range addrs {
				found = found || a.IPNet.String() == w
			}
			if !found {
				t.Errorf("eth0 lacks %s: %v", w, addrs)
			}
		}
		routes, err := h.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		found := false
		for _, rt := range routes {
			found = found || (rt.Dst == nil || rt.Dst.String() == "0.0.0.0/0") && rt.Gw.String() == br.Router.String()
		}
		if !found {
			t.Errorf("no default route via %s: %v", br.Router, routes)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Its port, on the bridge.
	bh, err := netsetup.Handle(s.net.BridgeNS())
	if err != nil {
		t.Fatal(err)
	}
	defer bh.Close()
	port, err := bh.LinkByName(plan.VethPort("extra"))
	if err != nil {
		t.Fatal(err)
	}
	if port.Attrs().MasterIndex != s.net.Bridges()[0].Index {
		t.Errorf("port %s is not on %s", port.Attrs().Name, br.Name)
	}

	// Node a reaches it.
	var ln net.Listener
	if err := nsfd.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", "0.0.0.0:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			_, _ = c.Write([]byte("extra here"))
			c.Close()
		}
	}()
	a, _ := s.lookup("a")
	var got []byte
	if err := nsfd.Do(a.ns, func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("172.18.0.50:%d", ln.Addr().(*net.TCPAddr).Port), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		got, err = io.ReadAll(c)
		return err
	}); err != nil || string(got) != "extra here" {
		t.Errorf("a -> extra: %q, %v", got, err)
	}

	// The run's hosts file and info list it.
	hosts, _ := os.ReadFile(filepath.Join(s.state.Dir, "hosts"))
	if !strings.Contains(string(hosts), "172.18.0.50\textra\n") {
		t.Errorf("hosts:\n%s", hosts)
	}
	info, err := runstate.ReadInfo(s.plan.Run.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Nodes) < 2 || info.Nodes[1].Name != "extra" || info.Nodes[1].Addr != "172.18.0.50" {
		t.Errorf("info: %+v", info.Nodes)
	}

	// IPv6 only.
	six, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	defer six.Close()
	if r := attach(six, "six", "", "fd00:ac12::66"); !r.Done || !strings.HasPrefix(r.Output, "attached six as fd00:ac12::66") {
		t.Errorf("attach --ip6 only: %+v", r)
	}

	// Refused, naming the flag; nothing is added.
	other, err := nsfd.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// The test binary's own namespace belongs to a user namespace outside
	// the run's, as one of a plain `unshare -Urn` does.
	outside := testns.Outside()
	if outside == nil {
		t.Fatal("no namespace outside the test's")
	}
	for _, c := range []struct {
		ns            *os.File
		name, ip, ip6 string
		want          string
	}{
		{other, "extra", "172.18.0.51", "", `--name: the run already has a node "extra"`},
		{other, "b", "172.18.0.2", "", "--ip: 172.18.0.2 is node a's address"},
		{other, "b", "172.18.0.50", "", "--ip: 172.18.0.50 is node extra's address"},
		{other, "b", "10.0.0.1", "", "--ip: 10.0.0.1 is in no subnet of the run"},
		{other, "b", br.Router.String(), "", "--ip"},
		{other, "b", "fd00::1", "", "--ip: \"fd00::1\" is not an IPv4 address"},
		{other, "b", "", "", "give --ip, --ip6 or both"},
		{other, "b", "", "fd00:ac12::2", "--ip6: fd00:ac12::2 is node a's IPv6 address"},
		{other, "b", "", "fd00:1::2", "--ip6: fd00:1::2 is in no subnet of the run"},
		{other, "b", "", "172.18.0.9", "--ip6: \"172.18.0.9\" is not an IPv6 address"},
		{other, "no/slash", "172.18.0.52", "", "--name"},
		{outside, "b", "172.18.0.52", "", "sibling of the run's"},
	} {
		r := attach(c.ns, c.name, c.ip, c.ip6)
		if r.Done || r.ExitCode != 125 || !strings.Contains(r.Error, c.want) {
			t.Errorf("attach %s %s %q: %+v, want an error with %q", c.name, c.ip, c.ip6, r, c.want)
		}
	}
	if r := request(t, s, control.Request{Verb: control.AttachVerb, Attach: &control.AttachCall{Name: "b", Addr: netip.MustParseAddr("172.18.0.52")}}); r.Done || !strings.Contains(r.Error, "needs the namespace") {
		t.Errorf("attach without a namespace: %+v", r)
	}
	// What a client that skipped its checks sends: the supervisor reads
	// every request through control.Request.Check.
	for _, c := range []struct {
		req  control.Request
		want string
	}{
		{control.Request{Verb: control.AttachVerb, Attach: &control.AttachCall{Name: "no/slash", Addr: netip.MustParseAddr("172.18.0.52")}}, "--name"},
		{control.Request{Verb: control.AttachVerb, Attach: &control.AttachCall{Name: "b", Addr6: netip.MustParseAddr("172.18.0.52")}}, "--ip6: 172.18.0.52 is not an IPv6 address"},
		{control.Request{Verb: control.AttachVerb, Attach: &control.AttachCall{Name: "b"}}, "give --ip, --ip6 or both"},
		{control.Request{Verb: control.AttachVerb}, `request "attach" carries no attach body`},
		{control.Request{Verb: control.AttachVerb, Socket: &control.SocketCall{Node: "a", Family: unix.AF_INET, Type: unix.SOCK_STREAM}}, `request "attach" carries a socket body`},
	} {
		if r := request(t, s, c.req, other); r.Done || r.ExitCode != 125 || !strings.Contains(r.Error, c.want) {
			t.Errorf("%+v: %+v, want an error with %q", c.req, r, c.want)
		}
	}
	if n := len(s.allNodes()); n != 3 {
		t.Errorf("%d nodes after the refusals, want 3", n)
	}
	if _, err := bh.LinkByName(plan.VethPort("b")); err == nil {
		t.Error("a refused attach left its port")
	}
}
