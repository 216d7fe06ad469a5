package cli

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
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

// TestCompletionFlags: completion offers every flag a command's flag set
// defines, and nothing else, for the commands with flag sets here.
func TestCompletionFlags(t *testing.T) {
	var uf upFlags
	var rf runFlags
	for cmd, fs := range map[string]*flag.FlagSet{"up": uf.flagSet(), "": rf.flagSet()} {
		var want []string
		fs.VisitAll(func(f *flag.Flag) {
			if len(f.Name) == 1 {
				want = append(want, "-"+f.Name)
			} else {
				want = append(want, "--"+f.Name)
			}
		})
		want = append(want, "--help")
		got := commandFlags[cmd]
		slices.Sort(want)
		got = slices.Sorted(slices.Values(got))
		if !slices.Equal(got, want) {
			t.Errorf("%q: completion offers %v; its flag set has %v", cmd, got, want)
		}
	}
	for cmd := range commandFlags {
		if _, ok := command(cmd); cmd != "" && !ok {
			t.Errorf("completion has flags of %q, no command", cmd)
		}
	}
	for _, cmd := range commandNames {
		if _, ok := commandFlags[cmd]; !ok && cmd != "net" && cmd != "node" {
			t.Errorf("completion knows no flags of %s", cmd)
		}
	}
}

// TestCompleteWords: commands, verbs, flags and (with a file) up's node
// names; a flag's value gets nothing (the shell's files).
func TestCompleteWords(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile(filepath.Join(dir, "nsrun.yaml"), []byte("nodes:\n  web: {ip: 172.18.0.2}\n  db: {ip: 172.18.0.3}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for line, want := range map[string]string{
		"n":                "net node",
		"":                 strings.Join(append(append([]string(nil), commandNames...), "--help", "--version"), " "),
		"node ":            "stop start restart pause resume",
		"net iso":          "isolate",
		"net isolate --u":  "--uplink",
		"up ":              "web db",
		"up -f ":           "",
		"up --k":           "--keep-logs",
		"logs --f":         "--follow",
		"completion ":      "bash zsh fish",
		"help node p":      "pause",
		"ps --run ":        "",
		"exec web ":        "--",
		"exec web -- ":     "",
		"net exec web -- ": "",
		"--is":             "--isolated",
		"-":                strings.Join(commandFlags[""], " "),
		"--root --ip":      "--ip --ip6 --ipv6",
		"--root --ip ":     "",
		"--hostname h --r": "--root",
		"--root ":          "",
		"--root -- ":       "",
		"--root -- --r":    "",
		"--log-level ":     "debug info warn error",
		"up --log-level w": "warn",
		"logs --since ":    "",
	} {
		got := strings.Join(completeWords(strings.Split(line, " ")), " ")
		if got != want {
			t.Errorf("complete %q = %q; want %q", line, got, want)
		}
	}
}
