package cli

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/jsonout"
	"github.com/nsrun/nsrun/internal/output"
	"github.com/nsrun/nsrun/internal/runstate"
	"github.com/nsrun/nsrun/internal/supervise"
	"github.com/nsrun/nsrun/internal/verbs"
)

// liveRun finds the live run the user means by id (--run, a whole id or
// a unique prefix; "" for the run of this folder's file, or the user's
// only run: runstate.Select).
func liveRun(id string) (info runstate.Info, runDir string, err error) {
	rt, err := runstate.RuntimeDir(os.Getuid())
	if err != nil {
		return info, "", err
	}
	runs, err := runstate.List(rt)
	if err != nil {
		return info, "", err
	}
	wd, _ := os.Getwd()
	info, err = runstate.Select(runs, id, wd)
	if err != nil {
		return info, "", err
	}
	return info, filepath.Join(runstate.RunsDir(rt), info.ID), nil
}

// runFlag defines --run on fs.
func runFlag(fs *flag.FlagSet) *string { return fs.String("run", "", "") }

// cmdDown is `nsrun down [--run ID]`: it stops the run as Ctrl-C on
// `nsrun up` would (SIGTERM to its nsrun, which passes it on) and
// returns once the run has ended.
func cmdDown(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nsrun down", flag.ContinueOnError)
	id := runFlag(fs)
	if code, done := parseNoArgs(fs, args, stdout, stderr, "down"); done {
		return code
	}
	info, dir, err := liveRun(*id)
	if err != nil {
		return fail(stderr, fmt.Errorf("down: %w", err))
	}
	if info.Pid <= 0 {
		return fail(stderr, fmt.Errorf("down: run %s has no nsrun process on record", info.ID))
	}
	alive := func() bool { return runstate.Alive(filepath.Dir(filepath.Dir(dir)), info.ID) }
	if err := unix.Kill(info.Pid, unix.SIGTERM); err != nil && !errors.Is(err, unix.ESRCH) {
		return fail(stderr, fmt.Errorf("down: stop run %s (nsrun, pid %d): %w", info.ID, info.Pid, err))
	}
	for alive() {
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintln(stdout, "stopped run", info.ID)
	return 0
}

// cmdPs is `nsrun ps [--run ID] [--json]`: the run's nodes, their state,
// addresses and restarts.
func cmdPs(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nsrun ps", flag.ContinueOnError)
	id := runFlag(fs)
	asJSON := fs.Bool("json", false, "")
	if code, done := parseNoArgs(fs, args, stdout, stderr, "ps"); done {
		return code
	}
	info, _, err := liveRun(*id)
	if err != nil {
		return fail(stderr, fmt.Errorf("ps: %w", err))
	}
	if *asJSON {
		if err := jsonout.Write(stdout, info.Nodes); err != nil {
			return fail(stderr, err)
		}
		return 0
	}
	width := len("NAME")
	for _, n := range info.Nodes {
		width = max(width, len(n.Name))
	}
	fmt.Fprintf(stdout, "%-*s  %-12s  %-8s  %s\n", width, "NAME", "STATE", "RESTARTS", "ADDRESSES")
	for _, n := range info.Nodes {
		fmt.Fprintf(stdout, "%-*s  %-12s  %-8d  %s\n", width, n.Name, stateText(n), n.Restarts, nodeAddrs(n))
	}
	return 0
}

// stateText is a node's state as ps prints it: "exited (3)" with its
// exit code.
func stateText(n runstate.NodeInfo) string {
	if n.State == runstate.StateExited {
		return fmt.Sprintf("exited (%d)", n.ExitCode)
	}
	return string(n.State)
}

// nodeAddrs is a node's addresses, comma-separated, or "-".
func nodeAddrs(n runstate.NodeInfo) string {
	var a []string
	for _, s := range []string{n.Addr, n.Addr6} {
		if s != "" {
			a = append(a, s)
		}
	}
	if len(a) == 0 {
		return "-"
	}
	return strings.Join(a, ",")
}

// cmdExec is `nsrun exec [--run ID] [--root] NODE -- CMD`, the same as
// `nsrun net exec`.
func cmdExec(args []string, stdout, stderr io.Writer) int {
	if _, err := verbs.SplitArgs("net", append([]string{"exec"}, args...)); errors.Is(err, verbs.ErrHelp) {
		fmt.Fprint(stdout, helpText("exec", verbs.Verb{}))
		return 0
	}
	return cmdNet(append([]string{"exec"}, args...), stdout, stderr)
}

// logsFlags are the flags of `nsrun logs`.
type logsFlags struct {
	run, since string
	follow     bool
	timestamps bool
}

// cmdLogs is `nsrun logs [--run ID] [-f] [--since WHEN] [NODE...]`: the
// run's output as `nsrun up` printed it (package output's log), of
// every node or of the NODEs named (nsrun's own events only with every
// node); with -f, then what follows until the run ends.
func cmdLogs(args []string, stdout, stderr io.Writer) int {
	var f logsFlags
	fs := flag.NewFlagSet("nsrun logs", flag.ContinueOnError)
	fs.StringVar(&f.run, "run", "", "")
	fs.BoolVar(&f.follow, "f", false, "")
	fs.BoolVar(&f.follow, "follow", false, "")
	fs.StringVar(&f.since, "since", "", "")
	fs.BoolVar(&f.timestamps, "timestamps", false, "")
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return flagError(err, stdout, stderr, "logs")
	}
	var since time.Time
	if f.since != "" {
		if since, err = parseSince(f.since, time.Now()); err != nil {
			return fail(stderr, fmt.Errorf("logs: %w", err))
		}
	}
	info, logPath, live, err := logsOf(f.run)
	if err != nil {
		return fail(stderr, fmt.Errorf("logs: %w", err))
	}
	var known []string
	for _, n := range info.Nodes {
		known = append(known, n.Name)
	}
	for _, name := range names {
		if !slices.Contains(known, name) {
			return fail(stderr, fmt.Errorf("logs: no node %q in run %s; its nodes: %s", name, info.ID, strings.Join(known, ", ")))
		}
	}
	print := func(l output.LogLine) {
		if l.Time.Before(since) || len(names) > 0 && !slices.Contains(names, l.Name) {
			return
		}
		if f.timestamps {
			fmt.Fprintf(stdout, "%s %s\n", l.Time.Format(time.RFC3339Nano), l.Text)
		} else {
			fmt.Fprintln(stdout, l.Text)
		}
	}
	if !f.follow || !live {
		for _, p := range output.Paths(logPath) {
			if err := scanFile(p, print); err != nil {
				return fail(stderr, fmt.Errorf("logs: %w", err))
			}
		}
		return 0
	}
	alive := func() bool { return runstate.Alive(filepath.Dir(filepath.Dir(filepath.Dir(logPath))), info.ID) }
	if err := followLog(logPath, alive, print); err != nil {
		return fail(stderr, fmt.Errorf("logs: %w", err))
	}
	return 0
}

