// Package verbs is the one table of the verbs of `nsrun net` and `nsrun
// node` (Verbs) and their parser: a command line split into verb, flags
// and arguments (SplitArgs), then read into a checked typed call
// (ParseNet, ParseNode) that package control carries. The command line,
// its usage text, fault schedules (ParseLine) and package nstest share it.
package verbs

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/latency"
	"github.com/nsrun/nsrun/internal/partition"
)

// Verb is one verb of `nsrun net` or `nsrun node`: the one table that the
// command line (ParseNet, ParseNode), its usage text (Usage) and the
// supervisor (which refuses a verb not listed) share.
type Verb struct {
	Cmd   string   // "net" or "node"
	Name  string   // the verb
	Args  string   // its arguments, for the usage text
	Help  string   // what it does, for the usage text
	Flags []string // the flags it takes besides --run
}

// Verbs are every verb of `nsrun net` and `nsrun node`.
var Verbs = []Verb{
	{"net", "exec", "NODE -- CMD [ARGS...]", "run CMD in NODE's network", []string{"--root"}},
	{"net", "isolate", "NODE...", "cut NODEs from every other node and each other", []string{"--uplink"}},
	{"net", "disjoint", "A B -- C D", "clusters that cannot see each other (every node once)", []string{"--uplink"}},
	{"net", "split", "A B -- B C", "clusters may share nodes; unnamed nodes isolated", []string{"--uplink"}},
	{"net", "fullmesh", "", "heal everything", nil},
	{"net", "drop", "A B", "one-way: packets from A to B are dropped", []string{"--uplink"}},
	{"net", "halves", "", "Jepsen's partition shapes over the run's nodes", []string{"--seed", "--uplink"}},
	{"net", "majorities-ring", "", "", []string{"--seed", "--uplink"}},
	{"net", "bridge", "", "", []string{"--seed", "--uplink"}},
	{"net", "random-node", "", "", []string{"--seed", "--uplink"}},
	{"net", "flaky", "NODE [--loss 0.3%] [--rate 1mbit] [--delay 100ms [--jitter 20ms]] [--reorder 5%] [--duplicate 1%] [--corrupt 1%]", "set those link faults, keep the others (no option: clear all)", []string{"--loss", "--rate", "--delay", "--jitter", "--reorder", "--duplicate", "--corrupt"}},
	{"net", "latency", "A B 40ms [--jitter 5ms] [--one-way] | --clear", "one-way delay between nodes or regions, each way (--clear: none)", []string{"--jitter", "--one-way", "--clear"}},
	{"net", "show", "[--json]", "the current cut, link faults and latency", []string{"--json"}},
	{"node", "stop", "NODE...", "end each NODE's command; the run goes on", nil},
	{"node", "start", "NODE...", "start each stopped NODE again, in the same namespaces", nil},
	{"node", "restart", "NODE...", "stop, then start", nil},
	{"node", "pause", "NODE...", "freeze the NODEs' processes (SIGSTOP)", nil},
	{"node", "resume", "NODE...", "thaw them (SIGCONT)", nil},
}

// valueFlags are the flags that take a value.
var valueFlags = []string{"--run", "--seed", "--loss", "--rate", "--delay", "--jitter", "--reorder", "--duplicate", "--corrupt"}

// LookupVerb finds verb name of cmd ("net" or "node").
func LookupVerb(cmd, name string) (Verb, bool) {
	for _, v := range Verbs {
		if v.Cmd == cmd && v.Name == name {
			return v, true
		}
	}
	return Verb{}, false
}

// Usage is the usage text of every verb, one or two lines each, indented
// like nsrun's usage.
func Usage() string {
	return UsageOf("net") + UsageOf("node") + usageNote
}

// usageNote ends the usage text of the verbs.
const usageNote = "  (net and node verbs take --run ID from the host; the cutting verbs take\n   --uplink to also cut the way out; flags go anywhere after net or node)\n"

