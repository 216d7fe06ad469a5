package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/install"
	"github.com/nsrun/nsrun/ipam"
	"github.com/nsrun/nsrun/runstate"
	"github.com/nsrun/nsrun/topology"
	"github.com/nsrun/nsrun/userns/messages"
	"github.com/nsrun/nsrun/userns/nsenter"
	"github.com/nsrun/nsrun/userns/parent"
)

// runFlags are the flags of `nsrun [flags] -- CMD`.
type runFlags struct {
	ip, hostname   string
	logLevel       string
	root, isolated bool
	version        bool
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	hostUID, hostGID, joined := caller()
	var f runFlags
	fs := flag.NewFlagSet("nsrun", flag.ContinueOnError)
	fs.StringVar(&f.ip, "ip", ipam.DefaultGuest.String(), "")
	fs.StringVar(&f.hostname, "hostname", "node", "")
	fs.BoolVar(&f.root, "root", false, "")
	fs.BoolVar(&f.isolated, "isolated", false, "")
	fs.BoolVar(&f.version, "version", false, "")
	fs.StringVar(&f.logLevel, "log-level", "", "")
	if code, err := parseFlags(fs, args, stdout, ""); code >= 0 {
		if err != nil {
			return fail(stderr, err)
		}
		return code
	}
	if f.version {
		fmt.Fprintln(stdout, "nsrun", version)
		return 0
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return fail(stderr, errors.New("no command given: write nsrun [flags] -- CMD [ARGS...]; see nsrun --help"))
	}
	subnet := ipam.DefaultSubnet()
	addr, err := subnet.ParseGuest("--ip", f.ip)
	if err != nil {
		return fail(stderr, err)
	}
	if err := ipam.CheckHostname("--hostname", f.hostname); err != nil {
		return fail(stderr, err)
	}
	cfg, err := baseConfig(hostUID, hostGID, f.root)
	if err != nil {
		return fail(stderr, err)
	}
	wd, _ := os.Getwd()
	cfg.Subnets = []messages.Subnet{{Name: "default", CIDR: subnet.Prefix.String()}}
	cfg.Nodes = []messages.Node{{
		Name: f.hostname, Hostname: f.hostname, Addr: addr.String(),
		Argv: argv, Env: os.Environ(), Dir: wd,
	}}
	cfg.Terminal = foregroundTerminal()
	cfg.LogLevel = f.logLevel
	return launch(cfg, f.isolated, joined, stderr)
}

// upFlags are the flags of `nsrun up`.
type upFlags struct {
	file, exitCodeFrom string
	capture, logLevel  string
	abortOnExit        bool
	timeout            float64
	root, isolated     bool
}

func cmdUp(args []string, stdout, stderr io.Writer) int {
	hostUID, hostGID, joined := caller()
	var f upFlags
	fs := flag.NewFlagSet("nsrun up", flag.ContinueOnError)
	fs.StringVar(&f.file, "f", topology.DefaultFile, "")
	fs.StringVar(&f.exitCodeFrom, "exit-code-from", "", "")
	fs.BoolVar(&f.abortOnExit, "abort-on-exit", false, "")
	fs.Float64Var(&f.timeout, "timeout", 10, "")
	fs.BoolVar(&f.root, "root", false, "")
	fs.BoolVar(&f.isolated, "isolated", false, "")
	fs.StringVar(&f.capture, "capture", "", "")
	fs.StringVar(&f.logLevel, "log-level", "", "")
	if code, err := parseFlags(fs, args, stdout, "up: "); code >= 0 {
		if err != nil {
			return fail(stderr, err)
		}
		return code
	}
	if f.timeout < 0 {
		return fail(stderr, fmt.Errorf("up: --timeout %v: must be 0 or more seconds", f.timeout))
	}
	top, err := topology.Load(f.file)
	if err != nil {
		return fail(stderr, err)
	}
	nodes, err := selectNodes(top, fs.Args())
	if err != nil {
		return fail(stderr, err)
	}
	if f.exitCodeFrom != "" {
		found := false
		for _, n := range nodes {
			found = found || n.Name == f.exitCodeFrom && len(n.Argv) > 0
		}
		if !found {
			return fail(stderr, fmt.Errorf("--exit-code-from %s: no started node of that name has a command", f.exitCodeFrom))
		}
	}
	cfg, err := baseConfig(hostUID, hostGID, f.root)
	if err != nil {
		return fail(stderr, err)
	}
	cfg.File = f.file
	cfg.Up = true
	cfg.Color = isTerminal(1)
	cfg.ExitCodeFrom = f.exitCodeFrom
	cfg.AbortOnExit = f.abortOnExit
	cfg.StopTimeout = f.timeout
	cfg.LogLevel = f.logLevel
	anyCapture := f.capture != ""
	for _, n := range nodes {
		anyCapture = anyCapture || n.Capture
	}
	if anyCapture {
		dir := f.capture
		if dir == "" {
			dir = filepath.Join(filepath.Dir(f.file), "capture")
		}
		if cfg.CaptureDir, err = filepath.Abs(dir); err != nil {
			return fail(stderr, fmt.Errorf("--capture: %w", err))
		}
	}
	for _, s := range top.Subnets {
		cfg.Subnets = append(cfg.Subnets, messages.Subnet{Name: s.Name, CIDR: s.Prefix.String()})
	}
	wd, _ := os.Getwd()
	for _, n := range nodes {
		mn := messages.Node{
			Name: n.Name, Hostname: n.Hostname, Addr: n.Addr.String(), Subnet: n.Subnet,
			Argv: n.Argv, Env: append(os.Environ(), n.Env...), Dir: n.Dir, DependsOn: n.DependsOn,
		}
		if mn.Dir == "" {
			mn.Dir = wd
		}
		mn.Capture = n.Capture || f.capture != ""
		for _, tp := range n.Taps {
			mn.Taps = append(mn.Taps, messages.Tap{Name: tp.Name, Subnet: tp.Subnet})
		}
		if n.Ready != nil {
			mn.ReadyPort = n.Ready.Port
		}
		for _, p := range n.Ports {
			mn.Ports = append(mn.Ports, messages.Port{Host: p.Host, Node: p.Node})
		}
		cfg.Nodes = append(cfg.Nodes, mn)
	}
	return launch(cfg, f.isolated, joined, stderr)
}

