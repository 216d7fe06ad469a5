// Package supervise is the run supervisor: PID 1 of the run's pid
// namespace and root of its user namespace. It builds the run's network
// (bridge namespace, bridge, one namespace per node), starts every node's
// command, forwards signals to them and tears everything down when the run
// ends.
package supervise

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/guest"
	"github.com/nsrun/nsrun/ipam"
	"github.com/nsrun/nsrun/netsetup"
	"github.com/nsrun/nsrun/nsfd"
	"github.com/nsrun/nsrun/runstate"
	"github.com/nsrun/nsrun/userns"
	"github.com/nsrun/nsrun/userns/child"
	"github.com/nsrun/nsrun/userns/messages"
)

// BridgeName is the name of the run's bridge in its bridge namespace.
const BridgeName = "br0"

// Main runs the supervisor and returns its exit code.
func Main() int {
	cfg, conn, err := child.Open()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nsrun:", err)
		return messages.ExitSetupFailed
	}
	defer conn.Close()
	// Catch forwarded signals from the start, so none is lost or kills us
	// before the nodes run.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, userns.ForwardedSignals(cfg.Terminal)...)
	signal.Notify(sigs, userns.TerminalSignals...)

	r, err := setUp(cfg)
	if err != nil {
		r.tearDown()
		code := messages.ExitSetupFailed
		switch {
		case errors.Is(err, guest.ErrNotFound):
			code = 127
		case errors.Is(err, os.ErrPermission):
			code = 126
		}
		conn.Fail(err, code)
		return code
	}
	defer r.tearDown()
	conn.Ready()

	forward := userns.ForwardedSet(cfg.Terminal)
	first := r.procs[0]
	for {
		select {
		case s := <-sigs:
			if forward[s] {
				for _, p := range r.procs {
					_ = unix.Kill(p.Pid, s.(unix.Signal))
				}
			}
		case <-first.Done():
			return guest.ExitCode(first.Wait())
		}
	}
}

// run is what setUp built, for tearDown.
type run struct {
	state  *runstate.Run
	bridge *os.File
	guests []*os.File
	procs  []*guest.Process
	uplink *uplink
}

func setUp(cfg messages.Config) (*run, error) {
	r := &run{}
	// The supervisor's own network namespace (the gateway when joined),
	// taken before any thread unshares: later, /proc/self/ns/net may name
	// a thread that has moved to a bridge or node namespace.
	own, err := nsfd.Open("/proc/thread-self/ns/net")
	if err != nil {
		return r, err
	}
	defer own.Close()
	// Mounts made for guests must never propagate back to the caller.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return r, fmt.Errorf("make mounts private: %w", err)
	}
	// A /proc of the run's own pid namespace, for the supervisor and guests.
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return r, fmt.Errorf("mount /proc of the run's pid namespace: %w", err)
	}
	subnet, err := ipam.NewSubnet("subnet", cfg.Subnet)
	if err != nil {
		return r, err
	}
	go func() { _, _ = runstate.GC(cfg.RuntimeDir) }()
	if r.state, err = runstate.Create(cfg.RunDir, cfg.RunID); err != nil {
		return r, err
	}
	hosts, err := r.state.WriteFile("hosts", hostsFile(cfg.Nodes))
	if err != nil {
		return r, err
	}
	resolv, err := r.state.WriteFile("resolv.conf", []byte("# written by nsrun for run "+cfg.RunID+"\nnameserver "+subnet.Bridge.String()+"\n"))
	if err != nil {
		return r, err
	}

	if r.bridge, err = nsfd.NewNet(); err != nil {
		return r, fmt.Errorf("create bridge namespace: %w", err)
	}
	bh, err := netsetup.Handle(r.bridge)
	if err != nil {
		return r, err
	}
	defer bh.Close()
	br, err := netsetup.AddBridge(bh, BridgeName, subnet)
	if err != nil {
		return r, err
	}
	if cfg.Uplink {
		r.uplink, err = addUplink(cfg, own, r.bridge, []netip.Addr{subnet.Bridge})
		if err != nil {
			return r, fmt.Errorf("uplink: %w", err)
		}
	}
	for _, n := range cfg.Nodes {
		g, err := nsfd.NewNet()
		if err != nil {
			return r, fmt.Errorf("create namespace of node %q: %w", n.Name, err)
		}
		r.guests = append(r.guests, g)
		addr, err := netip.ParseAddr(n.Addr)
		if err != nil {
			return r, fmt.Errorf("node %q: address %q: %w", n.Name, n.Addr, err)
		}
		if err := netsetup.AddNode(bh, br, g, netsetup.Node{PortName: ipam.IfName("v", n.Name), Addr: addr}); err != nil {
			return r, fmt.Errorf("node %q: %w", n.Name, err)
		}
	}
	info := runstate.Info{ID: cfg.RunID}
	if r.uplink != nil {
		info.Uplink = r.uplink.block.String()
	}
	for i, n := range cfg.Nodes {
		env := append(append([]string{}, n.Env...), "NSRUN_RUN="+cfg.RunID, "NSRUN_NODE="+n.Name)
		p, err := guest.Start(guest.Spec{
			NetNS:    r.guests[i],
			Hostname: n.Hostname,
			Mounts:   map[string]string{"/etc/hosts": hosts, "/etc/resolv.conf": resolv},
			Argv:     n.Argv,
			Env:      env,
			Dir:      n.Dir,
			Root:     cfg.Root,
			UID:      cfg.UID,
			GID:      cfg.GID,
			Stdin:    os.Stdin,
			Stdout:   os.Stdout,
			Stderr:   os.Stderr,
			Setpgid:  !cfg.Terminal,
		})
		if err != nil {
			return r, fmt.Errorf("node %q: %w", n.Name, err)
		}
		r.procs = append(r.procs, p)
		info.Nodes = append(info.Nodes, runstate.NodeInfo{Name: n.Name, Addr: n.Addr, Pid: p.Pid})
	}
	if err := r.state.WriteInfo(info); err != nil {
		return r, err
	}
	return r, nil
}

// tearDown removes the run's state. The namespaces and veths go with the
// processes and fds, when the supervisor exits.
func (r *run) tearDown() {
	for _, p := range r.procs {
		select {
		case <-p.Done():
		default:
			_ = unix.Kill(p.Pid, unix.SIGKILL)
		}
	}
	r.uplink.release()
	if r.state != nil {
		_ = r.state.Remove()
	}
}

// hostsFile lists every node under its hostname and name.
func hostsFile(nodes []messages.Node) []byte {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, n := range nodes {
		names := n.Hostname
		if n.Name != n.Hostname {
			names += " " + n.Name
		}
		fmt.Fprintf(&b, "%s\t%s\n", n.Addr, names)
	}
	return []byte(b.String())
}
