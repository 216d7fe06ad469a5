package control

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nsrun/nsrun/internal/latency"
	"github.com/nsrun/nsrun/internal/partition"
	"github.com/nsrun/nsrun/ipam"
)

// NetVerbs are the verbs a NetCall carries: `nsrun net`'s verbs but
// exec (an ExecCall). The command line's table of verbs lists the same.
var NetVerbs = []string{"isolate", "disjoint", "split", "fullmesh", "drop", "halves", "majorities-ring", "bridge", "random-node", "flaky", "latency", "show"}

// NodeActions are the actions of a NodeCall, `nsrun node`'s verbs.
var NodeActions = []string{"stop", "start", "restart", "pause", "resume"}

// SpecCall is the call that applies the partition spec sp.
func SpecCall(sp partition.Spec) NetCall {
	var c NetCall
	for _, f := range c.specFields() {
		if f.set(sp) {
			break
		}
	}
	return c
}

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

// Show asks for the current cut and faults (Response.Net; in words in
// Response.Output).
type Show struct{}

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
	if !slices.Contains(NetVerbs, c.Verb()) {
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

// PercentPPM writes parts per million as a percentage: 3000 is "0.3%".
func PercentPPM(ppm uint32) string {
	s := strconv.FormatUint(uint64(ppm/10000), 10)
	if frac := ppm % 10000; frac != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%04d", frac), "0")
	}
	return s + "%"
}

// NodeCall is one `nsrun node` verb.
type NodeCall struct {
	Action string `json:"action"` // stop, start, restart, pause or resume
	Node   string `json:"node"`
}

// Check refuses an action the table does not list and a name that cannot
// be a node.
func (c NodeCall) Check() error {
	if !slices.Contains(NodeActions, c.Action) {
		return fmt.Errorf("node: unknown action %q; write stop, start, restart, pause or resume", c.Action)
	}
	return ipam.CheckNodeName("node "+c.Action, c.Node)
}
