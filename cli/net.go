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

	"github.com/nsrun/nsrun/control"
	"github.com/nsrun/nsrun/internal/exitcode"
	"github.com/nsrun/nsrun/ipam"
	"github.com/nsrun/nsrun/runstate"
)

// envControl is set in a node with control: true: the control socket of
// its run, so that `nsrun net ...` works from inside it without --run.
const envControl = "NSRUN_CONTROL"

func cmdNet(args []string, stdout, stderr io.Writer) int {
	a, err := control.SplitArgs("net", args)
	if errors.Is(err, control.ErrHelp) {
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
	c, err := control.ParseNet(a, runNodes(path))
	if err != nil {
		return fail(stderr, err)
	}
	return call(path, control.Request{Verb: control.NetVerb, Net: &c}, stdout, stderr)
}

// cmdNode sends a node life-cycle verb to the run's supervisor.
func cmdNode(args []string, stdout, stderr io.Writer) int {
	a, err := control.SplitArgs("node", args)
	if errors.Is(err, control.ErrHelp) {
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
	c, err := control.ParseNode(a, runNodes(path))
	if err != nil {
		return fail(stderr, err)
	}
	return call(path, control.Request{Verb: control.NodeVerb, Node: &c}, stdout, stderr)
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

// call sends req (with files attached) to the run's supervisor and prints
// its answer.
func call(path string, req control.Request, stdout, stderr io.Writer, files ...*os.File) int {
	c, err := control.Dial(path, req, files...)
	if err != nil {
		return fail(stderr, err)
	}
	defer c.Close()
	r, err := c.Recv()
	if err != nil {
		return fail(stderr, fmt.Errorf("%s: %w", req.Verb, err))
	}
	if err := r.Err(); err != nil {
		return fail(stderr, err)
	}
	if r.Output != "" {
		fmt.Fprintln(stdout, r.Output)
	}
	return 0
}

// controlPath finds the control socket of run id (--run), or of the run
// this process is a node of.
func controlPath(id string) (string, error) {
	if id == "" {
		if p := os.Getenv(envControl); p != "" {
			return p, nil
		}
		if id := os.Getenv("NSRUN_RUN"); id != "" {
			return "", fmt.Errorf("node %s has no control of run %s: give it `control: true` in the file (a trusted node), or run this from the host with --run %s", os.Getenv("NSRUN_NODE"), id, id)
		}
		return "", errors.New("--run ID is needed outside a run (see nsrun ls)")
	}
	rt, err := runstate.RuntimeDir(os.Getuid())
	if err != nil {
		return "", err
	}
	if !runstate.Alive(rt, id) {
		return "", fmt.Errorf("--run %s: no live run with that id; see nsrun ls", id)
	}
	return control.Path(filepath.Join(runstate.RunsDir(rt), id)), nil
}

func cmdNetExec(a control.Args, stdout, stderr io.Writer) int {
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
	c, err := control.Dial(path, control.Request{Verb: control.ExecVerb, Exec: &ex},
		os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		return fail(stderr, err)
	}
	defer c.Close()
	responses := make(chan control.Response)
	go func() {
		for {
			r, err := c.Recv()
			if err != nil {
				r = control.Response{Error: "the run ended", Kind: string(control.ErrRunGone), ExitCode: exitcode.SetupFailed}
			}
			responses <- r
			if r.Done || r.Error != "" {
				return
			}
		}
	}()
	for {
		select {
		case s := <-sigs:
			_ = c.Send(control.Request{Verb: control.SignalVerb, Signal: &control.SignalCall{Sig: int(s.(syscall.Signal))}})
		case r := <-responses:
			if r.Error != "" {
				fmt.Fprintln(stderr, "nsrun: net exec:", advise(r.Err()))
				return r.ExitCode
			}
			if r.Done {
				return r.ExitCode
			}
		}
	}
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
	return call(path, control.Request{Verb: control.AttachVerb, Attach: &at}, stdout, stderr, ns)
}
