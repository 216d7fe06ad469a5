package cli

import (
	"strings"
	"testing"
	"time"
)

// TestStripDetach: the run that up -d starts gets up's command line but
// -d, whatever its spelling; flag values and node names that look like
// it stay.
func TestStripDetach(t *testing.T) {
	for in, want := range map[string]string{
		"-d":                            "",
		"--detach web":                  "web",
		"web -d=true --keep-logs":       "web --keep-logs",
		"-f -d -d":                      "-f -d",
		"--exit-code-from d -d db":      "--exit-code-from d db",
		"-d -- -d":                      "-- -d",
		"--timeout 3 --capture=x -d -d": "--timeout 3 --capture=x",
	} {
		var f upFlags
		got, err := stripDetach(f.flagSet(), strings.Fields(in))
		if err != nil || strings.Join(got, " ") != want {
			t.Errorf("stripDetach(%q) = %q, %v; want %q", in, strings.Join(got, " "), err, want)
		}
	}
}

// TestNoColor: up colours its output on a terminal unless NO_COLOR is
// set to something (no-color.org).
func TestNoColor(t *testing.T) {
	if !colorWanted(true, "") || colorWanted(true, "1") || colorWanted(false, "") {
		t.Error("colorWanted does not follow the terminal and NO_COLOR")
	}
}

// TestParseSince: --since takes a duration before now or a time.
func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 7, 13, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"10m":                  now.Add(-10 * time.Minute),
		"1h30m":                now.Add(-90 * time.Minute),
		"2026-12-07T12:00:00Z": now.Add(-time.Hour),
	} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-5m", "12:00"} {
		if _, err := parseSince(bad, now); err == nil || !strings.Contains(err.Error(), "--since") {
			t.Errorf("parseSince(%q): %v; want an error naming --since", bad, err)
		}
	}
}