// UsageOf is the usage text of the verbs of cmd ("net" or "node"), as in
// Usage, without the closing note.
func UsageOf(cmd string) string {
	var b strings.Builder
	for _, v := range Verbs {
		if v.Help == "" || v.Cmd != cmd {
			continue // a shape, listed with halves
		}
		line := "  nsrun " + v.Cmd + " " + v.Name
		if v.Name == "halves" {
			line += " | majorities-ring | bridge | random-node [--seed N]"
		} else if v.Args != "" {
			line += " " + v.Args
		}
		if len(line) > 36 {
			fmt.Fprintf(&b, "%s\n  %-35s%s\n", line, "", v.Help)
		} else {
			fmt.Fprintf(&b, "%-37s%s\n", line, v.Help)
		}
	}
	return b.String()
}

// Args are a net or node command line split into its verb, its flags
// (accepted anywhere after `net` or `node`) and the rest, in order; "--"
// is kept in the rest (it separates clusters, and exec's command).
type Args struct {
	Verb  Verb
	RunID string
	Flags map[string]string // flag name ("--loss") to value ("" for a bool flag)
	Rest  []string
}

// SplitArgs reads `nsrun CMD ARGS...` (CMD "net" or "node"): the verb is
// the first argument that is not a flag or a flag's value. A flag the verb
// does not take is refused, naming it. For exec, everything after NODE
// is the command, flags or not.
func SplitArgs(cmd string, args []string) (Args, error) {
	a := Args{Flags: map[string]string{}}
	var verb string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if verb == "exec" && (arg == "--" || len(a.Rest) > 0) {
			a.Rest = append(a.Rest, args[i:]...) // exec's command, as given
			break
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" || arg == "--" {
			if verb == "" {
				verb = arg
			} else {
				a.Rest = append(a.Rest, arg)
			}
			continue
		}
		name, value, hasValue := strings.Cut(arg, "=")
		if !strings.HasPrefix(name, "--") {
			name = "-" + name // -run is --run, as package flag reads it
		}
		if slices.Contains(valueFlags, name) && !hasValue {
			if i+1 >= len(args) {
				return a, fmt.Errorf("%s: %s needs a value", cmd, name)
			}
			i++
			value = args[i]
		}
		if _, dup := a.Flags[name]; dup {
			return a, fmt.Errorf("%s: %s is given twice", cmd, name)
		}
		a.Flags[name] = value
	}
	_, help := a.Flags["--help"]
	if _, h := a.Flags["--h"]; h || help {
		a.Verb, _ = LookupVerb(cmd, verb) // zero: help on cmd
		return a, ErrHelp
	}
	if verb == "" {
		return a, fmt.Errorf("%s: which verb? see nsrun %s --help", cmd, cmd)
	}
	v, ok := LookupVerb(cmd, verb)
	if !ok {
		return a, fmt.Errorf("%s: unknown verb %q; see nsrun %s --help", cmd, verb, cmd)
	}
	a.Verb = v
	for name, value := range a.Flags {
		switch {
		case name == "--run":
			a.RunID = value
			delete(a.Flags, name)
		case !slices.Contains(v.Flags, name):
			return a, fmt.Errorf("%s %s: unknown flag %s; see nsrun %s %s --help", cmd, verb, name, cmd, verb)
		case !slices.Contains(valueFlags, name) && value != "" && value != "true":
			return a, fmt.Errorf("%s %s: %s takes no value", cmd, verb, name)
		}
	}
	return a, nil
}

// ErrHelp is returned for --help (or -h), before any other check: Args.Verb
// is the verb it is asked on, zero when none (or an unknown one) is named.
var ErrHelp = errors.New("help requested")

// faultFlags are the flag of each kind of fault.
var faultFlags = map[string]control.FaultKind{"--loss": control.FaultLoss, "--rate": control.FaultRate, "--delay": control.FaultDelay, "--reorder": control.FaultReorder, "--duplicate": control.FaultDuplicate, "--corrupt": control.FaultCorrupt}

