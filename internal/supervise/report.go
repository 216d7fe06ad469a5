package supervise

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nsrun/nsrun/internal/report"
)

// ReportFile is the name of the timeline that `up --report DIR` writes
// into DIR.
const ReportFile = "report.html"

// saveEvents copies the run's events.jsonl, once the log is closed, into
// the capture folder when capturing, and into the --report folder with
// its timeline (report.html). The run folder, which holds the log, goes
// with the run.
func (s *supervisor) saveEvents() {
	if s.state == nil {
		return
	}
	src := filepath.Join(s.plan.Run.Dir, EventsFile)
	if c := s.plan.Capture; c != nil {
		if err := copyFile(src, filepath.Join(c.Dir, EventsFile)); err != nil {
			s.out.Note(fmt.Sprintf("capture: %v", err))
		}
	}
	dir := s.plan.Run.Report
	if dir == "" {
		return
	}
	if err := writeReport(src, dir, "nsrun run "+s.plan.Run.ID); err != nil {
		s.out.Note(fmt.Sprintf("--report: %v", err))
		return
	}
	s.out.Note("report: " + filepath.Join(dir, ReportFile))
}

// writeReport copies the events file src into dir and draws it as
// dir/report.html.
func writeReport(src, dir, title string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dst := filepath.Join(dir, EventsFile)
	if err := copyFile(src, dst); err != nil {
		return err
	}
	events, err := report.ReadEvents(dst)
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, ReportFile))
	if err != nil {
		return err
	}
	if err := report.Write(f, title, events); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy the run's events: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("copy the run's events: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy the run's events to %s: %w", dst, err)
	}
	return out.Close()
}