// selectNodes returns the named nodes and what they depend on, in start
// order; all nodes when none is named.
func selectNodes(top *topology.Topology, names []string) ([]topology.Node, error) {
	if len(names) == 0 {
		return top.Nodes, nil
	}
	byName := map[string]topology.Node{}
	for _, n := range top.Nodes {
		byName[n.Name] = n
	}
	want := map[string]bool{}
	var add func(string) error
	add = func(name string) error {
		n, ok := byName[name]
		if !ok {
			var known []string
			for _, n := range top.Nodes {
				known = append(known, n.Name)
			}
			return fmt.Errorf("up: no node %q in %s; its nodes: %s", name, top.File, strings.Join(known, ", "))
		}
		if want[name] {
			return nil
		}
		want[name] = true
		for _, d := range n.DependsOn {
			if err := add(d); err != nil {
				return err
			}
		}
		return nil
	}
	for _, name := range names {
		if err := add(name); err != nil {
			return nil, err
		}
	}
	var out []topology.Node
	for _, n := range top.Nodes {
		if want[n.Name] {
			out = append(out, n)
		}
	}
	return out, nil
}

// baseConfig is what every run's configuration starts with.
func baseConfig(hostUID, hostGID int, root bool) (messages.Config, error) {
	rt, err := runstate.RuntimeDir(hostUID)
	if err != nil {
		return messages.Config{}, err
	}
	id := runstate.NewID()
	return messages.Config{
		RunID:      id,
		RunDir:     filepath.Join(runstate.RunsDir(rt), id),
		RuntimeDir: rt,
		Root:       root,
		UID:        hostUID,
		GID:        hostGID,
		NsrunPid:   os.Getpid(),
	}, nil
}

// launch starts the run: it binds published ports in the caller's network
// namespace, joins the helper's gateway unless isolated (re-executing
// nsrun; the second pass arrives here with joined set), and hands over to
// the supervisor.
func launch(cfg messages.Config, isolated, joined bool, stderr io.Writer) int {
	ports, err := portFiles(&cfg, joined)
	if err != nil {
		return fail(stderr, err)
	}
	mode := parent.Isolated
	if !isolated {
		rec, err := install.Load(cfg.UID)
		switch {
		case err == nil && !joined:
			return fail(stderr, joinGateway(cfg.UID, cfg.GID, ports))
		case err == nil:
			mode = parent.Joined
			cfg.Uplink = true
			cfg.RunsCIDR = rec.RunsCIDR.String()
			if rec.Resolver.IsValid() {
				cfg.HostDNS = netip.AddrPortFrom(rec.HostAddr.Addr(), 53).String()
			}
			if p, err := netip.ParsePrefix(cfg.Subnets[0].CIDR); err == nil && rec.RunsCIDR.Overlaps(p) {
				return fail(stderr, fmt.Errorf("subnet %s overlaps the run uplinks %s of nsrun-helper; pick another subnet, or reinstall with another --runs-cidr", p, rec.RunsCIDR))
			}
		default:
			noteIsolated(stderr, cfg.RuntimeDir, err)
		}
	}
	code, err := parent.Run(cfg, mode, ports)
	if err != nil {
		fmt.Fprintln(stderr, "nsrun:", err)
	}
	return code
}