// ParseNet reads `nsrun net VERB ...` (args after "net"; not exec) into a
// checked call: every bad value is refused here, naming its flag, before
// anything is sent. nodes, when known (nil otherwise), are the run's
// nodes: a name that is not one of them is refused too.
func ParseNet(a Args, nodes []string) (control.NetCall, error) {
	var c control.NetCall
	verb := a.Verb.Name
	_, uplink := a.Flags["--uplink"]
	var seed uint64
	if v, ok := a.Flags["--seed"]; ok {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil || seed == 0 {
			return c, fmt.Errorf("net %s: --seed %q: write a positive whole number", verb, v)
		}
	}
	switch verb {
	case "flaky":
		if len(a.Rest) != 1 {
			return c, errors.New("flaky: write nsrun net flaky NODE [--loss 30%] [--rate 1mbit] [--delay 100ms [--jitter 20ms]] [--reorder 5%] [--duplicate 1%] [--corrupt 1%]")
		}
		f, err := parseFaults(a.Flags)
		if err != nil {
			return c, err
		}
		c.Flaky = &control.Flaky{Node: a.Rest[0], Faults: f}
		for flag, kind := range faultFlags {
			if _, ok := a.Flags[flag]; ok {
				c.Flaky.Set |= kind
			}
		}
	case "latency":
		l, err := parseLatency(a)
		if err != nil {
			return c, err
		}
		c.Latency = &l
	case "show":
		if len(a.Rest) > 0 {
			return c, errors.New("show takes no nodes")
		}
		c.Show = &control.Show{}
	default:
		sp, err := partition.ParseSpec(verb, a.Rest, partition.Options{Uplink: uplink, Seed: seed})
		if err != nil {
			return c, err
		}
		c = control.SpecCall(sp)
	}
	if err := c.Check(); err != nil {
		return c, err
	}
	if nodes != nil {
		if f := c.Flaky; f != nil && !slices.Contains(nodes, f.Node) {
			return c, fmt.Errorf("flaky: no node %q in this run; its nodes: %s", f.Node, strings.Join(nodes, ", "))
		}
		if sp := c.Spec(); sp != nil {
			if _, err := sp.State(nodes); err != nil {
				return c, err
			}
		}
	}
	return c, nil
}

// parseLatency reads `net latency A B DELAY [--jitter J] [--one-way]` or
// `net latency --clear`.
func parseLatency(a Args) (control.Latency, error) {
	const usage = "latency: write nsrun net latency A B 40ms [--jitter 5ms] [--one-way], or nsrun net latency --clear"
	if _, ok := a.Flags["--clear"]; ok {
		if len(a.Rest) > 0 || len(a.Flags) > 1+len(a.runFlag()) {
			return control.Latency{}, errors.New("latency: --clear takes no nodes and no other flag")
		}
		return control.Latency{Clear: true}, nil
	}
	if len(a.Rest) != 3 {
		return control.Latency{}, errors.New(usage)
	}
	l := control.Latency{A: a.Rest[0], B: a.Rest[1]}
	_, l.OneWay = a.Flags["--one-way"]
	v := a.Rest[2]
	if j, ok := a.Flags["--jitter"]; ok {
		v += " ±" + j
	}
	val, err := latency.ParseValue(v)
	if err != nil {
		return l, fmt.Errorf("latency: %w", err)
	}
	l.Value = val
	return l, nil
}

// runFlag is --run when given, for counting the other flags.
func (a Args) runFlag() []string {
	if _, ok := a.Flags["--run"]; ok {
		return []string{"--run"}
	}
	return nil
}

// parseFaults reads flaky's flags.
func parseFaults(flags map[string]string) (control.Faults, error) {
	var f control.Faults
	if v, ok := flags["--loss"]; ok {
		ppm, err := ParseLoss(v)
		if err != nil {
			return f, fmt.Errorf("flaky: --loss %q: %w", v, err)
		}
		f.LossPPM = ppm
	}
	if v, ok := flags["--rate"]; ok && v != "0" {
		r, err := ParseRate(v)
		if err != nil {
			return f, fmt.Errorf("flaky: --rate %q: %w (0 clears it)", v, err)
		}
		f.Rate = r
	}
	for _, d := range []struct {
		flag string
		to   *time.Duration
		eg   string
	}{{"--delay", &f.Delay, "100ms"}, {"--jitter", &f.Jitter, "20ms"}} {
		if v, ok := flags[d.flag]; ok {
			t, err := time.ParseDuration(v)
			if err != nil || t < 0 {
				return f, fmt.Errorf("flaky: %s %q: write a duration such as %s", d.flag, v, d.eg)
			}
			*d.to = t
		}
	}
	for _, p := range []struct {
		flag string
		to   *float64
	}{{"--reorder", &f.ReorderPercent}, {"--duplicate", &f.DuplicatePercent}, {"--corrupt", &f.CorruptPercent}} {
		if v, ok := flags[p.flag]; ok {
			num, isPercent := strings.CutSuffix(v, "%")
			x, err := strconv.ParseFloat(num, 64)
			if err != nil || !isPercent && x != 0 || !(x >= 0 && x <= 100) {
				return f, fmt.Errorf("flaky: %s %q: write a percentage from 0%% to 100%%, such as 5%% (0%% clears it)", p.flag, v)
			}
			*p.to = x
		}
	}
	if _, ok := flags["--jitter"]; ok {
		if _, ok := flags["--delay"]; !ok {
			return f, errors.New("flaky: --jitter needs --delay")
		}
	}
	return f, nil
}

