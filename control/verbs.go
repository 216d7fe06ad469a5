package control

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nsrun/nsrun/ipam"
	"github.com/nsrun/nsrun/latency"
	"github.com/nsrun/nsrun/partition"
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
	{"node", "stop", "NODE", "end NODE's command; the run goes on", nil},
	{"node", "start", "NODE", "start a stopped NODE again, in the same namespaces", nil},
	{"node", "restart", "NODE", "stop, then start", nil},
	{"node", "pause", "NODE", "freeze NODE's processes (SIGSTOP)", nil},
	{"node", "resume", "NODE", "thaw them (SIGCONT)", nil},
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

// NetCall is one `nsrun net` verb other than exec, parsed and checked by
// the client: exactly one of its fields is set.
type NetCall struct {
	Isolate  *partition.Isolate  `json:"isolate,omitempty"`
	Disjoint *partition.Disjoint `json:"disjoint,omitempty"`
	Split    *partition.Split    `json:"split,omitempty"`
	Drop     *partition.Drop     `json:"drop,omitempty"`
	Heal     *partition.Heal     `json:"fullmesh,omitempty"`
	Shape    *partition.Shape    `json:"shape,omitempty"`
	Flaky    *Flaky              `json:"flaky,omitempty"`
	Latency  *Latency            `json:"latency,omitempty"`
	Show     *Show               `json:"show,omitempty"`
}

// Latency sets the delay between A and B, nodes or regions (both ways
// unless OneWay), replacing what was set between them; Clear removes
// every delay of the matrix instead.
type Latency struct {
	A      string        `json:"a,omitempty"`
	B      string        `json:"b,omitempty"`
	Value  latency.Value `json:"value"`
	OneWay bool          `json:"one_way,omitempty"`
	Clear  bool          `json:"clear,omitempty"`
}

// Check refuses a call that neither clears nor names two nodes or
// regions, and a bad delay.
func (l Latency) Check() error {
	if l.Clear {
		if l.A != "" || l.B != "" || l.Value != (latency.Value{}) || l.OneWay {
			return errors.New("latency: --clear takes nothing else")
		}
		return nil
	}
	for _, name := range []string{l.A, l.B} {
		if name == "" || strings.ContainsAny(name, " \t<>:") {
			return fmt.Errorf("latency: %q: name a node or a region", name)
		}
	}
	if err := l.Value.Check(); err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	return nil
}

// Flaky sets the kinds of link fault in Set of a node to Faults, keeping
// its other kinds; with no kind set it clears them all. A kind set to its
// zero value (--loss 0%, --rate 0, --delay 0s) clears that kind.
type Flaky struct {
	Node   string    `json:"node"`
	Faults Faults    `json:"faults"`
	Set    FaultKind `json:"set,omitempty"`
}

// FaultKind is a set of kinds of link fault, one bit each.
type FaultKind uint8

// The kinds of link fault: --loss, --rate, --delay with its --jitter,
// --reorder, --duplicate and --corrupt.
const (
	FaultLoss FaultKind = 1 << iota
	FaultRate
	FaultDelay
	FaultReorder
	FaultDuplicate
	FaultCorrupt
)

// faultFlags are the flag of each kind of fault.
var faultFlags = map[string]FaultKind{"--loss": FaultLoss, "--rate": FaultRate, "--delay": FaultDelay, "--reorder": FaultReorder, "--duplicate": FaultDuplicate, "--corrupt": FaultCorrupt}

// MaxDelay is the longest delay nsrun adds to a link.
const MaxDelay = 60 * time.Second

// LossScale is 100% in the units of Faults.LossPPM.
const LossScale = 1_000_000

// Faults are a node's link faults.
type Faults struct {
	// LossPPM is the share of packets lost, in parts per million (0.3%:
	// 3000), so that every loss --loss takes is exact.
	LossPPM uint32        `json:"loss_ppm,omitempty"`
	Rate    uint64        `json:"rate_bits,omitempty"` // bits per second, 0: none
	Delay   time.Duration `json:"delay,omitempty"`
	Jitter  time.Duration `json:"jitter,omitempty"` // only with Delay
	// Percentages (0..100) of frames sent at once ahead of the delayed
	// ones (only with a delay), sent twice, and with one bit flipped.
	ReorderPercent   float64 `json:"reorder_percent,omitempty"`
	DuplicatePercent float64 `json:"duplicate_percent,omitempty"`
	CorruptPercent   float64 `json:"corrupt_percent,omitempty"`
}

