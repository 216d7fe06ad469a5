// Command nsrun runs programs as hosts on networks of their own, rootless.
// See README.md for the user's guide.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/install"
	"github.com/nsrun/nsrun/ipam"
	"github.com/nsrun/nsrun/runstate"
	"github.com/nsrun/nsrun/supervise"
	"github.com/nsrun/nsrun/userns/child"
	"github.com/nsrun/nsrun/userns/messages"
	"github.com/nsrun/nsrun/userns/nsenter" // joins the gateway before the Go runtime starts
	"github.com/nsrun/nsrun/userns/parent"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `nsrun runs a command as a host on a network of its own, without root.

Usage:
  nsrun [flags] -- CMD [ARGS...]    run CMD as one host (172.18.0.1) in a fresh network
  nsrun gc                          remove what killed runs left behind
  nsrun ls [--json]                 list your live runs

Flags:
  --ip ADDR          the host's address in 172.18.0.0/24 (default 172.18.0.1)
  --hostname NAME    the host's hostname (default "node")
  --root             run CMD as uid 0 of the run's user namespace
                     (default: your own uid and gid, as outside)
  --isolated         no uplink to the host or beyond, even when nsrun-helper
                     is installed (without the helper every run is isolated)
  --help, --version

CMD's exit code is nsrun's (128+N if it was killed by signal N); 125 means
nsrun itself failed, 126 that CMD cannot be executed, 127 that it was not
found. SIGINT, SIGTERM and SIGHUP are forwarded to CMD.
`

func main() {
	if child.IsSupervisor() {
		os.Exit(supervise.Main())
	}
	os.Exit(mainCLI(os.Args[1:], os.Stdout, os.Stderr))
}

func mainCLI(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "gc":
			return cmdGC(stdout, stderr)
		case "ls":
			return cmdLs(args[1:], stdout, stderr)
		}
	}
	return cmdRun(args, stdout, stderr)
}

// runFlags are the flags of `nsrun [flags] -- CMD`.
type runFlags struct {
	ip, hostname   string
	root, isolated bool
	version        bool
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	var f runFlags
	fs := flag.NewFlagSet("nsrun", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.ip, "ip", ipam.DefaultGuest.String(), "")
	fs.StringVar(&f.hostname, "hostname", "node", "")
	fs.BoolVar(&f.root, "root", false, "")
	fs.BoolVar(&f.isolated, "isolated", false, "")
	fs.BoolVar(&f.version, "version", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		return fail(stderr, fmt.Errorf("%w; see nsrun --help", err))
	}
	if f.version {
		fmt.Fprintln(stdout, "nsrun", version)
		return 0
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return fail(stderr, errors.New("no command given: write nsrun [flags] -- CMD [ARGS...]; see nsrun --help"))
	}
	hostUID, hostGID, joined := caller()
	cfg, err := runConfig(f, argv, hostUID, hostGID)
	if err != nil {
		return fail(stderr, err)
	}
	mode := parent.Isolated
	if !f.isolated {
		rec, err := install.Load(hostUID)
		switch {
		case err == nil && !joined:
			return fail(stderr, joinGateway(hostUID, hostGID))
		case err == nil:
			mode = parent.Joined
			cfg.Uplink = true
			cfg.RunsCIDR = rec.RunsCIDR.String()
			if rec.Resolver.IsValid() {
				cfg.HostDNS = netip.AddrPortFrom(rec.HostAddr.Addr(), 53).String()
			}
		default:
			noteIsolated(stderr, cfg.RuntimeDir, err)
		}
	}
	code, err := parent.Run(cfg, mode)
	if err != nil {
		fmt.Fprintln(stderr, "nsrun:", err)
	}
	return code
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
// nsenter join the helper's namespaces before the Go runtime starts. It
// returns only on failure.
func joinGateway(uid, gid int) error {
	env := append(os.Environ(),
		nsenter.EnvUserNS+"="+install.UserNSPath(uid),
		nsenter.EnvNetNS+"="+install.NetNSPath(uid),
		fmt.Sprintf("%s=%d:%d", envCaller, uid, gid))
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

// runConfig validates the flags and builds the supervisor's configuration.
// Nothing is created before it succeeds.
func runConfig(f runFlags, argv []string, hostUID, hostGID int) (messages.Config, error) {
	subnet := ipam.DefaultSubnet()
	addr, err := subnet.ParseGuest("--ip", f.ip)
	if err != nil {
		return messages.Config{}, err
	}
	if err := ipam.CheckHostname("--hostname", f.hostname); err != nil {
		return messages.Config{}, err
	}
	rt, err := runstate.RuntimeDir(hostUID)
	if err != nil {
		return messages.Config{}, err
	}
	wd, err := os.Getwd()
	if err != nil {
		return messages.Config{}, fmt.Errorf("current folder: %w", err)
	}
	id := runstate.NewID()
	return messages.Config{
		RunID:      id,
		RunDir:     filepath.Join(runstate.RunsDir(rt), id),
		RuntimeDir: rt,
		Subnet:     subnet.Prefix.String(),
		Nodes: []messages.Node{{
			Name:     f.hostname,
			Hostname: f.hostname,
			Addr:     addr.String(),
			Argv:     argv,
			Env:      os.Environ(),
			Dir:      wd,
		}},
		Root:     f.root,
		UID:      hostUID,
		GID:      hostGID,
		Terminal: foregroundTerminal(),
	}, nil
}

// foregroundTerminal reports whether stdin is a terminal whose foreground
// process group is ours: then the terminal itself delivers SIGINT to CMD.
func foregroundTerminal() bool {
	pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}

func cmdGC(stdout, stderr io.Writer) int {
	rt, err := runstate.RuntimeDir(os.Getuid())
	if err != nil {
		return fail(stderr, err)
	}
	removed, err := runstate.GC(rt)
	for _, id := range removed {
		fmt.Fprintln(stdout, "removed run", id)
	}
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}

func cmdLs(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nsrun ls", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "")
	if err := fs.Parse(args); err != nil {
		return fail(stderr, fmt.Errorf("ls: %w; usage: nsrun ls [--json]", err))
	}
	rt, err := runstate.RuntimeDir(os.Getuid())
	if err != nil {
		return fail(stderr, err)
	}
	runs, err := runstate.List(rt)
	if err != nil {
		return fail(stderr, err)
	}
	return printRuns(stdout, runs, *asJSON)
}

func printRuns(w io.Writer, runs []runstate.Info, asJSON bool) int {
	if asJSON {
		if runs == nil {
			runs = []runstate.Info{}
		}
		writeJSON(w, runs)
		return 0
	}
	fmt.Fprintf(w, "%-10s %-8s %s\n", "ID", "NODES", "ADDRESSES")
	for _, r := range runs {
		var addrs []string
		for _, n := range r.Nodes {
			addrs = append(addrs, n.Name+"="+n.Addr)
		}
		fmt.Fprintf(w, "%-10s %-8d %s\n", r.ID, len(r.Nodes), strings.Join(addrs, " "))
	}
	return 0
}

func fail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "nsrun:", err)
	return messages.ExitSetupFailed
}
