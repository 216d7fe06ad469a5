package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/exitcode"
	"github.com/nsrun/nsrun/internal/jsonout"
	"github.com/nsrun/nsrun/internal/latency"
	"github.com/nsrun/nsrun/internal/linkengine"
	"github.com/nsrun/nsrun/internal/partition"
	"github.com/nsrun/nsrun/internal/runstate"
	"github.com/nsrun/nsrun/internal/verbs"
	"github.com/nsrun/nsrun/ipam"
)

// envControl is set in a node with control: true: the control socket of
// its run, so that `nsrun net ...` works from inside it without --run.
const envControl = "NSRUN_CONTROL"

func cmdNet(args []string, stdout, stderr io.Writer) int {
	a, err := verbs.SplitArgs("net", args)
	if errors.Is(err, verbs.ErrHelp) {
		fmt.Fprint(stdout, helpText("net", a.Verb))
		return 0
	}
	if err != nil {
		return fail(stderr, err)
	}
	if a.Verb.Name == "exec" {
		return cmdNetExec(a, stdout, stderr)
	}
	path, err := controlPath(a.RunID)
	if err != nil {
		return fail(stderr, fmt.Errorf("net %s: %w", a.Verb.Name, err))
	}
	c, err := verbs.ParseNet(a, runNodes(path))
	if err != nil {
		return fail(stderr, err)
	}
	out, st, err := control.NewClient(path).Net(c)
	if err != nil {
		return fail(stderr, err)
	}
	if _, js := a.Flags["--json"]; js && c.Show != nil {
		if err := jsonout.Write(stdout, showJSON(st)); err != nil {
			return fail(stderr, err)
		}
		return 0
	}
	if out != "" {
		fmt.Fprintln(stdout, out)
	}
	return 0
}

// showJSON is `nsrun net show --json`: the state in the units people
// read (a loss in percent, a rate as "1000000bit", a delay as "100ms").
func showJSON(st control.NetState) any {
	type faults struct {
		Loss      float64 `json:"loss_percent,omitempty"`
		Rate      string  `json:"rate,omitempty"`
		Delay     string  `json:"delay,omitempty"`
		Jitter    string  `json:"jitter,omitempty"`
		Reorder   float64 `json:"reorder_percent,omitempty"`
		Duplicate float64 `json:"duplicate_percent,omitempty"`
		Corrupt   float64 `json:"corrupt_percent,omitempty"`
		LossPPM   uint32  `json:"loss_ppm,omitempty"`
	}
	type pairDelay struct {
		From   string        `json:"from"`
		To     string        `json:"to"`
		Delay  time.Duration `json:"delay_ns"`
		Jitter time.Duration `json:"jitter_ns,omitempty"`
	}
	v := struct {
		Partition partition.State              `json:"partition"`
		Blocked   [][2]string                  `json:"blocked"`
		Faults    map[string]faults            `json:"faults"`
		Nodes     map[string]control.NodeAddrs `json:"nodes"`
		Latency   struct {
			latency.Matrix
			Pairs []pairDelay `json:"pairs"`
		} `json:"latency"`
		Engine struct {
			Path    string                          `json:"path"`
			Spliced []string                        `json:"spliced"`
			Stats   map[string]linkengine.LinkStats `json:"stats"`
		} `json:"engine"`
	}{Partition: st.Partition, Blocked: st.Blocked, Faults: map[string]faults{}, Nodes: st.Nodes}
	for name, f := range st.Faults {
		out := faults{Loss: f.Loss() * 100, Reorder: f.ReorderPercent, Duplicate: f.DuplicatePercent, Corrupt: f.CorruptPercent, LossPPM: f.LossPPM}
		out.Rate, out.Delay, out.Jitter = f.Words()
		v.Faults[name] = out
	}
	v.Latency.Matrix = st.Latency
	for _, p := range st.Pairs {
		v.Latency.Pairs = append(v.Latency.Pairs, pairDelay{p.From, p.To, p.Delay, p.Jitter})
	}
	v.Engine.Path = "nsrun's link engine, user space (netem is never used)"
	v.Engine.Spliced, v.Engine.Stats = st.Spliced, st.Stats
	if v.Engine.Spliced == nil {
		v.Engine.Spliced = []string{}
	}
	return v
}

// cmdNode sends a node life-cycle verb to the run's supervisor.
func cmdNode(args []string, stdout, stderr io.Writer) int {
	a, err := verbs.SplitArgs("node", args)
	if errors.Is(err, verbs.ErrHelp) {
		fmt.Fprint(stdout, helpText("node", a.Verb))
		return 0
	}
	if err != nil {
		return fail(stderr, err)
	}
	path, err := controlPath(a.RunID)
	if err != nil {
		return fail(stderr, fmt.Errorf("node %s: %w", a.Verb.Name, err))
	}
	calls, err := verbs.ParseNodes(a, runNodes(path))
	if err != nil {
		return fail(stderr, err)
	}
	// One call per node, in the order given; the first failure ends it.
	client := control.NewClient(path)
	for _, c := range calls {
		if err := client.Node(c); err != nil {
			return fail(stderr, err)
		}
		fmt.Fprintf(stdout, "%s: %s done\n", c.Node, c.Action)
	}
	return 0
}

