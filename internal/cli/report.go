package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nsrun/nsrun/internal/report"
	"github.com/nsrun/nsrun/internal/supervise"
	"github.com/nsrun/nsrun/internal/verbs"
)

// reportDir checks --report DIR: a folder (made if missing) that nsrun
// can write, as an absolute path (the run's working folder may differ).
func reportDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("up: --report %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", fmt.Errorf("up: --report %s: %w", dir, err)
	}
	return abs, nil
}

// cmdReport is `nsrun report DIR`: the timeline of DIR/events.jsonl (an
// --report or --capture folder) as DIR/report.html.
func cmdReport(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "--help" || args[0] == "-h") {
		fmt.Fprint(stdout, helpText("report", verbs.Verb{}))
		return 0
	}
	if len(args) != 1 {
		return fail(stderr, errors.New("report: write nsrun report DIR (a folder with events.jsonl, from up --report DIR or --capture DIR)"))
	}
	dir := args[0]
	events, err := report.ReadEvents(filepath.Join(dir, supervise.EventsFile))
	if err != nil {
		return fail(stderr, fmt.Errorf("report: %w", err))
	}
	out := filepath.Join(dir, supervise.ReportFile)
	f, err := os.Create(out)
	if err != nil {
		return fail(stderr, fmt.Errorf("report: %w", err))
	}
	if err := report.Write(f, "nsrun run "+filepath.Base(filepath.Clean(dir)), events); err != nil {
		f.Close()
		return fail(stderr, fmt.Errorf("report: %w", err))
	}
	if err := f.Close(); err != nil {
		return fail(stderr, fmt.Errorf("report: %w", err))
	}
	fmt.Fprintln(stdout, out)
	return 0
}
