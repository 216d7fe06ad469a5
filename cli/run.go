package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/install"
	"github.com/nsrun/nsrun/ipam"
	"github.com/nsrun/nsrun/runconfig"
	"github.com/nsrun/nsrun/runstate"
	"github.com/nsrun/nsrun/supervise"
	"github.com/nsrun/nsrun/topology"
	"github.com/nsrun/nsrun/userns"
	"github.com/nsrun/nsrun/userns/launch"
)

// runFlags are the flags of `nsrun [flags] -- CMD`.
type runFlags struct {
	ip, hostname   string
	logLevel       string
	root, isolated bool
	version        bool
}

// flagSet is the flag set of `nsrun [flags] -- CMD`. Package launch's C
// side reads the same flags; this package's tests hold the two together.
func (f *runFlags) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("nsrun", flag.ContinueOnError)
	fs.StringVar(&f.ip, "ip", ipam.DefaultGuest.String(), "")
	fs.StringVar(&f.hostname, "hostname", "node", "")
	fs.BoolVar(&f.root, "root", false, "")
	fs.BoolVar(&f.isolated, "isolated", false, "")
	fs.BoolVar(&f.version, "version", false, "")
	fs.StringVar(&f.logLevel, "log-level", "", "")
	return fs
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	var f runFlags
	fs := f.flagSet()
	if code, done := parseFlags(fs, args, stdout, stderr, ""); done {
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
	st := launch.Get()
	if err := launched(st, f.root); err != nil {
		return fail(stderr, err)
	}
	cfg, err := baseConfig(st)
	if err != nil {
		return fail(stderr, err)
	}
	wd, _ := os.Getwd()
	cfg.Subnets = []runconfig.Subnet{{Name: "default", CIDR: subnet.Prefix.String()}}
	cfg.Nodes = []runconfig.Node{{
		Name: f.hostname, Hostname: f.hostname, Addr: addr.String(),
		Argv: argv, Env: os.Environ(), Dir: wd,
	}}
	cfg.LogLevel = f.logLevel
	return start(cfg, st, f.isolated, stderr)
}

// upFlags are the flags of `nsrun up`.
type upFlags struct {
	file, exitCodeFrom string
	capture, logLevel  string
	abortOnExit        bool
	timeout            float64
	root, isolated     bool
}

// flagSet is the flag set of `nsrun up`, read by package launch too.
func (f *upFlags) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("nsrun up", flag.ContinueOnError)
	fs.StringVar(&f.file, "f", topology.DefaultFile, "")
	fs.StringVar(&f.exitCodeFrom, "exit-code-from", "", "")
	fs.BoolVar(&f.abortOnExit, "abort-on-exit", false, "")
	fs.Float64Var(&f.timeout, "timeout", 10, "")
	fs.BoolVar(&f.root, "root", false, "")
	fs.BoolVar(&f.isolated, "isolated", false, "")
	fs.StringVar(&f.capture, "capture", "", "")
	fs.StringVar(&f.logLevel, "log-level", "", "")
	return fs
}

