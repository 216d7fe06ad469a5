package test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCommandLineRunsOnlyPrograms: the built nsrun, as the user, refuses a
// word before -- that is neither a command nor a path, naming the commands,
// and runs nothing: a program of that name on PATH (which would leave a
// mark) is not started, and no run is made. After --, or named by a path,
// the same program runs.
func TestCommandLineRunsOnlyPrograms(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	dir := project(t, map[string]string{"bin/upp": "#!/bin/sh\necho ran >> \"$MARKS/$1\"\n"})
	if err := os.Chmod(filepath.Join(dir, "bin/upp"), 0o755); err != nil {
		t.Fatal(err)
	}
	marks := filepath.Join(dir, "marks")
	if err := os.Mkdir(marks, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(marks, 0o777); err != nil {
		t.Fatal(err)
	}
	nsrun := func(args ...string) result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := u.nsrun(ctx, args...)
		cmd.Dir = dir
		for i, e := range cmd.Env {
			if p, ok := strings.CutPrefix(e, "PATH="); ok {
				cmd.Env[i] = "PATH=" + filepath.Join(dir, "bin") + ":" + p
			}
		}
		cmd.Env = append(cmd.Env, "MARKS="+marks)
		return run(t, cmd)
	}
	before := u.runDirs()
	for _, c := range []struct {
		args []string
		want string
	}{
		// The whole list of commands is held by cli's unit tests.
		{[]string{"upp", "a"}, `nsrun: unknown command "upp"; known: up, down, `},
		{[]string{"upp", "a"}, `; to run a program, write nsrun -- upp a`},
		{[]string{"--isolated", "upp", "b"}, `to run a program, write nsrun --isolated -- upp b`},
		{[]string{"--root", "--ip", "172.18.0.9", "upp", "c"}, `write nsrun --root --ip 172.18.0.9 -- upp c`},
		{[]string{"--isolated", "up"}, `nsrun: up is a command, and nsrun's flags go after it: write nsrun up --isolated ...; to run a program named up, write nsrun --isolated -- up`},
		{[]string{"top"}, `unknown command "top"`},
		{[]string{"log", "web"}, `unknown command "log"`},
		{[]string{"--isolated", "ps"}, `nsrun: ps is a command, and nsrun's flags go after it`},
	} {
		r := nsrun(c.args...)
		if r.Code != 125 || r.Stdout != "" || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("nsrun %s: exit %d, stdout %q, stderr %q; want 125 and %q", strings.Join(c.args, " "), r.Code, r.Stdout, r.Stderr, c.want)
		}
	}
	if ents, _ := os.ReadDir(marks); len(ents) != 0 {
		t.Errorf("a refused command line ran the program: %v", ents)
	}
	if after := u.runDirs(); len(after) != len(before) {
		t.Errorf("refused command lines made runs: %v", after)
	}
	// The same program runs after --, and as a path.
	for _, args := range [][]string{{"--", "upp", "dashdash"}, {"--isolated", "--", "upp", "isolated"}, {"./bin/upp", "path"}, {"--isolated", "bin/upp", "relpath"}} {
		if r := nsrun(args...); r.Code != 0 {
			t.Errorf("nsrun %s: exit %d, stderr %q", strings.Join(args, " "), r.Code, r.Stderr)
		}
	}
	for _, mark := range []string{"dashdash", "isolated", "path", "relpath"} {
		if b, err := os.ReadFile(filepath.Join(marks, mark)); err != nil || string(b) != "ran\n" {
			t.Errorf("mark %s: %q, %v; want the program to have run once", mark, b, err)
		}
	}
}

