// Package runlog is a run's step log: every step of setting up and
// tearing down a run is logged when it starts and when it is done (with
// its duration) or failed (with the error), to stderr at --log-level and,
// with --capture, to the capture's log beside the pcap files.
package runlog

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nsrun/nsrun/internal/plan"
)

// New makes a run's step log: to stderr at l's level (when l asks for
// it) and, when c is not nil, to c.Log, which the caller closes.
func New(l plan.Log, c *plan.Capture) (*slog.Logger, io.Closer, error) {
	var ws []io.Writer
	lvl := l.Level
	if l.Stderr {
		ws = append(ws, os.Stderr)
	}
	var closer io.Closer = io.NopCloser(nil)
	if c != nil {
		if err := os.MkdirAll(c.Dir, 0o755); err != nil {
			return nil, nil, fmt.Errorf("--capture: create %s: %w", c.Dir, err)
		}
		f, err := os.OpenFile(c.Log, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("--capture: %w", err)
		}
		ws = append(ws, f)
		closer = f
	}
	if len(ws) == 0 {
		return slog.New(slog.DiscardHandler), closer, nil
	}
	return slog.New(slog.NewTextHandler(io.MultiWriter(ws...), &slog.HandlerOptions{Level: lvl})), closer, nil
}

// Step logs the start of a setup or teardown step and returns the
// function that logs its end: "create bridge… done" or "… failed".
func Step(log *slog.Logger, msg string, args ...any) func(error) {
	start := time.Now()
	log.Info(msg+"…", args...)
	return func(err error) {
		if err != nil {
			log.Error(msg+"… failed", append(args, "err", err)...)
			return
		}
		log.Info(msg+"… done", append(args, "took", time.Since(start).Round(time.Microsecond))...)
	}
}
