package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/faults"
	"github.com/nsrun/nsrun/internal/topology"
	"github.com/nsrun/nsrun/internal/verbs"
)

// compileFaults checks the `faults:` section of top (from file) against
// the nodes that will run.
func compileFaults(file string, f *topology.Faults, nodes []string) (*faults.Schedule, error) {
	return faults.Compile(file, f, nodes, verbs.ParseLine)
}

// cmdFaults runs a schedule against a live run: `nsrun faults --run ID
// FILE|-`. Ctrl-C (or SIGTERM) stops it and heals what is in force.
func cmdFaults(args []string, stdout, stderr io.Writer) int {
	var runID string
	var seed uint64
	var file string
	for i := 0; i < len(args); i++ {
		switch arg := args[i]; {
		case arg == "--help" || arg == "-h":
			fmt.Fprint(stdout, helpText("faults", verbs.Verb{}))
			return 0
		case arg == "--run" || arg == "-run":
			if i+1 >= len(args) {
				return fail(stderr, errors.New("faults: --run needs a value"))
			}
			i++
			runID = args[i]
		case strings.HasPrefix(arg, "--run="):
			runID = strings.TrimPrefix(arg, "--run=")
		case arg == "--seed" || strings.HasPrefix(arg, "--seed="):
			v, ok := strings.CutPrefix(arg, "--seed=")
			if !ok {
				if i+1 >= len(args) {
					return fail(stderr, errors.New("faults: --seed needs a value"))
				}
				i++
				v = args[i]
			}
			if _, err := fmt.Sscan(v, &seed); err != nil || seed == 0 {
				return fail(stderr, fmt.Errorf("faults: --seed %q: write a positive whole number", v))
			}
		case strings.HasPrefix(arg, "-") && arg != "-":
			return fail(stderr, fmt.Errorf("faults: unknown flag %s; write nsrun faults --run ID [--seed N] FILE|-", arg))
		case file != "":
			return fail(stderr, fmt.Errorf("faults: a second file %q: write nsrun faults --run ID [--seed N] FILE|-", arg))
		default:
			file = arg
		}
	}
	if file == "" {
		return fail(stderr, errors.New("faults: which schedule? write nsrun faults --run ID [--seed N] FILE|- (a file with a faults: section, - for stdin)"))
	}
	path, err := controlPath(runID)
	if err != nil {
		return fail(stderr, fmt.Errorf("faults: %w", err))
	}
	var data []byte
	name := file
	if file == "-" {
		name = "stdin"
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return fail(stderr, fmt.Errorf("faults: %w", err))
	}
	f, err := topology.ParseFaults(name, data)
	if err != nil {
		return fail(stderr, err)
	}
	nodes := runNodes(path)
	if nodes == nil {
		return fail(stderr, errors.New("faults: the run is still starting (its nodes are not known yet); try again"))
	}
	s, err := compileFaults(name, f, nodes)
	if err != nil {
		return fail(stderr, err)
	}
	if seed != 0 {
		s.Seed, s.SeedGiven = seed, true
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer cancel()
	err = RunSchedule(ctx, s, control.NewClient(path), stdout, stderr)
	if errors.Is(err, context.Canceled) {
		return 130
	}
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}

// RunSchedule runs s through c, printing each event as a line on out and
// adding it to the run's events (a note that fails is reported on
// errOut; the schedule goes on).
func RunSchedule(ctx context.Context, s *faults.Schedule, c *control.Client, out, errOut io.Writer) error {
	seq, err := s.Sequence(s.Seed)
	if err != nil {
		return err
	}
	return s.Run(ctx, c, seq, true, func(e faults.Event) {
		fmt.Fprintln(out, e)
		if err := c.Note(e.Note()); err != nil {
			fmt.Fprintln(errOut, "nsrun: faults: add the step to the run's events:", advise(err))
		}
	})
}

// nodeNames are the names of the nodes of top.
func nodeNames(top *topology.Topology) []string {
	var out []string
	for _, n := range top.Nodes {
		if !slices.Contains(out, n.Name) {
			out = append(out, n.Name)
		}
	}
	return out
}
