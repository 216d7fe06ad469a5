package verbs

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/partition"
)

var five = []string{"n1", "n2", "n3", "n4", "n5"}

func parseNet(t *testing.T, line string, nodes []string) (Args, control.NetCall, error) {
	t.Helper()
	a, err := SplitArgs("net", strings.Fields(line))
	if err != nil {
		return a, control.NetCall{}, err
	}
	c, err := ParseNet(a, nodes)
	return a, c, err
}

// TestFlagsAnywhere: flags are accepted before the verb, between its
// arguments and after them, in both spellings of a value.
func TestFlagsAnywhere(t *testing.T) {
	for _, line := range []string{
		"--run abc isolate n4", "isolate --run abc n4", "isolate n4 --run abc",
		"--run=abc isolate n4", "-run abc isolate n4",
	} {
		a, c, err := parseNet(t, line, five)
		if err != nil {
			t.Errorf("%q: %v", line, err)
			continue
		}
		if a.RunID != "abc" || c.Isolate == nil || !reflect.DeepEqual(c.Isolate.Nodes, []string{"n4"}) {
			t.Errorf("%q: run %q, call %+v", line, a.RunID, c)
		}
	}
	_, c, err := parseNet(t, "--seed 7 --uplink halves", five)
	if err != nil || c.Shape == nil || *c.Shape != (partition.Shape{Name: "halves", Seed: 7, Uplink: true}) {
		t.Errorf("halves: %+v %v", c.Shape, err)
	}
	_, c, err = parseNet(t, "disjoint n1 n2 --uplink -- n3 n4 n5", five)
	if err != nil || c.Disjoint == nil || !reflect.DeepEqual(c.Disjoint.Clusters, [][]string{{"n1", "n2"}, {"n3", "n4", "n5"}}) || !c.Disjoint.Uplink {
		t.Errorf("disjoint: %+v %v", c.Disjoint, err)
	}
	_, c, err = parseNet(t, "flaky --loss 30% n2 --rate 1mbit --delay 100ms --jitter=20ms", five)
	want := control.Flaky{Node: "n2", Faults: control.Faults{LossPPM: 300_000, Rate: 1e6, Delay: 100 * time.Millisecond, Jitter: 20 * time.Millisecond}, Set: control.FaultLoss | control.FaultRate | control.FaultDelay}
	if err != nil || c.Flaky == nil || *c.Flaky != want {
		t.Errorf("flaky: %+v %v", c.Flaky, err)
	}
}

// TestExecKeepsCommand: exec's command keeps its own flags, with or
// without "--".
func TestExecKeepsCommand(t *testing.T) {
	for line, rest := range map[string]string{
		"--run x exec n1 -- ls -la":   "n1 -- ls -la",
		"exec --root n1 ls -la --run": "n1 ls -la --run",
		"exec n1 --run x -- id":       "n1 --run x -- id",
	} {
		a, err := SplitArgs("net", strings.Fields(line))
		if err != nil || strings.Join(a.Rest, " ") != rest {
			t.Errorf("%q: rest %q, want %q (%v)", line, a.Rest, rest, err)
		}
	}
	a, _ := SplitArgs("net", strings.Fields("exec --root --run x n1 -- id"))
	if _, root := a.Flags["--root"]; !root || a.RunID != "x" {
		t.Errorf("exec --root --run x: %+v", a)
	}
}

