package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/nsrun/nsrun/control"
	"github.com/nsrun/nsrun/ipam"
	"github.com/nsrun/nsrun/runstate"
	"github.com/nsrun/nsrun/supervise"
)

// EnvControl is set in every node: the control socket of its run, so that
// `nsrun net ...` works from inside a node without --run.
const envControl = "NSRUN_CONTROL"

func cmdNet(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return fail(stderr, errors.New("net: which verb? see nsrun --help"))
	}
	verb, args := args[0], args[1:]
	switch verb {
	case "exec":
		return cmdNetExec(args, stdout, stderr)
	case "isolate", "disjoint", "split", "fullmesh", "drop", "flaky", "show",
		"halves", "majorities-ring", "bridge", "random-node":
		return cmdNetVerb(verb, args, stdout, stderr)
	}
	return fail(stderr, fmt.Errorf("net: unknown verb %q; see nsrun --help", verb))
}

// netArgs splits the arguments of a net verb into its flags (accepted
// anywhere) and the rest, keeping the "--" that separates clusters.
func netArgs(verb string, args []string) (runID string, req control.Request, rest []string, err error) {
	value := func(i *int, name string) (string, error) {
		a := args[*i]
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, nil
		}
		if *i+1 >= len(args) {
			return "", fmt.Errorf("net %s: %s needs a value", verb, name)
		}
		*i++
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, _ := strings.Cut(a, "=")
		switch name {
		case "--run":
			runID, err = value(&i, name)
		case "--uplink":
			req.Uplink = true
		case "--json":
			req.JSON = true
		case "--seed":
			var v string
			if v, err = value(&i, name); err == nil {
				if req.Seed, err = strconv.ParseUint(v, 10, 64); err != nil || req.Seed == 0 {
					err = fmt.Errorf("net %s: --seed %q: write a positive whole number", verb, v)
				}
			}
		case "--loss":
			req.Loss, err = value(&i, name)
		case "--rate":
			req.Rate, err = value(&i, name)
		case "--delay":
			req.Delay, err = value(&i, name)
		case "--jitter":
			req.Jitter, err = value(&i, name)
		default:
			if strings.HasPrefix(a, "-") && a != "--" {
				err = fmt.Errorf("net %s: unknown flag %s; see nsrun --help", verb, a)
			} else {
				rest = append(rest, a)
			}
		}
		if err != nil {
			return
		}
	}
	return
}

// cmdNetVerb sends a partition, flaky or show verb to the run's supervisor.
func cmdNetVerb(verb string, args []string, stdout, stderr io.Writer) int {
	runID, req, rest, err := netArgs(verb, args)
	if err != nil {
		return fail(stderr, err)
	}
	req.Verb = "net"
	req.Args = append([]string{verb}, rest...)
	return call(runID, req, stdout, stderr)
}

// cmdNode sends a node life-cycle verb to the run's supervisor.
func cmdNode(args []string, stdout, stderr io.Writer) int {
	runID, _, rest, err := netArgs("node", args)
	if err != nil {
		return fail(stderr, err)
	}
	if len(rest) != 2 {
		return fail(stderr, errors.New("node: write nsrun node stop|start|restart|pause|resume [--run ID] NODE"))
	}
	return call(runID, control.Request{Verb: "node", Args: rest}, stdout, stderr)
}

// call sends req (with files attached) to the run's supervisor and prints
// its answer.
func call(runID string, req control.Request, stdout, stderr io.Writer, files ...*os.File) int {
	path, err := controlPath(runID)
	if err != nil {
		return fail(stderr, fmt.Errorf("%s: %w", req.Verb, err))
	}
	c, err := control.Dial(path, req, files...)
	if err != nil {
		return fail(stderr, err)
	}
	defer c.Close()
	r, err := c.Recv()
	if err != nil {
		return fail(stderr, fmt.Errorf("%s: no answer from the run: %w", req.Verb, err))
	}
	if r.Error != "" {
		fmt.Fprintln(stderr, "nsrun:", r.Error)
		return supervise.ExitSetupFailed
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

func cmdNetExec(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nsrun net exec", flag.ContinueOnError)
	runID := fs.String("run", "", "")
	root := fs.Bool("root", false, "")
	if code, done := parseFlags(fs, args, stdout, stderr, "net exec: "); done {
		return code
	}
	rest := fs.Args()
	if len(rest) < 2 {
		return fail(stderr, errors.New("net exec: write nsrun net exec [--run ID] NODE -- CMD [ARGS...]"))
	}
	node, argv := rest[0], rest[1:]
	if argv[0] == "--" {
		argv = argv[1:]
	}
	if err := ipam.CheckNodeName("net exec", node); err != nil || len(argv) == 0 {
		return fail(stderr, fmt.Errorf("net exec: write nsrun net exec [--run ID] NODE -- CMD [ARGS...]"))
	}
	path, err := controlPath(*runID)
	if err != nil {
		return fail(stderr, fmt.Errorf("net exec: %w", err))
	}
	wd, _ := os.Getwd()
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	c, err := control.Dial(path, control.Request{Verb: "exec", Node: node, Args: argv, Env: os.Environ(), Dir: wd, Root: *root},
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
				r = control.Response{Error: "the run ended", ExitCode: supervise.ExitSetupFailed}
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
			_ = c.Send(control.Request{Verb: "signal", Sig: int(s.(syscall.Signal))})
		case r := <-responses:
			if r.Error != "" {
				fmt.Fprintln(stderr, "nsrun: net exec:", r.Error)
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
	name := fs.String("name", "", "")
	if code, done := parseFlags(fs, args, stdout, stderr, "attach: "); done {
		return code
	}
	if *pid <= 0 || *ip == "" || fs.NArg() > 0 {
		return fail(stderr, errors.New("attach: write nsrun attach --run ID --pid PID --ip ADDR [--name NAME]"))
	}
	if *name == "" {
		*name = fmt.Sprintf("pid%d", *pid)
	}
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", *pid))
	if err != nil {
		return fail(stderr, fmt.Errorf("attach: --pid %d: cannot open its network namespace: %w", *pid, err))
	}
	defer ns.Close()
	return call(*runID, control.Request{Verb: "attach", Args: []string{*name, *ip}}, stdout, stderr, ns)
}