// parseSince reads --since: a duration before now (10m, 1h30m) or a time
// (RFC 3339, such as 2026-12-07T13:20:00Z).
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: write a duration before now, such as 10m or 1h30m, or a time such as 2026-12-07T13:20:00Z", s)
}

// logsOf finds the output log of the run id (as liveRun reads id): a
// live run's, or the one a run started with --keep-logs left. live says
// the run still runs.
func logsOf(id string) (info runstate.Info, logPath string, live bool, err error) {
	info, dir, err := liveRun(id)
	if err == nil {
		return info, filepath.Join(dir, supervise.OutputLog), true, nil
	}
	rt, rerr := runstate.RuntimeDir(os.Getuid())
	if rerr != nil {
		return info, "", false, rerr
	}
	kept := keptRuns(rt)
	if len(kept) == 0 {
		return info, "", false, err
	}
	if id == "" {
		runs, _ := runstate.List(rt)
		if len(runs) > 0 {
			return info, "", false, err // live runs, none chosen: say which
		}
	}
	wd, _ := os.Getwd()
	k, kerr := runstate.Select(kept, id, wd)
	if kerr != nil {
		return info, "", false, fmt.Errorf("%w (nor among the kept logs of ended runs: %v)", err, kerr)
	}
	return k, filepath.Join(runstate.KeptLogsDir(rt), k.ID, supervise.OutputLog), false, nil
}

// keptRuns are the records of ended runs whose logs were kept.
func keptRuns(rt string) []runstate.Info {
	ents, err := os.ReadDir(runstate.KeptLogsDir(rt))
	if err != nil {
		return nil
	}
	var out []runstate.Info
	for _, e := range ents {
		if info, err := runstate.ReadInfo(filepath.Join(runstate.KeptLogsDir(rt), e.Name())); err == nil && info.ID == e.Name() {
			out = append(out, info)
		}
	}
	return out
}

// scanFile calls fn for every line of the output log file path.
func scanFile(path string, fn func(output.LogLine)) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // rotated away meanwhile
	}
	if err != nil {
		return err
	}
	defer f.Close()
	return output.ScanLog(f, fn)
}

// followPoll is how often `nsrun logs -f` looks for new lines.
const followPoll = 100 * time.Millisecond

// followLog prints the output log path (and the file before it) and then
// every line added to it, following it as it rotates, until alive says
// the run has ended and every line is printed.
func followLog(path string, alive func() bool, fn func(output.LogLine)) error {
	if err := scanFile(path+".1", fn); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { f.Close() }()
	r := bufio.NewReader(f)
	var partial string
	for {
		line, err := r.ReadString('\n')
		if err == nil {
			if l, ok := output.ParseLogLine(strings.TrimSuffix(partial+line, "\n")); ok {
				fn(l)
			}
			partial = ""
			continue
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		partial += line
		// At the end of the file: rotated (path is another file now)?
		if rotated(f, path) {
			nf, err := os.Open(path)
			if err == nil {
				// The old file was complete before it was renamed.
				rest, _ := io.ReadAll(r)
				printLines(partial+string(rest), fn)
				f.Close()
				f, r, partial = nf, bufio.NewReader(nf), ""
				continue
			}
		}
		if !alive() {
			// The run has ended: whatever it wrote is in the file.
			rest, _ := io.ReadAll(r)
			printLines(partial+string(rest), fn)
			return nil
		}
		time.Sleep(followPoll)
	}
}

// printLines calls fn for every line of the output log text s.
func printLines(s string, fn func(output.LogLine)) {
	for _, line := range strings.Split(s, "\n") {
		if l, ok := output.ParseLogLine(line); ok {
			fn(l)
		}
	}
}

// rotated says whether path no longer names the open file f.
func rotated(f *os.File, path string) bool {
	var a, b syscall.Stat_t
	if syscall.Fstat(int(f.Fd()), &a) != nil || syscall.Stat(path, &b) != nil {
		return false
	}
	return a.Ino != b.Ino || a.Dev != b.Dev
}
