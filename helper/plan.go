package helper

import (
	"fmt"
	"io"
	"strings"
)

// Step is one change to the machine.
type Step struct {
	// Describe says what the step changes, in words and values a person
	// can check (several lines allowed).
	Describe string
	// Done reports whether the change is already in place.
	Done func() (bool, error)
	// Apply makes the change.
	Apply func() error
}

// Plan is the ordered steps of install or uninstall.
type Plan []Step

// Run prints every step and, unless dryRun, applies those not yet done.
// It stops at the first failure.
func (p Plan) Run(w io.Writer, dryRun bool) error {
	changed := 0
	for _, s := range p {
		done, err := s.Done()
		if err != nil {
			return fmt.Errorf("check %q: %w", firstLine(s.Describe), err)
		}
		switch {
		case done:
			fmt.Fprintf(w, "unchanged  %s\n", indent(s.Describe))
		case dryRun:
			changed++
			fmt.Fprintf(w, "would      %s\n", indent(s.Describe))
		default:
			changed++
			if err := s.Apply(); err != nil {
				return fmt.Errorf("%s: %w", firstLine(s.Describe), err)
			}
			fmt.Fprintf(w, "done       %s\n", indent(s.Describe))
		}
	}
	switch {
	case changed == 0:
		fmt.Fprintln(w, "nothing to change")
	case dryRun:
		fmt.Fprintf(w, "dry run: %d change(s) listed, nothing changed\n", changed)
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n           ") }