// TestHelpOfTheBinary: every command's --help exits 0 with its own help,
// through the C launcher (which must not start a run for any of them);
// gc --help and gc --bogus do not run gc; nsrun-capture --help prints help.
func TestHelpOfTheBinary(t *testing.T) {
	u := unprivileged(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := u.runDirs()
	for line, want := range map[string]string{
		"--help":                   "Flags of nsrun up",
		"help":                     "--capture DIR",
		"--root --help":            "--log-level LEVEL",
		"up --help":                "Usage: nsrun up [flags] [NODE...]",
		"up web --isolated --help": "--capture DIR",
		"up --root -h":             "Usage: nsrun up",
		"net --help":               "nsrun net isolate NODE...",
		"net flaky --help":         "Usage: nsrun net flaky",
		"node stop --help":         "Usage: nsrun node stop NODE",
		"node --help":              "nsrun node pause NODE",
		"attach --help":            "Usage: nsrun attach",
		"ls --help":                "Usage: nsrun ls",
		"gc --help":                "Usage: nsrun gc",
		"up -d --help":             "--keep-logs",
		"up --detach web -h":       "-d, --detach",
		"down --help":              "Usage: nsrun down",
		"ps --help":                "Usage: nsrun ps",
		"logs -f --help":           "Usage: nsrun logs",
		"exec --help":              "Usage: nsrun exec",
		"help up":                  "Usage: nsrun up",
		"version":                  "nsrun ",
	} {
		r := run(t, u.nsrun(ctx, strings.Fields(line)...))
		if r.Code != 0 || r.Stderr != "" || !strings.Contains(r.Stdout, want) {
			t.Errorf("nsrun %s: exit %d, stderr %q; want 0 and %q in:\n%s", line, r.Code, r.Stderr, want, r.Stdout)
		}
	}
	for line, want := range map[string]string{
		"gc --bogus":     "nsrun: gc: flag provided but not defined: -bogus; see nsrun gc --help",
		"gc now":         `nsrun: gc: unexpected argument "now"`,
		"up web --bogus": "nsrun: up: flag provided but not defined: -bogus; see nsrun up --help",
		"net":            "nsrun: net: which verb? see nsrun net --help",
	} {
		r := run(t, u.nsrun(ctx, strings.Fields(line)...))
		if r.Code != 125 || r.Stdout != "" || !strings.Contains(r.Stderr, want) {
			t.Errorf("nsrun %s: exit %d, stdout %q, stderr %q; want 125 and %q", line, r.Code, r.Stdout, r.Stderr, want)
		}
	}
	if after := u.runDirs(); len(after) != len(before) {
		t.Errorf("help made runs: %v", after)
	}
	r := run(t, u.command(ctx, filepath.Join(binDir, "nsrun-capture"), "--help"))
	if r.Code != 0 || !strings.Contains(r.Stdout, "Usage: nsrun-capture FILE...") {
		t.Errorf("nsrun-capture --help: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	r = run(t, u.command(ctx, filepath.Join(binDir, "nsrun-capture"), filepath.Join(os.TempDir(), "never.pcap")))
	if r.Code == 0 || !strings.Contains(r.Stderr, "fd 3 is not a packet socket: nsrun-capture is started by nsrun") {
		t.Errorf("nsrun-capture FILE by hand: exit %d, stderr %q", r.Code, r.Stderr)
	}
}

// TestUpFlagsAfterNodes: nsrun up web -f FILE starts web alone, from FILE
// (the folder holds no nsrun.yaml), and --abort-on-exit after the node
// name counts.
func TestUpFlagsAfterNodes(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	dir := project(t, map[string]string{"sub/x.yaml": `
nodes:
  web: {ip: 172.18.0.2, command: "sh -c 'echo web-ran; exit 3'"}
  db: {ip: 172.18.0.3, command: "sh -c 'echo db-ran; sleep 30'"}
`})
	r := u.up(t, dir, "web", "-f", "sub/x.yaml", "--exit-code-from", "web")
	if r.Code != 3 || !strings.Contains(r.Stdout, "| web-ran") || strings.Contains(r.Stdout, "db started") {
		t.Errorf("up web -f sub/x.yaml --exit-code-from web: exit %d; want 3, web's output and not db's:\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	r = u.up(t, dir, "db", "web", "--timeout", "1", "-f", "sub/x.yaml", "--exit-code-from", "web")
	if r.Code != 3 || !strings.Contains(r.Stdout, "db started") {
		t.Errorf("up db web --timeout 1 -f ... --exit-code-from web: exit %d; want 3 with db started:\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if left := u.runDirs(); len(left) != 0 {
		t.Errorf("run folders left: %v", left)
	}
}
