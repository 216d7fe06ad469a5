// Package start starts a run: it completes the input of a plan with
// what the launcher did (package launch), builds the plan, binds the
// published ports and hands the plan to the supervisor. Both front ends
// start runs through it: the nsrun command line (`nsrun up`, `nsrun --
// CMD`) and a test binary that package nstest runs as nsrun.
package start

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/exitcode"
	"github.com/nsrun/nsrun/internal/faults"
	"github.com/nsrun/nsrun/internal/install"
	"github.com/nsrun/nsrun/internal/jsonout"
	"github.com/nsrun/nsrun/internal/plan"
	"github.com/nsrun/nsrun/internal/runstate"
	"github.com/nsrun/nsrun/internal/supervise"
	"github.com/nsrun/nsrun/internal/topology"
	"github.com/nsrun/nsrun/userns"
	"github.com/nsrun/nsrun/userns/launch"
)

// Flags are how a run starts, from the flags `nsrun -- CMD` and `nsrun
// up` share.
type Flags struct {
	Root, Isolated bool // --root, --isolated
	DryRun, JSON   bool // --dry-run, --json
	// Faults is the file's checked fault schedule, which the supervisor
	// runs (nil: none, or --faults=false).
	Faults *faults.Schedule
}

// fail prints err as nsrun's message and returns nsrun's exit code for it.
func fail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "nsrun:", err)
	return exitcode.SetupFailed
}

// Up starts the run of the nsrun.yaml at file with its every node (what
// `nsrun up -f FILE --timeout T [--capture DIR]` does with no other flag),
// for package nstest's test binary.
// id, when not "", is the run's id (runstate.NewID's form).
func Up(id, file string, stopTimeout time.Duration, captureDir string, f Flags, stdout, stderr io.Writer) int {
	top, err := topology.Load(file)
	if err != nil {
		return fail(stderr, err)
	}
	in := plan.Input{
		Top:        top,
		Run:        plan.Run{ID: id, File: file, Up: true, Color: IsTerminal(1), StopTimeout: stopTimeout},
		CaptureAll: captureDir != "",
		CaptureDir: captureDir,
	}
	return Run(in, f, stdout, stderr)
}

