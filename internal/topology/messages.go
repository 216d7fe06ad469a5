package topology

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is a problem in the file, at a position.
type Error struct {
	File         string
	Line, Column int
	Msg          string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// ErrorAt is an error at pos of file; without a file (a run from the
// command line), just the message.
func ErrorAt(file string, pos Pos, format string, args ...any) error {
	if file == "" {
		return fmt.Errorf(format, args...)
	}
	return &Error{File: file, Line: pos.Line, Column: pos.Column, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) errAt(n *yaml.Node, format string, args ...any) error {
	return &Error{File: p.file, Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)}
}

// yamlError turns a YAML syntax error into one with line and column.
func (p *parser) yamlError(err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ":"); ok {
			line, _ = strconv.Atoi(n)
			msg = strings.TrimSpace(after)
		}
	}
	return &Error{File: p.file, Line: line, Column: 1, Msg: "YAML: " + msg}
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}

func subnetList(t *Topology) string {
	var s []string
	for _, sn := range t.Subnets {
		var ps []string
		if sn.HasIPv4() {
			ps = append(ps, sn.Prefix.String())
		}
		if sn.HasIPv6() {
			ps = append(ps, sn.Prefix6.String())
		}
		s = append(s, sn.Name+" "+strings.Join(ps, " and "))
	}
	return strings.Join(s, ", ")
}
