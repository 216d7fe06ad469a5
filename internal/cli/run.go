package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nsrun/nsrun/internal/faults"
	"github.com/nsrun/nsrun/internal/plan"
	"github.com/nsrun/nsrun/internal/start"
	"github.com/nsrun/nsrun/internal/topology"
	"github.com/nsrun/nsrun/internal/version"
	"github.com/nsrun/nsrun/ipam"
)

// startFlags are the flags that `nsrun -- CMD` and `nsrun up` share: how
// the run starts, or that it is only planned.
type startFlags struct {
	logLevel       string
	root, isolated bool
	dryRun, json   bool
}

// add defines the shared flags on fs.
func (f *startFlags) add(fs *flag.FlagSet) {
	fs.BoolVar(&f.root, "root", false, "")
	fs.BoolVar(&f.isolated, "isolated", false, "")
	fs.StringVar(&f.logLevel, "log-level", "", "")
	fs.BoolVar(&f.dryRun, "dry-run", false, "")
	fs.BoolVar(&f.json, "json", false, "")
}

// start is how package start reads the flags.
func (f startFlags) start() start.Flags {
	return start.Flags{Root: f.root, Isolated: f.isolated, DryRun: f.dryRun, JSON: f.json}
}

// check refuses --json without --dry-run; prefix names the command.
func (f *startFlags) check(prefix string) error {
	if f.json && !f.dryRun {
		return errors.New(prefix + "--json prints the plan: use it with --dry-run")
	}
	return nil
}

// runFlags are the flags of `nsrun [flags] -- CMD`.
type runFlags struct {
	startFlags
	ip, hostname string
	ip6          string
	ipv6         bool
	version      bool
}

// flagSet is the flag set of `nsrun [flags] -- CMD`. Package launch's C
// side reads the same flags; this package's tests hold the two together.
func (f *runFlags) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("nsrun", flag.ContinueOnError)
	fs.StringVar(&f.ip, "ip", ipam.DefaultGuest.String(), "")
	fs.StringVar(&f.ip6, "ip6", "", "")
	fs.BoolVar(&f.ipv6, "ipv6", true, "")
	fs.StringVar(&f.hostname, "hostname", "node", "")
	fs.BoolVar(&f.version, "version", false, "")
	f.startFlags.add(fs)
	return fs
}

// runArgs returns CMD and its arguments from args, the command line of
// nsrun [flags] -- CMD that fs (its flag set) has parsed. CMD must follow
// -- or be a path (hold a /): any other word is refused, naming the
// commands, so that a mistyped command never runs as a program.
func runArgs(fs *flag.FlagSet, args []string) (argv []string, err error) {
	argv = fs.Args()
	flags := args[:len(args)-len(argv)]
	if len(argv) == 0 || endedAtDashDash(fs, flags) || strings.Contains(argv[0], "/") {
		return argv, nil
	}
	given := strings.Join(flags, " ")
	if given != "" {
		given += " "
	}
	if _, ok := command(argv[0]); ok {
		return nil, fmt.Errorf("%s is a command, and nsrun's flags go after it: write nsrun %s %s...; to run a program named %s, write nsrun %s-- %s",
			argv[0], argv[0], given, argv[0], given, argv[0])
	}
	return nil, fmt.Errorf("unknown command %q; known: %s; to run a program, write nsrun %s-- %s",
		argv[0], strings.Join(commandNames, ", "), given, strings.Join(argv, " "))
}

// endedAtDashDash reports whether flags, the arguments package flag read as
// flags of fs (and their values), end with the terminator --, rather than
// with a flag, or with -- as a flag's value.
func endedAtDashDash(fs *flag.FlagSet, flags []string) bool {
	for i := 0; i < len(flags); i++ {
		if flags[i] == "--" {
			return true
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(flags[i], "-"), "-"), "=")
		if hasValue {
			continue
		}
		if fl := fs.Lookup(name); fl != nil {
			if b, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
				continue
			}
		}
		i++ // the flag's value
	}
	return false
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	var f runFlags
	fs := f.flagSet()
	if code, done := parseFlags(fs, args, stdout, stderr, ""); done {
		return code
	}
	argv, err := runArgs(fs, args)
	if err != nil {
		return fail(stderr, err)
	}
	if f.version {
		fmt.Fprintln(stdout, "nsrun", version.String())
		return 0
	}
	if err := f.check(""); err != nil {
		return fail(stderr, err)
	}
	if len(argv) == 0 {
		return fail(stderr, errors.New("no command given: write nsrun [flags] -- CMD [ARGS...]; see nsrun --help"))
	}
	subnet := ipam.DefaultSubnet()
	if f.ipv6 {
		subnet = subnet.Dual()
	}
	addr, err := subnet.ParseGuest("--ip", f.ip)
	if err != nil {
		return fail(stderr, err)
	}
	var addr6 netip.Addr
	switch {
	case f.ip6 != "" && !f.ipv6:
		return fail(stderr, errors.New("--ip6 gives an IPv6 address, --ipv6=false none: drop one of them"))
	case f.ip6 != "":
		if addr6, err = subnet.ParseGuest6("--ip6", f.ip6); err != nil {
			return fail(stderr, err)
		}
	case f.ipv6:
		addr6 = subnet.Guest6(addr)
	}
	if err := ipam.CheckHostname("--hostname", f.hostname); err != nil {
		return fail(stderr, err)
	}
	top := &topology.Topology{
		Subnets: []topology.Subnet{{Name: "default", Subnet: subnet}},
		Nodes:   []topology.Node{{Name: f.hostname, Hostname: f.hostname, Addr: addr, Addr6: addr6, Argv: argv}},
		NoIPv6:  !f.ipv6,
	}
	in := plan.Input{Top: top, LogLevel: f.logLevel}
	return start.Run(in, f.startFlags.start(), stdout, stderr)
}