// Show asks for the current cut and faults.
type Show struct {
	JSON bool `json:"json,omitempty"`
}

// Spec is the call's partition spec, nil for flaky and show.
func (c NetCall) Spec() partition.Spec {
	for _, f := range c.specFields() {
		if sp := f.get(); sp != nil {
			return sp
		}
	}
	return nil
}

// specField is one of NetCall's partition fields.
type specField interface {
	get() partition.Spec        // the field's spec, nil if unset
	set(sp partition.Spec) bool // sets the field to sp if sp is of its type
}

// fieldOf is the specField of a *T field.
type fieldOf[T partition.Spec] struct{ p **T }

func (f fieldOf[T]) get() partition.Spec {
	if *f.p == nil {
		return nil
	}
	return **f.p
}

func (f fieldOf[T]) set(sp partition.Spec) bool {
	v, ok := sp.(T)
	if ok {
		*f.p = &v
	}
	return ok
}

// specFields are c's partition fields: the one list that Spec, Check
// and ParseNet read.
func (c *NetCall) specFields() []specField {
	return []specField{
		fieldOf[partition.Isolate]{&c.Isolate},
		fieldOf[partition.Disjoint]{&c.Disjoint},
		fieldOf[partition.Split]{&c.Split},
		fieldOf[partition.Drop]{&c.Drop},
		fieldOf[partition.Heal]{&c.Heal},
		fieldOf[partition.Shape]{&c.Shape},
	}
}

// Verb is the call's verb ("" for an empty call).
func (c NetCall) Verb() string {
	switch {
	case c.Flaky != nil:
		return "flaky"
	case c.Latency != nil:
		return "latency"
	case c.Show != nil:
		return "show"
	}
	if sp := c.Spec(); sp != nil {
		return sp.Verb()
	}
	return ""
}

// Check refuses a call that is not exactly one verb the table lists, and
// names that cannot be nodes.
func (c NetCall) Check() error {
	set := 0
	for _, f := range c.specFields() {
		if f.get() != nil {
			set++
		}
	}
	if c.Flaky != nil {
		set++
	}
	if c.Latency != nil {
		set++
		if err := c.Latency.Check(); err != nil {
			return err
		}
	}
	if c.Show != nil {
		set++
	}
	if set != 1 {
		return fmt.Errorf("net: a request must carry exactly one verb, not %d", set)
	}
	if _, ok := LookupVerb("net", c.Verb()); !ok || c.Verb() == "exec" {
		return fmt.Errorf("net: unknown verb %q", c.Verb())
	}
	if f := c.Flaky; f != nil {
		if err := ipam.CheckNodeName("flaky", f.Node); err != nil {
			return err
		}
		if f.Faults.LossPPM > LossScale {
			return fmt.Errorf("flaky: --loss %s: write a percentage from 0%% to 100%%", PercentPPM(f.Faults.LossPPM))
		}
		if f.Set&^(FaultLoss|FaultRate|FaultDelay|FaultReorder|FaultDuplicate|FaultCorrupt) != 0 {
			return fmt.Errorf("flaky: unknown kinds of fault %#x", uint8(f.Set))
		}
		if f.Set&FaultLoss == 0 && f.Faults.LossPPM != 0 || f.Set&FaultRate == 0 && f.Faults.Rate != 0 ||
			f.Set&FaultDelay == 0 && (f.Faults.Delay != 0 || f.Faults.Jitter != 0) ||
			f.Set&FaultReorder == 0 && f.Faults.ReorderPercent != 0 || f.Set&FaultDuplicate == 0 && f.Faults.DuplicatePercent != 0 ||
			f.Set&FaultCorrupt == 0 && f.Faults.CorruptPercent != 0 {
			return errors.New("flaky: a fault is given a value but not marked as set")
		}
		if f.Faults.Delay < 0 || f.Faults.Jitter < 0 {
			return errors.New("flaky: --delay and --jitter cannot be negative")
		}
		if f.Faults.Jitter > 0 && f.Faults.Delay == 0 {
			return errors.New("flaky: --jitter needs --delay")
		}
		if f.Faults.Jitter > f.Faults.Delay {
			return fmt.Errorf("flaky: --jitter %s is larger than --delay %s: jitter is the delay's standard deviation; make it at most the delay", f.Faults.Jitter, f.Faults.Delay)
		}
		if f.Faults.Delay > MaxDelay {
			return fmt.Errorf("flaky: --delay %s is over %s; write a shorter delay", f.Faults.Delay, MaxDelay)
		}
		for _, p := range []struct {
			flag string
			v    float64
		}{{"--reorder", f.Faults.ReorderPercent}, {"--duplicate", f.Faults.DuplicatePercent}, {"--corrupt", f.Faults.CorruptPercent}} {
			if !(p.v >= 0 && p.v <= 100) {
				return fmt.Errorf("flaky: %s %g%%: write a percentage from 0%% to 100%%", p.flag, p.v)
			}
		}
	}
	return nil
}