// ParseLoss reads a loss percentage exactly, in parts per million: "30%",
// "0.3%", "99.9%", "0.0001%" (the finest step). A bare number is refused:
// 0.3 could mean 0.3% or 30%.
func ParseLoss(s string) (uint32, error) {
	const forms = "write a percentage from 0% to 100% with its %, such as 30%, 0.3% or 0.0001% (0% clears it)"
	num, ok := strings.CutSuffix(s, "%")
	if !ok {
		return 0, fmt.Errorf("no %% sign: %s", forms)
	}
	whole, frac, _ := strings.Cut(num, ".")
	if whole == "" && frac == "" || len(frac) > 4 || strings.Trim(whole+frac, "0123456789") != "" || len(whole) > 3 {
		if len(frac) > 4 && strings.Trim(whole+frac, "0123456789") == "" {
			return 0, fmt.Errorf("finer than the finest step, 0.0001%%: %s", forms)
		}
		return 0, errors.New(forms)
	}
	w, _ := strconv.ParseUint("0"+whole, 10, 32)
	f, _ := strconv.ParseUint((frac + "0000")[:4], 10, 32)
	ppm := w*10000 + f
	if ppm > control.LossScale {
		return 0, errors.New(forms)
	}
	return uint32(ppm), nil
}

// ParseRate reads tc-style rates into bits per second: 1mbit, 500kbit,
// 1gbit, or bytes per second: 10mbps, 2kbps.
func ParseRate(s string) (uint64, error) {
	l := strings.ToLower(s)
	units := []struct {
		suffix string
		mult   float64
	}{
		{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1},
		{"gbps", 8e9}, {"mbps", 8e6}, {"kbps", 8e3}, {"bps", 8},
	}
	for _, u := range units {
		if num, ok := strings.CutSuffix(l, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil || v*u.mult < 1 || v*u.mult > 1e15 {
				break
			}
			return uint64(v * u.mult), nil
		}
	}
	return 0, errors.New("write a rate such as 1mbit, 500kbit or 2mbps (bytes per second)")
}

// ParseNodes reads `nsrun node VERB NODE...`: one call per node, in the
// order given, each checked as ParseNode checks it. A node named twice is
// refused.
func ParseNodes(a Args, nodes []string) ([]control.NodeCall, error) {
	if len(a.Rest) == 0 {
		return nil, errors.New("node: write nsrun node stop|start|restart|pause|resume [--run ID] NODE [NODE...]")
	}
	var calls []control.NodeCall
	for i, name := range a.Rest {
		if slices.Contains(a.Rest[:i], name) {
			return nil, fmt.Errorf("node %s: %q is named twice", a.Verb.Name, name)
		}
		one := a
		one.Rest = []string{name}
		c, err := ParseNode(one, nodes)
		if err != nil {
			return nil, err
		}
		calls = append(calls, c)
	}
	return calls, nil
}

// ParseNode reads `nsrun node ACTION NODE` into a checked call; nodes, when
// known, are the run's nodes.
func ParseNode(a Args, nodes []string) (control.NodeCall, error) {
	if len(a.Rest) != 1 {
		return control.NodeCall{}, errors.New("node: write nsrun node stop|start|restart|pause|resume [--run ID] NODE")
	}
	c := control.NodeCall{Action: a.Verb.Name, Node: a.Rest[0]}
	if err := c.Check(); err != nil {
		return c, err
	}
	if nodes != nil && !slices.Contains(nodes, c.Node) {
		return c, fmt.Errorf("node %s: no node %q in this run; its nodes: %s", c.Action, c.Node, strings.Join(nodes, ", "))
	}
	return c, nil
}
