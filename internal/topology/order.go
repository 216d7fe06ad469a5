package topology

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// order sorts nodes so that each comes after its dependencies, keeping the
// file's order otherwise, and refuses cycles.
func (p *parser) order(nodes []Node, at map[string]*yaml.Node) ([]Node, error) {
	byName := map[string]Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	const (
		todo = iota
		doing
		done
	)
	state := map[string]int{}
	var out []Node
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		switch state[name] {
		case done:
			return nil
		case doing:
			cycle := append(path, name)
			for i, c := range cycle {
				if c == name {
					cycle = cycle[i:]
					break
				}
			}
			return p.errAt(at[name], "nodes.%s.depends_on: dependency cycle %s; remove one of these dependencies", name, strings.Join(cycle, " -> "))
		}
		state[name] = doing
		for _, d := range byName[name].DependsOn {
			if err := visit(d, append(path, name)); err != nil {
				return err
			}
		}
		state[name] = done
		out = append(out, byName[name])
		return nil
	}
	for _, n := range nodes {
		if err := visit(n.Name, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}