// Run completes in with what the launcher did (or, for a dry run, would
// do), builds the plan, and carries it out or prints it (f.DryRun, as
// JSON with f.JSON); it returns nsrun's exit code, which, in the
// supervisor, it announces to the launcher first (launch.Exiting).
func Run(in plan.Input, f Flags, stdout, stderr io.Writer) (code int) {
	defer func() { launch.Exiting(code) }()
	root, isolated := f.Root, f.Isolated
	var joined bool
	unprivPort := -1 // the launcher's net.ipv4.ip_unprivileged_port_start
	if f.DryRun {
		in.User.UID, in.User.GID = os.Getuid(), os.Getgid()
		_, err := install.Load(in.User.UID)
		joined = !isolated && err == nil
	} else {
		st := launch.Get()
		if err := launched(st, root); err != nil {
			return fail(stderr, err)
		}
		in.User.UID, in.User.GID = st.UID, st.GID
		unprivPort = st.UnprivPort
		in.Run.NsrunPid, in.Run.Terminal = st.NsrunPid, st.Terminal
		joined = st.Joined
	}
	switch {
	case root:
		in.User.Mode = plan.UserRoot
	case joined && in.User.UID != 0:
		// Only the gateway's user namespace maps the caller to uid 0.
		in.User.Mode = plan.UserMapped
	default:
		in.User.Mode = plan.UserCaller
	}
	runtimeDir := runstate.RuntimeDir
	if f.DryRun {
		runtimeDir = runstate.PlannedRuntimeDir // a dry run creates nothing
	}
	rt, err := runtimeDir(in.User.UID)
	if err != nil {
		return fail(stderr, err)
	}
	if in.Run.ID == "" {
		in.Run.ID = runstate.NewID()
	}
	in.Run.Dir = filepath.Join(runstate.RunsDir(rt), in.Run.ID)
	in.Run.RuntimeDir = rt
	in.Env = withoutEnv(os.Environ(), EnvDetachFD)
	in.Dir, _ = os.Getwd()
	uplinkIPv6 := false
	if joined {
		rec, err := install.Load(in.User.UID)
		if err != nil {
			return fail(stderr, fmt.Errorf("%w\nrun `sudo nsrun-helper install` again, or pass --isolated", err))
		}
		uplinkIPv6 = rec.Gateway6.IsValid()
		in.Uplink = &plan.UplinkInput{GatewayNS: install.NetNSPath(in.User.UID), Pool: rec.RunsCIDR, IPv6: uplinkIPv6}
		in.Uplink.HostPool, in.Uplink.HostPool6 = rec.HostPools()
		in.Uplink.Host = rec.HostAddr.Addr()
		if rec.HostAddr6.IsValid() {
			in.Uplink.Host6 = rec.HostAddr6.Addr()
		}
		if rec.Resolver.IsValid() {
			in.Uplink.HostDNS = netip.AddrPortFrom(rec.HostAddr.Addr(), 53)
		}
	}
	p, err := plan.Build(in)
	if err != nil {
		return fail(stderr, err)
	}
	if f.DryRun {
		// This process is still in the caller's network namespace, whose
		// limit the launcher's bind would meet.
		if err := checkPrivilegedPorts(p, os.Geteuid(), readUnprivilegedPortStart()); err != nil {
			return fail(stderr, err)
		}
		if f.JSON {
			if err := jsonout.Write(stdout, p); err != nil {
				return fail(stderr, err)
			}
			return 0
		}
		if err := p.Write(stdout); err != nil {
			return fail(stderr, err)
		}
		return 0
	}
	if !joined && !isolated {
		_, err := install.Load(in.User.UID)
		noteIsolated(stderr, rt, err)
	}
	if in.Uplink != nil && !uplinkIPv6 && planHasIPv6(p) {
		noteIPv6Inside(stderr, rt)
	}
	// The launcher read the limit where it binds, in the caller's
	// network namespace (0 for root there): refuse before binding.
	if unprivPort >= 0 {
		if err := checkPrivilegedPorts(p, in.User.UID, unprivPort); err != nil {
			return fail(stderr, err)
		}
	}
	listeners, err := bindPorts(p, launcherBind)
	if err != nil {
		return fail(stderr, err)
	}
	code, err = supervise.Run(p, supervise.Handles{LauncherGone: launch.LauncherGone(), CallerPIDNS: launch.CallerPIDNS(), Listeners: listeners, Detached: detachedPipe(), Signals: launch.Signals(), Faults: f.Faults})
	if err != nil {
		fmt.Fprintln(stderr, "nsrun:", err)
	}
	return code
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

// noteIsolated says once (per boot) that runs are isolated for want of the
// helper, and how to install it.
func noteIsolated(stderr io.Writer, runtimeDir string, why error) {
	marker := filepath.Join(runtimeDir, ".helper-note-shown")
	if _, err := os.Stat(marker); err == nil {
		return
	}
	if errors.Is(why, install.ErrNotInstalled) {
		fmt.Fprintf(stderr, "nsrun: note: %v, so runs are isolated (guests reach each other, not the host or beyond).\n"+
			"nsrun: to connect them, run once: sudo %s install   (this note is shown once)\n", why, helperPath(os.Executable, exec.LookPath))
	} else {
		fmt.Fprintf(stderr, "nsrun: note: running isolated: %v\n", why)
	}
	_ = os.WriteFile(marker, nil, 0o600)
}

// helperPath is where nsrun-helper is, for the note that says to run
// `sudo nsrun-helper install`: beside nsrun (make install and go install
// put it there), else found in PATH, as an absolute path, since sudo's
// PATH may not hold its folder; else just its name.
func helperPath(executable func() (string, error), lookPath func(string) (string, error)) string {
	if exe, err := executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "nsrun-helper")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := lookPath("nsrun-helper"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return "nsrun-helper"
}

// planHasIPv6 reports whether some node of p has an IPv6 address.
func planHasIPv6(p *plan.Plan) bool {
	for _, n := range p.Nodes {
		if n.Addr6.IsValid() {
			return true
		}
	}
	return false
}

// noteIPv6Inside says once (per boot) that IPv6 stays inside runs: the
// helper's uplink carries IPv4 only (the host has no IPv6).
func noteIPv6Inside(stderr io.Writer, runtimeDir string) {
	marker := filepath.Join(runtimeDir, ".ipv6-note-shown")
	if _, err := os.Stat(marker); err == nil {
		return
	}
	fmt.Fprintf(stderr, "nsrun: note: IPv6 stays inside runs: nodes reach each other over IPv6, but the uplink to the host and beyond carries IPv4 only, as the host has no IPv6 (or the admin set host-cidr6 = none) at nsrun-helper install (this note is shown once)\n")
	_ = os.WriteFile(marker, nil, 0o600)
}

// IsTerminal reports whether fd is a terminal.
func IsTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// EnvDetachFD names, in the run that `nsrun up -d` starts, the file
// descriptor of the pipe to the nsrun that waits for it
// (supervise.Handles.Detached). It is no part of the nodes' environment.
const EnvDetachFD = "NSRUN_DETACH_FD"

// DetachedEnv is the environment of the `nsrun up` that `nsrun up -d`
// starts: env with EnvDetachFD naming fd 3, the first of the command's
// ExtraFiles, where the caller passes the pipe it waits on.
func DetachedEnv(env []string) []string {
	return append(withoutEnv(env, EnvDetachFD), EnvDetachFD+"=3")
}

// detachedPipe is the pipe to the nsrun that waits for this detached
// run (EnvDetachFD), or nil.
func detachedPipe() *os.File {
	v := os.Getenv(EnvDetachFD)
	if v == "" {
		return nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil
	}
	unix.CloseOnExec(fd) // no node inherits it
	return os.NewFile(uintptr(fd), "detach")
}

// withoutEnv returns env without the variable name.
func withoutEnv(env []string, name string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