// ParseNet reads `nsrun net VERB ...` (args after "net"; not exec) into a
// checked call: every bad value is refused here, naming its flag, before
// anything is sent. nodes, when known (nil otherwise), are the run's
// nodes: a name that is not one of them is refused too.
func ParseNet(a Args, nodes []string) (NetCall, error) {
	var c NetCall
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
		c.Flaky = &Flaky{Node: a.Rest[0], Faults: f}
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
		_, js := a.Flags["--json"]
		c.Show = &Show{JSON: js}
	default:
		sp, err := partition.ParseSpec(verb, a.Rest, partition.Options{Uplink: uplink, Seed: seed})
		if err != nil {
			return c, err
		}
		for _, f := range c.specFields() {
			if f.set(sp) {
				break
			}
		}
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
func parseLatency(a Args) (Latency, error) {
	const usage = "latency: write nsrun net latency A B 40ms [--jitter 5ms] [--one-way], or nsrun net latency --clear"
	if _, ok := a.Flags["--clear"]; ok {
		if len(a.Rest) > 0 || len(a.Flags) > 1+len(a.runFlag()) {
			return Latency{}, errors.New("latency: --clear takes no nodes and no other flag")
		}
		return Latency{Clear: true}, nil
	}
	if len(a.Rest) != 3 {
		return Latency{}, errors.New(usage)
	}
	l := Latency{A: a.Rest[0], B: a.Rest[1]}
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
func parseFaults(flags map[string]string) (Faults, error) {
	var f Faults
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
	if ppm > LossScale {
		return 0, errors.New(forms)
	}
	return uint32(ppm), nil
}

// PercentPPM writes parts per million as a percentage: 3000 is "0.3%".
func PercentPPM(ppm uint32) string {
	s := strconv.FormatUint(uint64(ppm/10000), 10)
	if frac := ppm % 10000; frac != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%04d", frac), "0")
	}
	return s + "%"
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

// NodeCall is one `nsrun node` verb.
type NodeCall struct {
	Action string `json:"action"` // stop, start, restart, pause or resume
	Node   string `json:"node"`
}

// Check refuses an action the table does not list and a name that cannot
// be a node.
func (c NodeCall) Check() error {
	if _, ok := LookupVerb("node", c.Action); !ok {
		return fmt.Errorf("node: unknown action %q; write stop, start, restart, pause or resume", c.Action)
	}
	return ipam.CheckNodeName("node "+c.Action, c.Node)
}

// ParseNode reads `nsrun node ACTION NODE` into a checked call; nodes, when
// known, are the run's nodes.
func ParseNode(a Args, nodes []string) (NodeCall, error) {
	if len(a.Rest) != 1 {
		return NodeCall{}, errors.New("node: write nsrun node stop|start|restart|pause|resume [--run ID] NODE")
	}
	c := NodeCall{Action: a.Verb.Name, Node: a.Rest[0]}
	if err := c.Check(); err != nil {
		return c, err
	}
	if nodes != nil && !slices.Contains(nodes, c.Node) {
		return c, fmt.Errorf("node %s: no node %q in this run; its nodes: %s", c.Action, c.Node, strings.Join(nodes, ", "))
	}
	return c, nil
}