func cmdUp(args []string, stdout, stderr io.Writer) int {
	var f upFlags
	fs := f.flagSet()
	if code, done := parseFlags(fs, args, stdout, stderr, "up: "); done {
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
	st := launch.Get()
	if err := launched(st, f.root); err != nil {
		return fail(stderr, err)
	}
	cfg, err := baseConfig(st)
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
		if !s.HasIPv4() {
			return fail(stderr, fmt.Errorf("%s: subnets.%s: IPv6-only subnets are not wired to runs yet; give it an IPv4 prefix too (ipv4: ...)", top.File, s.Name))
		}
		cfg.Subnets = append(cfg.Subnets, runconfig.Subnet{Name: s.Name, CIDR: s.Prefix.String()})
	}
	wd, _ := os.Getwd()
	for _, n := range nodes {
		mn := runconfig.Node{
			Name: n.Name, Hostname: n.Hostname, Addr: n.Addr.String(), Subnet: n.Subnet,
			Argv: n.Argv, Env: append(os.Environ(), n.Env...), Dir: n.Dir, DependsOn: n.DependsOn,
		}
		if mn.Dir == "" {
			mn.Dir = wd
		}
		mn.Capture = n.Capture || f.capture != ""
		for _, tp := range n.Taps {
			mn.Taps = append(mn.Taps, runconfig.Tap{Name: tp.Name, Subnet: tp.Subnet})
		}
		if n.Ready != nil {
			mn.ReadyPort = n.Ready.Port
		}
		for _, p := range n.Ports {
			mn.Ports = append(mn.Ports, runconfig.Port{Host: p.Host, Node: p.Node})
		}
		cfg.Nodes = append(cfg.Nodes, mn)
	}
	return start(cfg, st, f.isolated, stderr)
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

// launched checks that the launcher (package launch) made this process the
// run's supervisor, as it does for every command line that starts a run.
func launched(st launch.State, root bool) error {
	switch {
	case st.Err != nil && st.Joined && !st.Launched:
		return fmt.Errorf("cannot enter the gateway of nsrun-helper: %w\n"+
			"run `sudo nsrun-helper install` again (see `nsrun-helper status`), or pass --isolated", st.Err)
	case st.Err != nil && (errors.Is(st.Err, unix.EPERM) || errors.Is(st.Err, unix.ENOSPC) || errors.Is(st.Err, unix.EACCES)):
		return fmt.Errorf("%w\n%s", st.Err, userns.DiagnoseUserNS())
	case st.Err != nil:
		return st.Err
	case !st.Launched:
		return errors.New("internal error: the launcher did not start this run; please report this command line")
	case st.Root != root:
		return errors.New("internal error: the launcher read --root differently; please report this command line")
	}
	return nil
}

// baseConfig is what every run's configuration starts with.
func baseConfig(st launch.State) (runconfig.Config, error) {
	rt, err := runstate.RuntimeDir(st.UID)
	if err != nil {
		return runconfig.Config{}, err
	}
	id := runstate.NewID()
	return runconfig.Config{
		LauncherGone: launch.LauncherGone(),
		RunID:        id,
		RunDir:       filepath.Join(runstate.RunsDir(rt), id),
		RuntimeDir:   rt,
		Root:         st.Root,
		UID:          st.UID,
		GID:          st.GID,
		NsrunPid:     st.NsrunPid,
		Terminal:     st.Terminal,
		// Only the gateway's user namespace maps the caller to uid 0.
		MapUser: st.Joined && !st.Root && st.UID != 0,
	}, nil
}

// start binds the published ports, connects the run to the helper's gateway when the
// launcher joined it, and carries out the run.
func start(cfg runconfig.Config, st launch.State, isolated bool, stderr io.Writer) int {
	if err := bindPorts(&cfg); err != nil {
		return fail(stderr, err)
	}
	switch {
	case st.Joined:
		rec, err := install.Load(cfg.UID)
		if err != nil {
			return fail(stderr, fmt.Errorf("%w\nrun `sudo nsrun-helper install` again, or pass --isolated", err))
		}
		cfg.Uplink = true
		cfg.GatewayNS = install.NetNSPath(cfg.UID)
		cfg.RunsCIDR = rec.RunsCIDR.String()
		if rec.Resolver.IsValid() {
			cfg.HostDNS = netip.AddrPortFrom(rec.HostAddr.Addr(), 53).String()
		}
		for _, s := range cfg.Subnets {
			if p, err := netip.ParsePrefix(s.CIDR); err == nil && rec.RunsCIDR.Overlaps(p) {
				return fail(stderr, fmt.Errorf("subnet %s overlaps the run uplinks %s of nsrun-helper; pick another subnet, or reinstall with another --runs-cidr", p, rec.RunsCIDR))
			}
		}
	case !isolated:
		_, err := install.Load(cfg.UID)
		noteIsolated(stderr, cfg.RuntimeDir, err)
	}
	code, err := supervise.Run(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "nsrun:", err)
	}
	return code
}

// bindPorts binds every published port on the caller's 127.0.0.1, through
// the launcher (this process is already in the run's bridge namespace).
func bindPorts(cfg *runconfig.Config) error {
	for i := range cfg.Nodes {
		n := &cfg.Nodes[i]
		for j := range n.Ports {
			p := &n.Ports[j]
			f, err := launch.BindPort(p.Host)
			if err != nil {
				return fmt.Errorf("nodes.%s.ports: cannot publish 127.0.0.1:%d: %w (is another run of this file, or another program, using it? change the host port)", n.Name, p.Host, err)
			}
			p.Listener = f
		}
	}
	return nil
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

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}