// runNodes are the node names of the run whose control socket is path, as
// its record says; nil while the run is starting (not checkable yet).
func runNodes(path string) []string {
	info, err := runstate.ReadInfo(filepath.Dir(path))
	if err != nil || len(info.Nodes) == 0 {
		return nil
	}
	var names []string
	for _, n := range info.Nodes {
		names = append(names, n.Name)
	}
	return names
}

// controlPath finds the control socket of run id (--run: a whole id or
// a unique prefix), or of the run this process is a node of; without
// --run on the host, of the run of this folder's file, or the user's
// only run (runstate.Select).
func controlPath(id string) (string, error) {
	if id == "" {
		if p := os.Getenv(envControl); p != "" {
			return p, nil
		}
		if id := os.Getenv("NSRUN_RUN"); id != "" {
			return "", fmt.Errorf("node %s has no control of run %s: give it `control: true` in the file (a trusted node), or run this from the host with --run %s", os.Getenv("NSRUN_NODE"), id, id)
		}
	}
	_, dir, err := liveRun(id)
	if err != nil {
		return "", err
	}
	return control.Path(dir), nil
}

func cmdNetExec(a verbs.Args, stdout, stderr io.Writer) int {
	_, root := a.Flags["--root"]
	rest := a.Rest
	if len(rest) < 2 {
		return fail(stderr, errors.New("net exec: write nsrun net exec [--run ID] NODE -- CMD [ARGS...]"))
	}
	argv := rest[1:]
	if argv[0] == "--" {
		argv = argv[1:]
	}
	wd, _ := os.Getwd()
	ex := control.ExecCall{Node: rest[0], Argv: argv, Env: os.Environ(), Dir: wd, Root: root}
	if err := ex.Check(); err != nil {
		return fail(stderr, fmt.Errorf("%w; write nsrun net exec [--run ID] NODE -- CMD [ARGS...]", err))
	}
	path, err := controlPath(a.RunID)
	if err != nil {
		return fail(stderr, fmt.Errorf("net exec: %w", err))
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	proc, err := control.NewClient(path).Exec(ex, os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		return failExec(stderr, err)
	}
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := proc.Wait()
		done <- result{code, err}
	}()
	for {
		select {
		case s := <-sigs:
			_ = proc.Signal(s.(syscall.Signal))
		case r := <-done:
			if r.err != nil {
				return failExec(stderr, r.err)
			}
			return r.code
		}
	}
}

// failExec reports exec's error with the exit code the run gave it (127
// for a command not found, 126 for one that cannot run).
func failExec(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "nsrun: net exec:", advise(err))
	var e *control.Error
	if errors.As(err, &e) && e.Code != 0 {
		return e.Code
	}
	return exitcode.SetupFailed
}

// gcLeases releases the uplink leases of dead runs.
func gcLeases(rt string) ([]string, error) {
	l := &ipam.Leases{Dir: filepath.Join(rt, "leases"), Alive: func(id string) bool { return runstate.Alive(rt, id) }}
	removed, err := l.GC()
	var out []string
	for _, p := range removed {
		out = append(out, p.String())
	}
	return out, err
}

// cmdAttach plugs a process of the caller's into a run: nsrun opens the
// process's network namespace (same user: allowed) and hands it to the
// supervisor, which wires it.
func cmdAttach(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nsrun attach", flag.ContinueOnError)
	runID := fs.String("run", "", "")
	pid := fs.Int("pid", 0, "")
	ip := fs.String("ip", "", "")
	ip6 := fs.String("ip6", "", "")
	name := fs.String("name", "", "")
	if code, done := parseFlags(fs, args, stdout, stderr, "attach"); done {
		return code
	}
	if *pid <= 0 || *ip == "" && *ip6 == "" || fs.NArg() > 0 {
		return fail(stderr, errors.New("attach: write nsrun attach --run ID --pid PID --ip ADDR [--ip6 ADDR6] [--name NAME]"))
	}
	if *name == "" {
		*name = fmt.Sprintf("pid%d", *pid)
	}
	// Checked here, before anything is sent; the supervisor checks the
	// addresses against its subnets and nodes.
	at, err := control.ParseAttach(*name, *ip, *ip6)
	if err != nil {
		return fail(stderr, fmt.Errorf("attach: %w", err))
	}
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", *pid))
	if err != nil {
		return fail(stderr, fmt.Errorf("attach: --pid %d: cannot open its network namespace: %w", *pid, err))
	}
	defer ns.Close()
	path, err := controlPath(*runID)
	if err != nil {
		return fail(stderr, fmt.Errorf("attach: %w", err))
	}
	out, err := control.NewClient(path).Attach(at, ns)
	if err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintln(stdout, out)
	return 0
}
