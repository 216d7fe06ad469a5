package supervise

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// newLogger makes the supervisor's step log: to stderr at level (quiet
// when level is ""), and, when capturing, to DIR/nsrun.log at info.
func newLogger(level, captureDir string) (*slog.Logger, io.Closer, error) {
	var ws []io.Writer
	lvl := slog.LevelInfo
	if level != "" {
		if err := lvl.UnmarshalText([]byte(level)); err != nil {
			return nil, nil, fmt.Errorf("--log-level %q: write debug, info, warn or error", level)
		}
		ws = append(ws, os.Stderr)
	}
	var closer io.Closer = io.NopCloser(nil)
	if captureDir != "" {
		if err := os.MkdirAll(captureDir, 0o755); err != nil {
			return nil, nil, fmt.Errorf("--capture: create %s: %w", captureDir, err)
		}
		f, err := os.OpenFile(filepath.Join(captureDir, "nsrun.log"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("--capture: %w", err)
		}
		ws = append(ws, f)
		closer = f
		if level == "" {
			lvl = slog.LevelInfo
		}
	}
	if len(ws) == 0 {
		return slog.New(slog.DiscardHandler), closer, nil
	}
	return slog.New(slog.NewTextHandler(io.MultiWriter(ws...), &slog.HandlerOptions{Level: lvl})), closer, nil
}

// step logs the start of a setup or teardown step and returns the function
// that logs its end: "create bridge… done" or "… failed".
func step(log *slog.Logger, msg string, args ...any) func(error) {
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