// envPortFds carries the published ports' listening sockets across the
// re-exec into the gateway.
const envPortFds = "_NSRUN_PORT_FDS"

// portFiles binds every published port on 127.0.0.1 (in the caller's
// network namespace, before joining anything), or takes over the sockets
// bound before a re-exec, and numbers them for the supervisor (fd 5...).
func portFiles(cfg *messages.Config, joined bool) ([]*os.File, error) {
	var inherited []int
	if joined {
		for _, s := range strings.Split(os.Getenv(envPortFds), ",") {
			if fd, err := strconv.Atoi(s); err == nil {
				inherited = append(inherited, fd)
			}
		}
		os.Unsetenv(envPortFds)
	}
	var files []*os.File
	for i := range cfg.Nodes {
		n := &cfg.Nodes[i]
		for j := range n.Ports {
			p := &n.Ports[j]
			var f *os.File
			if joined {
				if len(files) >= len(inherited) {
					return nil, errors.New("published port sockets were lost across the re-exec")
				}
				f = os.NewFile(uintptr(inherited[len(files)]), "port")
				unix.CloseOnExec(int(f.Fd()))
			} else {
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.Host))
				if err != nil {
					return nil, fmt.Errorf("nodes.%s.ports: cannot publish 127.0.0.1:%d: %w (is another run of this file, or another program, using it? change the host port)", n.Name, p.Host, err)
				}
				f, err = l.(*net.TCPListener).File()
				l.Close()
				if err != nil {
					return nil, err
				}
			}
			p.Fd = 5 + len(files)
			files = append(files, f)
		}
	}
	return files, nil
}

// envCaller carries the caller's host uid:gid across the re-exec into the
// gateway, where getuid() says 0.
const envCaller = "_NSRUN_CALLER"

// caller returns the caller's uid and gid on the host, and whether this
// process has already joined the gateway (package nsenter did it before
// the Go runtime started).
func caller() (uid, gid int, joined bool) {
	if os.Getenv(nsenter.EnvUserNS) == "" {
		return os.Getuid(), os.Getgid(), false
	}
	for _, k := range []string{nsenter.EnvUserNS, nsenter.EnvNetNS} {
		os.Unsetenv(k)
	}
	v := os.Getenv(envCaller)
	os.Unsetenv(envCaller)
	if _, err := fmt.Sscanf(v, "%d:%d", &uid, &gid); err != nil {
		return os.Getuid(), os.Getgid(), false
	}
	return uid, gid, true
}

// joinGateway re-executes nsrun with the environment that makes package
// nsenter join the helper's namespaces before the Go runtime starts; the
// published ports' sockets stay open across it. It returns only on failure.
func joinGateway(uid, gid int, ports []*os.File) error {
	var fds []string
	for _, f := range ports {
		if _, err := unix.FcntlInt(f.Fd(), unix.F_SETFD, 0); err != nil {
			return err
		}
		fds = append(fds, strconv.Itoa(int(f.Fd())))
	}
	env := append(os.Environ(),
		nsenter.EnvUserNS+"="+install.UserNSPath(uid),
		nsenter.EnvNetNS+"="+install.NetNSPath(uid),
		fmt.Sprintf("%s=%d:%d", envCaller, uid, gid),
		envPortFds+"="+strings.Join(fds, ","))
	err := syscall.Exec("/proc/self/exe", os.Args, env)
	return fmt.Errorf("re-execute into the gateway: %w", err)
}

// noteIsolated says once (per boot) that runs are isolated for want of the
// helper, and how to install it.
func noteIsolated(stderr io.Writer, runtimeDir string, why error) {
	marker := filepath.Join(runtimeDir, ".helper-note-shown")
	if _, err := os.Stat(marker); err == nil {
		return
	}
	if errors.Is(why, install.ErrNotInstalled) {
		fmt.Fprintf(stderr, "nsrun: note: %v, so runs are isolated (guests reach each other, not the host or beyond).\n"+
			"nsrun: to connect them, run once: sudo nsrun-helper install   (this note is shown once)\n", why)
	} else {
		fmt.Fprintf(stderr, "nsrun: note: running isolated: %v\n", why)
	}
	_ = os.WriteFile(marker, nil, 0o600)
}

// foregroundTerminal reports whether stdin is a terminal whose foreground
// process group is ours: then the terminal itself delivers SIGINT to CMD.
func foregroundTerminal() bool {
	pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}
