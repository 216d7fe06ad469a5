package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/completiontest"
	"github.com/nsrun/nsrun/internal/verbs"
)

// TestMain makes the test binary nsrun when it is started by that name
// (TestCompletionShells puts a link named nsrun on the shells' PATH), so
// that the shells' completion asks this package's code.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "nsrun" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestCompletionShells: bash, zsh (the script sourced, or autoloaded
// from $fpath) and fish, each loading the script of nsrun completion
// SHELL and completing as on a TAB, offer the same candidates: commands,
// verbs, flags, node names of the file in the working folder, and the
// folder's files where nsrun has nothing to offer (a flag's value, the
// command after exec's --). Node names of a live run and run ids:
// test/TestCompletionLiveRun.
func TestCompletionShells(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin, home, rt, dir := filepath.Join(tmp, "bin"), filepath.Join(tmp, "home"), filepath.Join(tmp, "rt"), filepath.Join(tmp, "project")
	for _, d := range []string{bin, home, rt, filepath.Join(dir, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(self, filepath.Join(bin, "nsrun")); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"nsrun.yaml": "nodes:\n  web: {ip: 172.18.0.2}\n  db: {ip: 172.18.0.3}\n",
		"other.yaml": "nodes: {}\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files := "nsrun.yaml other.yaml sub"
	verbsOf := func(cmd string) string {
		var out []string
		for _, v := range verbs.Verbs {
			if v.Cmd == cmd {
				out = append(out, v.Name)
			}
		}
		return strings.Join(out, " ")
	}
	cases := []struct{ line, want string }{
		{"", strings.Join(append(append([]string(nil), commandNames...), "--help", "--version"), " ")},
		{"n", "net node"},
		{"dow", "down"},
		{"--is", "--isolated"},
		{"--root --ip ", files}, // an address
		{"--root -- ", files},   // the command
		{"net ", verbsOf("net")},
		{"node ", verbsOf("node")},
		{"net iso", "isolate"},
		{"net isolate --up", "--uplink"},
		{"up ", "web db"},
		{"up -d w", "web"},
		{"up -", strings.Join(commandFlags["up"], " ")},
		{"up --k", "--keep-logs"},
		{"up --log-level ", "debug info warn error"},
		{"up -f ", files},
		{"up -f o", "other.yaml"},
		{"up -f other.yaml ", files}, // no nodes in it
		{"logs --f", "--follow"},
		{"exec web ", "--"},
		{"exec web -- ", files},
		{"completion ", "bash zsh fish"},
		{"help node p", "pause"},
		{"ps --run ", files}, // no runs
	}
	env := []string{
		"PATH=" + bin + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + home,
		"XDG_RUNTIME_DIR=" + rt,
		"LANG=C",
	}
	t.Cleanup(func() {
		if entries, _ := os.ReadDir(home); len(entries) > 0 {
			t.Errorf("the shells left files in HOME: %v", entries)
		}
	})
	lines := make([]string, len(cases))
	for i, c := range cases {
		lines[i] = c.line
	}
	for _, shell := range completiontest.Shells {
		t.Run(shell, func(t *testing.T) {
			completiontest.Need(t, shell)
			t.Parallel()
			args, err := completiontest.Command(shell, lines)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, args[0], args[1:]...)
			cmd.Dir, cmd.Env = dir, env
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("complete in %s: %v\n%s", shell, err, stderr.String())
			}
			results, err := completiontest.Results(string(out), len(cases))
			if err != nil {
				t.Fatalf("complete in %s: %v", shell, err)
			}
			for i, c := range cases {
				want := strings.Fields(c.want)
				slices.Sort(want)
				if !slices.Equal(results[i], want) {
					t.Errorf("complete %q in %s: %q; want %q", "nsrun "+c.line, shell, results[i], want)
				}
			}
		})
	}
}
