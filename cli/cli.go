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

	"github.com/nsrun/nsrun/control"
	"github.com/nsrun/nsrun/internal/jsonout"
	"github.com/nsrun/nsrun/runstate"
	"github.com/nsrun/nsrun/supervise"
	_ "github.com/nsrun/nsrun/userns/launch" // starts runs before the Go runtime does
)

// version is set at build time with
// -ldflags "-X github.com/nsrun/nsrun/cli.version=...".
var version = "dev"

// usage is nsrun --help; the net and node verbs come from their table
// (control.Verbs), which the supervisor shares.
var usage = `nsrun runs commands as hosts on networks of their own, without root.

Usage:
  nsrun [flags] -- CMD [ARGS...]     run CMD as one host (172.18.0.1) in a fresh network
  nsrun up [flags] [NODE...]         start the nodes of nsrun.yaml, supervised
` + control.Usage() + `  nsrun attach --run ID --pid PID --ip ADDR [--ip6 ADDR6] [--name NAME]
                                     plug a process you started in its own network
                                     namespace into a run (see README for which)
  nsrun ls [--json]                  list your live runs
  nsrun gc                           remove what killed runs left behind

Flags of nsrun -- CMD:
  --ip ADDR          the host's address in 172.18.0.0/24 (default 172.18.0.1)
  --ip6 ADDR         its IPv6 address in fd00:ac12::/64 (default: the one --ip
                     maps to, fd00:ac12::1 for 172.18.0.1)
  --ipv6=false       no IPv6 at all (by default every run is dual-stack)
  --hostname NAME    the host's hostname (default "node")
  --root             run CMD as uid 0 of the run's user namespace
                     (default: your own uid and gid, as outside)
  --isolated         no uplink to the host or beyond, even when nsrun-helper
                     is installed (without the helper every run is isolated)
  --dry-run [--json] print the run's plan (as JSON) and start nothing

Flags of nsrun up:
  -f FILE            the topology file (default nsrun.yaml)
  --exit-code-from NODE   exit with NODE's exit code; implies --abort-on-exit
  --abort-on-exit    stop every node when one exits; exit with its code
  --timeout SECONDS  between SIGTERM and SIGKILL when stopping (default 10)
  --root, --isolated, --dry-run [--json]   as above

CMD's exit code is nsrun's (128+N if it was killed by signal N); 125 means
nsrun itself failed, 126 that CMD cannot be executed, 127 that it was not
found. SIGINT, SIGTERM and SIGHUP are forwarded to CMD.
`

// Main runs the nsrun command line args (without the program name) and
// returns its exit code. A command line that starts a run must be the
// process's own (os.Args): package launch has already acted on it before
// the Go runtime started.
func Main(args []string, stdout, stderr io.Writer) int {
	return mainCLI(args, stdout, stderr)
}

// commands are nsrun's commands, by their first argument; any other
// command line is `nsrun [flags] -- CMD`. The C launcher (userns/launch)
// knows these names too, to leave them alone ("up" excepted, which starts
// a run): FuzzLaunchDecision holds the two together.
var commands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"gc":     func(_ []string, stdout, stderr io.Writer) int { return cmdGC(stdout, stderr) },
	"ls":     cmdLs,
	"up":     cmdUp,
	"net":    cmdNet,
	"node":   cmdNode,
	"attach": cmdAttach,
}

func mainCLI(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if cmd, ok := commands[args[0]]; ok {
			return cmd(args[1:], stdout, stderr)
		}
	}
	return cmdRun(args, stdout, stderr)
}

// parseFlags parses fs, printing usage for --help and the error for bad
// flags. done says the command is over, with exit code code.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer, what string) (code int, done bool) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0, true
		}
		return fail(stderr, fmt.Errorf("%s%w; see nsrun --help", what, err)), true
	}
	return 0, false
}

func cmdGC(stdout, stderr io.Writer) int {
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
	if code, done := parseFlags(fs, args, stdout, stderr, "ls: "); done {
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
	fmt.Fprintf(stdout, "%-10s %-20s %-18s %s\n", "ID", "FILE", "UPLINK", "NODES")
	for _, r := range runs {
		var nodes []string
		for _, n := range r.Nodes {
			addrs := n.Addr
			if n.Addr6 != "" {
				addrs = strings.TrimPrefix(addrs+","+n.Addr6, ",")
			}
			nodes = append(nodes, n.Name+"="+addrs)
		}
		file, up := r.File, r.Uplink
		if file == "" {
			file = "-"
		}
		if up == "" {
			up = "isolated"
		}
		fmt.Fprintf(stdout, "%-10s %-20s %-18s %s\n", r.ID, file, up, strings.Join(nodes, " "))
	}
	return 0
}

func fail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "nsrun:", err)
	return supervise.ExitSetupFailed
}