// TestBadInputRefusedInClient: every bad value is refused by the parser,
// naming the flag or the node, so nothing is sent.
func TestBadInputRefusedInClient(t *testing.T) {
	for line, want := range map[string]string{
		"":                                "which verb",
		"--run x":                         "which verb",
		"partition n1":                    `unknown verb "partition"`,
		"isolate":                         "name the nodes",
		"isolate n1 n1":                   `"n1" is named twice`,
		"isolate zz":                      `no node "zz" in this run`,
		"isolate n1 --loss 3":             "isolate: unknown flag --loss",
		"isolate n1 --bogus":              "unknown flag --bogus",
		"isolate --run":                   "--run needs a value",
		"isolate n1 --uplink=maybe":       "--uplink takes no value",
		"isolate --run a --run b n1":      "--run is given twice",
		"fullmesh n1":                     "fullmesh takes no nodes",
		"fullmesh --uplink":               "fullmesh: unknown flag --uplink",
		"disjoint n1 n2 -- n2 n3 n4 n5":   `"n2" is in two clusters`,
		"disjoint n1 n2 -- n3":            "use split",
		"disjoint n1 n2":                  "at least two clusters",
		"split n1 -- -- n2":               "an empty cluster",
		"drop n1":                         "write nsrun net drop FROM TO",
		"drop n1 n1":                      `FROM and TO are both "n1"`,
		"halves n1":                       "halves takes no nodes",
		"halves --seed 0":                 `--seed "0": write a positive whole number`,
		"bridge --seed x":                 `--seed "x"`,
		"flaky":                           "write nsrun net flaky NODE",
		"flaky n1 --loss 150%":            `--loss "150%": write a percentage from 0% to 100% with its %, such as 30%, 0.3%`,
		"flaky n1 --loss 0.3":             `--loss "0.3": no % sign: write a percentage from 0% to 100% with its %, such as 30%, 0.3% or 0.0001%`,
		"flaky n1 --loss 0.00001%":        `finer than the finest step, 0.0001%`,
		"flaky n1 --loss -1":              `--loss "-1"`,
		"flaky n1 --rate fast":            `--rate "fast"`,
		"flaky n1 --rate 0mbit":           `--rate "0mbit"`,
		"flaky n1 --delay soon":           `--delay "soon"`,
		"flaky n1 --delay -5ms":           `--delay "-5ms"`,
		"flaky n1 --delay 5ms --jitter x": `--jitter "x"`,
		"flaky n1 --jitter 5ms":           "--jitter needs --delay",
		"flaky zz --loss 10%":             `no node "zz"`,
		"flaky bad/name --loss 10%":       `node name "bad/name"`,
		"flaky n1 --seed 3":               "flaky: unknown flag --seed",
		"show n1":                         "show takes no nodes",
		"show --uplink":                   "show: unknown flag --uplink",
		"exec --loss 3 n1 -- true":        "exec: unknown flag --loss",
	} {
		_, _, err := parseNet(t, line, five)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("net %s: %v; want %q", line, err, want)
		}
	}
	for line, want := range map[string]string{
		"stop":             "write nsrun node stop",
		"stop n1 n2":       "write nsrun node stop",
		"kill n1":          `unknown verb "kill"`,
		"stop zz":          `no node "zz"`,
		"stop n1 --loss 3": "node stop: unknown flag --loss",
	} {
		a, err := SplitArgs("node", strings.Fields(line))
		if err == nil {
			_, err = ParseNode(a, five)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("node %s: %v; want %q", line, err, want)
		}
	}
	// Without the run's nodes (a run still starting), names are left to
	// the supervisor.
	if _, _, err := parseNet(t, "isolate zz", nil); err != nil {
		t.Errorf("isolate zz, nodes unknown: %v", err)
	}
}

// TestCallCheck: the supervisor's check of what arrives refuses calls the
// client would not build.
func TestCallCheck(t *testing.T) {
	for _, c := range []control.NetCall{
		{},
		{Heal: &partition.Heal{}, Show: &control.Show{}},
		{Shape: &partition.Shape{Name: "exec"}},
		{Flaky: &control.Flaky{Node: "n1", Faults: control.Faults{LossPPM: 1_000_001}, Set: control.FaultLoss}},
		{Flaky: &control.Flaky{Node: "n1", Faults: control.Faults{LossPPM: 10}}},
		{Flaky: &control.Flaky{Node: "n1", Faults: control.Faults{Jitter: time.Millisecond}}},
		{Flaky: &control.Flaky{Node: ""}},
	} {
		if err := c.Check(); err == nil {
			t.Errorf("%+v passed Check", c)
		}
	}
	if err := (control.NodeCall{Action: "kill", Node: "n1"}).Check(); err == nil {
		t.Error("node kill passed Check")
	}
}

// TestUsageListsEveryVerb: the usage text comes from the table.
func TestUsageListsEveryVerb(t *testing.T) {
	u := Usage()
	for _, v := range Verbs {
		if !strings.Contains(u, " "+v.Name) {
			t.Errorf("usage lacks %s %s", v.Cmd, v.Name)
		}
	}
	for _, s := range partition.Shapes {
		if _, ok := LookupVerb("net", s); !ok {
			t.Errorf("shape %s is not a net verb", s)
		}
	}
}

// FuzzParseNet: no command line makes the parser panic, and whatever it
// accepts passes the supervisor's check and survives the wire (JSON)
// unchanged.
func FuzzParseNet(f *testing.F) {
	for _, s := range []string{
		"isolate n1", "--run x isolate n2 n3 --uplink", "disjoint n1 n2 -- n3 n4 n5", "split n1 -- n1 n2",
		"drop n1 n2", "halves --seed 3", "flaky n1 --loss 30% --rate 1mbit --delay 1ms --jitter 1ms",
		"show --json", "fullmesh", "exec n1 -- true", "majorities-ring", "flaky n1 --rate 1e400bit",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		a, err := SplitArgs("net", strings.Fields(line))
		if err != nil || a.Verb.Name == "exec" {
			return
		}
		c, err := ParseNet(a, five)
		if err != nil {
			return
		}
		if err := c.Check(); err != nil {
			t.Fatalf("%q: parsed, but the supervisor refuses it: %v", line, err)
		}
		b, err := json.Marshal(control.Request{Verb: "net", Net: &c})
		var back control.Request
		if err != nil || json.Unmarshal(b, &back) != nil || back.Net == nil || !reflect.DeepEqual(*back.Net, c) {
			t.Fatalf("%q: %+v does not survive the wire: %s", line, c, b)
		}
		if sp := c.Spec(); sp != nil {
			if _, err := sp.State(five); err != nil {
				t.Fatalf("%q: parsed, but its state fails: %v", line, err)
			}
		}
	})
}