// upFlags are the flags of `nsrun up`.
type upFlags struct {
	startFlags
	file, exitCodeFrom string
	capture            string
	abortOnExit        bool
	detach, keepLogs   bool
	faults             bool // --faults=false: without the file's faults:
	report             string
	timeout            float64
	timeoutText        string // --timeout as given; read after the launch decision (see FuzzLaunchDecision)
}

// flagSet is the flag set of `nsrun up`, read by package launch too.
func (f *upFlags) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("nsrun up", flag.ContinueOnError)
	fs.StringVar(&f.file, "f", topology.DefaultFile, "")
	fs.StringVar(&f.exitCodeFrom, "exit-code-from", "", "")
	fs.BoolVar(&f.abortOnExit, "abort-on-exit", false, "")
	// A string, read by cmdUp: package flag would refuse a bad number
	// while parsing, where the C launcher, which does not read numbers,
	// has already started the run.
	fs.StringVar(&f.timeoutText, "timeout", "10", "")
	fs.StringVar(&f.capture, "capture", "", "")
	fs.BoolVar(&f.detach, "d", false, "")
	fs.BoolVar(&f.detach, "detach", false, "")
	fs.BoolVar(&f.keepLogs, "keep-logs", false, "")
	fs.BoolVar(&f.faults, "faults", true, "")
	fs.StringVar(&f.report, "report", "", "")
	f.startFlags.add(fs)
	return fs
}

// parseInterspersed parses args with fs, flags anywhere: it returns the
// other arguments, in order; after -- every argument is one.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return words, nil
		}
		if endedAtDashDash(fs, args[:len(args)-len(rest)]) {
			return append(words, rest...), nil
		}
		words = append(words, rest[0])
		args = rest[1:]
	}
}

func cmdUp(args []string, stdout, stderr io.Writer) int {
	var f upFlags
	fs := f.flagSet()
	nodes, err := parseInterspersed(fs, args)
	if err != nil {
		return flagError(err, stdout, stderr, "up")
	}
	if err := f.check("up: "); err != nil {
		return fail(stderr, err)
	}
	if f.timeout, err = strconv.ParseFloat(f.timeoutText, 64); err != nil || f.timeout < 0 || math.IsInf(f.timeout, 0) || math.IsNaN(f.timeout) {
		return fail(stderr, fmt.Errorf("up: --timeout %q: write 0 or more seconds, such as 10 or 0.5", f.timeoutText))
	}
	if f.detach && !f.dryRun {
		return upDetached(args, stdout, stderr)
	}
	top, err := topology.Load(f.file)
	if err != nil {
		return fail(stderr, err)
	}
	abs, err := filepath.Abs(f.file)
	if err != nil {
		return fail(stderr, fmt.Errorf("up: -f %s: %w", f.file, err))
	}
	report := ""
	if f.report != "" {
		if report, err = reportDir(f.report); err != nil {
			return fail(stderr, err)
		}
	}
	var sched *faults.Schedule
	if top.Faults != nil && f.faults {
		if sched, err = compileFaults(f.file, top.Faults, nodeNames(top)); err != nil {
			return fail(stderr, err)
		}
	}
	in := plan.Input{
		Top:    top,
		Select: nodes,
		Run: plan.Run{
			File: f.file, FilePath: abs, Project: projectName(top.Name, abs), KeepLogs: f.keepLogs,
			Up: true, Color: colorWanted(start.IsTerminal(1), os.Getenv("NO_COLOR")),
			ExitCodeFrom: f.exitCodeFrom, AbortOnExit: f.abortOnExit,
			StopTimeout: time.Duration(f.timeout * float64(time.Second)),
			Report:      report,
		},
		LogLevel:   f.logLevel,
		CaptureAll: f.capture != "",
		CaptureDir: f.capture,
	}
	sf := f.startFlags.start()
	sf.Faults = sched
	return start.Run(in, sf, stdout, stderr)
}

// colorWanted says whether up colours its output: on a terminal, unless
// NO_COLOR is set to anything but "" (https://no-color.org).
func colorWanted(terminal bool, noColor string) bool {
	return terminal && noColor == ""
}

// projectName is a run's project: the file's name:, else the name of the
// file's folder (as docker compose names projects).
func projectName(name, file string) string {
	if name != "" {
		return name
	}
	return filepath.Base(filepath.Dir(file))
}
