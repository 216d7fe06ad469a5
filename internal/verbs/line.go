package verbs

import (
	"errors"
	"fmt"

	"github.com/nsrun/nsrun/internal/faults"
)

// ParseLine reads one verb line of a fault schedule ("net isolate
// n3", "node pause n2") with the command line's own parser: the same
// verbs, flags and checks as `nsrun net` and `nsrun node`. nodes are the
// run's nodes. It is a faults.Parser.
func ParseLine(words, nodes []string) (faults.Action, error) {
	if len(words) == 0 || words[0] != "net" && words[0] != "node" {
		return faults.Action{}, errors.New("write a net or node verb, such as net isolate n3")
	}
	a, err := SplitArgs(words[0], words[1:])
	if errors.Is(err, ErrHelp) {
		return faults.Action{}, fmt.Errorf("%s: --help is no fault", words[0])
	}
	if err != nil {
		return faults.Action{}, err
	}
	if a.RunID != "" {
		return faults.Action{}, fmt.Errorf("%s %s: --run: the schedule acts on its own run; drop it", words[0], a.Verb.Name)
	}
	act := faults.Action{Words: words}
	if words[0] == "node" {
		c, err := ParseNode(a, nodes)
		act.Node = &c
		return act, err
	}
	if a.Verb.Name == "exec" || a.Verb.Name == "show" {
		return act, fmt.Errorf("net %s changes nothing: a schedule's steps are faults and heals", a.Verb.Name)
	}
	c, err := ParseNet(a, nodes)
	act.Net = &c
	return act, err
}