// TestEverySpecVerbRoundTrips: each cutting verb parses into a call with
// exactly one spec field set, whose Spec is that verb, and the call
// survives JSON (what the supervisor receives).
func TestEverySpecVerbRoundTrips(t *testing.T) {
	for _, line := range []string{"isolate n1", "disjoint n1 -- n2 n3 n4 n5", "split n1 n2 -- n2 n3", "drop n1 n2", "fullmesh", "halves", "majorities-ring", "bridge", "random-node"} {
		_, c, err := parseNet(t, line, five)
		if err != nil {
			t.Errorf("%q: %v", line, err)
			continue
		}
		verb := strings.Fields(line)[0]
		if sp := c.Spec(); sp == nil || sp.Verb() != verb || c.Verb() != verb {
			t.Errorf("%q: spec %#v, verb %q", line, sp, c.Verb())
		}
		b, _ := json.Marshal(c)
		var back control.NetCall
		if err := json.Unmarshal(b, &back); err != nil || back.Check() != nil || !reflect.DeepEqual(back.Spec(), c.Spec()) {
			t.Errorf("%q: %s came back as %+v (%v, %v)", line, b, back, err, back.Check())
		}
	}
}

// TestParseLoss: --loss is exact to the step of 0.0001%; a bare number is
// refused (0.3 was rounded to 0% once, and means 30% to nstest).
func TestParseLoss(t *testing.T) {
	for in, want := range map[string]uint32{
		"0.3%": 3000, "0.5%": 5000, "99.9%": 999_000, "100%": 1_000_000, "0%": 0, "30%": 300_000,
		"0.0001%": 1, ".5%": 5000, "7.%": 70_000, "12.3456%": 123_456,
	} {
		got, err := ParseLoss(in)
		if err != nil || got != want {
			t.Errorf("ParseLoss(%q) = %d, %v; want %d", in, got, err, want)
		}
		if err == nil && in != ".5%" && in != "7.%" && control.PercentPPM(got) != in {
			t.Errorf("control.PercentPPM(%d) = %q, want %q", got, control.PercentPPM(got), in)
		}
	}
	for _, in := range []string{"0.3", "30", "", "%", ".%", "-1%", "100.0001%", "1e2%", "0.00001%", "0x10%", "1000%", " 3%"} {
		if got, err := ParseLoss(in); err == nil {
			t.Errorf("ParseLoss(%q) = %d, want an error", in, got)
		}
	}
}

// TestVerbTableMatchesControl: the verbs the command line parses are the
// ones the run takes (control.NetVerbs, control.NodeActions), and exec.
func TestVerbTableMatchesControl(t *testing.T) {
	var net, node []string
	for _, v := range Verbs {
		switch {
		case v.Cmd == "net" && v.Name != "exec":
			net = append(net, v.Name)
		case v.Cmd == "node":
			node = append(node, v.Name)
		}
	}
	if !reflect.DeepEqual(net, control.NetVerbs) || !reflect.DeepEqual(node, control.NodeActions) {
		t.Errorf("table: net %q node %q; control: net %q node %q", net, node, control.NetVerbs, control.NodeActions)
	}
}

// TestParseNodes: node verbs take several nodes, each checked; a node
// named twice or unknown is refused before any call.
func TestParseNodes(t *testing.T) {
	nodes := []string{"a", "b", "c"}
	parse := func(line string) ([]control.NodeCall, error) {
		a, err := SplitArgs("node", strings.Fields(line))
		if err != nil {
			return nil, err
		}
		return ParseNodes(a, nodes)
	}
	calls, err := parse("stop b a --run x")
	if err != nil || len(calls) != 2 || calls[0] != (control.NodeCall{Action: "stop", Node: "b"}) || calls[1].Node != "a" {
		t.Errorf("stop b a: %v, %v", calls, err)
	}
	for line, want := range map[string]string{
		"pause a a": `node pause: "a" is named twice`,
		"start a z": `node start: no node "z" in this run`,
		"resume":    "NODE [NODE...]",
	} {
		if _, err := parse(line); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", line, err, want)
		}
	}
}
