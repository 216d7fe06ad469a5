// Package cli is nsrun's command line: flag parsing, output and exit
// codes of every nsrun command. Command nsrun is Main; package nstest runs
// the same code when a test binary serves as nsrun (see nstest's doc).
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/exitcode"
	"github.com/nsrun/nsrun/internal/jsonout"
	"github.com/nsrun/nsrun/internal/runstate"
	"github.com/nsrun/nsrun/internal/verbs"
	"github.com/nsrun/nsrun/internal/version"
	_ "github.com/nsrun/nsrun/userns/launch" // starts runs before the Go runtime does
)

// Main runs the nsrun command line args (without the program name) and
// returns its exit code. A command line that starts a run must be the
// process's own (os.Args): package launch has already acted on it before
// the Go runtime started.
func Main(args []string, stdout, stderr io.Writer) int {
	return mainCLI(args, stdout, stderr)
}

// commandNames are nsrun's commands, by their first argument, in the
// order of the help. Any other first word is refused unless it is a path
// (with a /); `nsrun [flags] -- CMD` runs CMD. The C launcher
// (userns/launch) reads command lines by the same rule, to start a run
// for `nsrun up` and `nsrun [flags] -- CMD` only: FuzzLaunchDecision holds
// the two together.
var commandNames = []string{"up", "down", "ps", "logs", "exec", "net", "node", "events", "attach", "faults", "report", "ls", "gc", "doctor", "completion", "help", "version"}

// command is the command named name.
func command(name string) (func(args []string, stdout, stderr io.Writer) int, bool) {
	switch name {
	case "up":
		return cmdUp, true
	case "down":
		return cmdDown, true
	case "ps":
		return cmdPs, true
	case "logs":
		return cmdLogs, true
	case "exec":
		return cmdExec, true
	case "net":
		return cmdNet, true
	case "node":
		return cmdNode, true
	case "events":
		return cmdEvents, true
	case "attach":
		return cmdAttach, true
	case "faults":
		return cmdFaults, true
	case "report":
		return cmdReport, true
	case "ls":
		return cmdLs, true
	case "gc":
		return cmdGC, true
	case "completion":
		return cmdCompletion, true
	case "help":
		return cmdHelp, true
	case "doctor":
		return cmdDoctor, true
	case "version":
		return cmdVersion, true
	}
	return nil, false
}

func mainCLI(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if cmd, ok := command(args[0]); ok {
			return cmd(args[1:], stdout, stderr)
		}
	}
	return cmdRun(args, stdout, stderr)
}

// parseFlags parses fs, printing cmd's help for --help and the error for
// bad flags; cmd is "" for nsrun -- CMD. done says the command is over,
// with exit code code.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer, cmd string) (code int, done bool) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return flagError(err, stdout, stderr, cmd), true
	}
	return 0, false
}

// flagError prints cmd's help for --help (exit 0), or err with a pointer
// to the help (exit 125).
func flagError(err error, stdout, stderr io.Writer, cmd string) int {
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, helpText(cmd, verbs.Verb{}))
		return 0
	}
	if cmd == "" {
		return fail(stderr, fmt.Errorf("%w; see nsrun --help", err))
	}
	return fail(stderr, fmt.Errorf("%s: %w; see nsrun %s --help", cmd, err, cmd))
}

// parseNoArgs is parseFlags for a command that takes no arguments, only
// flags: it also refuses the first argument left.
func parseNoArgs(fs *flag.FlagSet, args []string, stdout, stderr io.Writer, cmd string) (code int, done bool) {
	if code, done := parseFlags(fs, args, stdout, stderr, cmd); done {
		return code, true
	}
	if fs.NArg() > 0 {
		return fail(stderr, fmt.Errorf("%s: unexpected argument %q: it takes none; see nsrun %s --help", cmd, fs.Arg(0), cmd)), true
	}
	return 0, false
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nsrun version", flag.ContinueOnError)
	if code, done := parseNoArgs(fs, args, stdout, stderr, "version"); done {
		return code
	}
	fmt.Fprintln(stdout, "nsrun", version.String())
	return 0
}

func cmdGC(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nsrun gc", flag.ContinueOnError)
	if code, done := parseNoArgs(fs, args, stdout, stderr, "gc"); done {
		return code
	}
	rt, err := runstate.RuntimeDir(os.Getuid())
	if err != nil {
		return fail(stderr, err)
	}
	removed, err := runstate.GCAll(rt, os.Getuid())
	for _, id := range removed {
		fmt.Fprintln(stdout, "removed run", id)
	}
	if err != nil {
		return fail(stderr, err)
	}
	dirs := []string{rt}
	dirs = append(dirs, runstate.OwnFallbacks(rt, os.Getuid())...)
	for _, dir := range dirs {
		if leases, err := gcLeases(dir); err == nil {
			for _, l := range leases {
				fmt.Fprintln(stdout, "released uplink", l)
			}
		}
	}
	return 0
}

func cmdLs(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nsrun ls", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "")
	if code, done := parseNoArgs(fs, args, stdout, stderr, "ls"); done {
		return code
	}
	rt, err := runstate.RuntimeDir(os.Getuid())
	if err != nil {
		return fail(stderr, err)
	}
	runs, err := runstate.List(rt)
	if err != nil {
		return fail(stderr, err)
	}
	if *asJSON {
		if runs == nil {
			runs = []runstate.Info{}
		}
		if err := jsonout.Write(stdout, runs); err != nil {
			return fail(stderr, err)
		}
		return 0
	}
	fmt.Fprintf(stdout, "%-8s  %-16s  %-18s  %-28s  %s\n", "ID", "PROJECT", "UPLINK", "NODES", "FILE")
	for _, r := range runs {
		file, up, project := r.File, r.Uplink, r.Project
		if file == "" {
			file = "-"
		}
		if project == "" {
			project = "-"
		}
		if up == "" {
			up = "isolated"
		}
		fmt.Fprintf(stdout, "%-8s  %-16s  %-18s  %-28s  %s\n", r.ID, project, up, stateCounts(r), file)
	}
	return 0
}

// stateCounts is how many of a run's nodes are in each state: "2 up,
// 1 exited".
func stateCounts(r runstate.Info) string {
	counts := r.Counts()
	var parts []string
	for _, st := range []runstate.State{runstate.StateStarting, runstate.StateUp, runstate.StateReady, runstate.StatePaused, runstate.StateStopped, runstate.StateExited} {
		if c := counts[st]; c > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c, st))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func fail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "nsrun:", advise(err))
	return exitcode.SetupFailed
}

// advise adds to an error of package control what to do about it at the
// command line; control's errors carry none.
func advise(err error) error {
	if errors.Is(err, control.ErrRunGone) {
		return fmt.Errorf("%w (has the run ended? see nsrun ls)", err)
	}
	return err
}
