package cli

import (
	"bytes"
	"flag"
	"github.com/nsrun/nsrun/internal/version"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/internal/verbs"
)

// mainOut runs the command line and returns its exit code and output.
func mainOut(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestUnknownWordsRefused: a word before -- that is neither a command nor
// a path is refused, naming the commands and how to run a program; it is
// never run (these command lines reach no launcher: a run would fail the
// test with "the launcher did not start this run").
func TestUnknownWordsRefused(t *testing.T) {
	for line, want := range map[string]string{
		"upp":                     `unknown command "upp"; known: up, down, ps, logs, exec, net, node, events, attach, faults, report, ls, gc, doctor, completion, help, version; to run a program, write nsrun -- upp`,
		"top":                     `unknown command "top"; known: up, down,`,
		"stop":                    `to run a program, write nsrun -- stop`,
		"log web":                 `to run a program, write nsrun -- log web`,
		"--root pss -e":           `unknown command "pss"; known: up, down, ps, logs, exec, net, node, events, attach, faults, report, ls, gc, doctor, completion, help, version; to run a program, write nsrun --root -- pss -e`,
		"--root ps":               `ps is a command, and nsrun's flags go after it`,
		"--ip 172.18.0.7 upp":     `write nsrun --ip 172.18.0.7 -- upp`,
		"--isolated up":           `up is a command, and nsrun's flags go after it: write nsrun up --isolated ...; to run a program named up, write nsrun --isolated -- up`,
		"--root --isolated net x": `write nsrun net --root --isolated ...`,
		"--ip -- upp":             `unknown command "upp"`, // -- is --ip's value here
	} {
		code, stdout, stderr := mainOut(strings.Fields(line)...)
		if code != 125 || stdout != "" || !strings.Contains(stderr, want) {
			t.Errorf("nsrun %s: exit %d, stdout %q, stderr %q; want 125 and %q", line, code, stdout, stderr, want)
		}
	}
}

// TestHelpOfEveryCommand: --help of every command and verb (and nsrun help
// COMMAND [VERB]) prints that command's help on stdout and exits 0, and
// each help is complete: it names every flag the command takes.
func TestHelpOfEveryCommand(t *testing.T) {
	var runFlagNames, upFlagNames []string
	var rf runFlags
	rf.flagSet().VisitAll(func(f *flag.Flag) { runFlagNames = append(runFlagNames, "-"+f.Name) })
	var uf upFlags
	uf.flagSet().VisitAll(func(f *flag.Flag) { upFlagNames = append(upFlagNames, "-"+f.Name) })
	cases := map[string][]string{
		"--help":            append(append([]string{"nsrun up", "nsrun down", "nsrun ps", "nsrun logs", "nsrun exec", "nsrun completion", "nsrun net", "nsrun node", "nsrun attach", "nsrun ls", "nsrun gc", "nsrun help", "nsrun version"}, runFlagNames...), upFlagNames...),
		"-h":                {"Flags of nsrun up"},
		"help":              {"Flags of nsrun up"},
		"--root --help":     {"Flags of nsrun up"},
		"up --help":         append([]string{"Usage: nsrun up"}, upFlagNames...),
		"up web --help":     {"Usage: nsrun up"},
		"up -h":             {"Usage: nsrun up"},
		"help up":           {"Usage: nsrun up"},
		"net --help":        {"Usage: nsrun net VERB"},
		"net -h":            {"Usage: nsrun net VERB"},
		"help net":          {"Usage: nsrun net VERB"},
		"net --run x -h":    {"Usage: nsrun net VERB"},
		"node --help":       {"Usage: nsrun node VERB", "node stop", "node resume"},
		"attach --help":     {"Usage: nsrun attach", "--run", "--pid", "--ip", "--ip6", "--name"},
		"ls --help":         {"Usage: nsrun ls", "--json"},
		"down --help":       {"Usage: nsrun down", "--run ID"},
		"ps --help":         {"Usage: nsrun ps", "--run ID", "--json"},
		"logs --help":       {"Usage: nsrun logs", "--run ID", "-f, --follow", "--since", "--timestamps"},
		"logs web -h":       {"Usage: nsrun logs"},
		"exec --help":       {"Usage: nsrun exec", "--run ID", "--root"},
		"help exec":         {"Usage: nsrun exec"},
		"completion --help": {"Usage: nsrun completion", "source <(nsrun completion bash)"},
		"help completion":   {"Usage: nsrun completion"},
		"gc --help":         {"Usage: nsrun gc"},
		"gc -h":             {"Usage: nsrun gc"},
		"help gc":           {"Usage: nsrun gc"},
		"version --help":    {"Usage: nsrun version"},
		"help help":         {"Usage: nsrun help"},
		"help net isolate":  {"Usage: nsrun net isolate NODE...", "--uplink", "--run ID"},
	}
	for _, v := range verbs.Verbs {
		want := []string{"Usage: nsrun " + v.Cmd + " " + v.Name, "--run ID"}
		for _, f := range v.Flags {
			want = append(want, "  "+f)
		}
		cases[v.Cmd+" "+v.Name+" --help"] = want
		if v.Cmd == "net" && v.Help != "" {
			cases["net --help"] = append(cases["net --help"], "net "+v.Name)
		}
		for _, f := range v.Flags {
			if verbFlagHelp[f] == "" {
				t.Errorf("%s %s: flag %s has no help", v.Cmd, v.Name, f)
			}
		}
	}
	for line, want := range cases {
		code, stdout, stderr := mainOut(strings.Fields(line)...)
		if code != 0 || stderr != "" {
			t.Errorf("nsrun %s: exit %d, stderr %q; want 0 and help", line, code, stderr)
			continue
		}
		for _, w := range want {
			if !strings.Contains(stdout, w) {
				t.Errorf("nsrun %s: help lacks %q:\n%s", line, w, stdout)
			}
		}
	}
}

// TestFlagErrorsNameTheHelp: an unknown flag or argument of a command is
// refused with 125 (gc does not run), naming the command's help.
func TestFlagErrorsNameTheHelp(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	for line, want := range map[string]string{
		"gc --bogus":             "nsrun: gc: flag provided but not defined: -bogus; see nsrun gc --help",
		"gc now":                 `nsrun: gc: unexpected argument "now": it takes none; see nsrun gc --help`,
		"ls --bogus":             "nsrun: ls: flag provided but not defined: -bogus; see nsrun ls --help",
		"ls x":                   `nsrun: ls: unexpected argument "x"`,
		"up --bogus":             "nsrun: up: flag provided but not defined: -bogus; see nsrun up --help",
		"up web --bogus":         "nsrun: up: flag provided but not defined: -bogus; see nsrun up --help",
		"attach --bogus":         "see nsrun attach --help",
		"version x":              `version: unexpected argument "x"`,
		"help upp":               `help: unknown command "upp"; known: up, down, ps`,
		"down --bogus":           "nsrun: down: flag provided but not defined: -bogus; see nsrun down --help",
		"down x":                 `nsrun: down: unexpected argument "x"`,
		"ps x":                   `nsrun: ps: unexpected argument "x"`,
		"logs --bogus":           "see nsrun logs --help",
		"logs --since yesterday": `logs: --since "yesterday": write a duration before now`,
		"ps --run zz":            "ps: --run zz: no live run with that id; see nsrun ls",
		"down":                   "down: no live run (start one with nsrun up",
		"help net bogus":         `help: net has no verb "bogus"; see nsrun net --help`,
		"net":                    "net: which verb? see nsrun net --help",
		"net bogus":              `net: unknown verb "bogus"; see nsrun net --help`,
		"net isolate a --seed":   "--seed needs a value",
		"net isolate a --jump":   "net isolate: unknown flag --jump; see nsrun net isolate --help",
		"--bogus -- true":        "flag provided but not defined: -bogus; see nsrun --help",
	} {
		code, stdout, stderr := mainOut(strings.Fields(line)...)
		if code != 125 || stdout != "" || !strings.Contains(stderr, want) {
			t.Errorf("nsrun %s: exit %d, stdout %q, stderr %q; want 125 and %q", line, code, stdout, stderr, want)
		}
	}
}

// TestVersion: nsrun version and nsrun --version print the version.
func TestVersion(t *testing.T) {
	for _, line := range []string{"version", "--version"} {
		if code, stdout, _ := mainOut(strings.Fields(line)...); code != 0 || stdout != "nsrun "+version.String()+"\n" {
			t.Errorf("nsrun %s: exit %d, %q", line, code, stdout)
		}
	}
}

// TestUpFlagsAnywhere: nsrun up reads its flags before and after node
// names; after -- every word is a node name.
func TestUpFlagsAnywhere(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	dir := t.TempDir()
	file := filepath.Join(dir, "x.yaml")
	if err := os.WriteFile(file, []byte("nodes:\n  web: {ip: 172.18.0.2, command: 'true'}\n  db: {ip: 172.18.0.3, command: 'true'}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"up web -f FILE --dry-run", "up --dry-run web -f FILE", "up -f FILE web --dry-run --json", "up web --dry-run=true -f=FILE"} {
		args := strings.Fields(strings.ReplaceAll(line, "FILE", file))
		code, stdout, stderr := mainOut(args...)
		if code != 0 || !strings.Contains(stdout, "172.18.0.2") || strings.Contains(stdout, "172.18.0.3") {
			t.Errorf("nsrun %s: exit %d, stderr %q; want the plan of web alone:\n%s", line, code, stderr, stdout)
		}
	}
	code, _, stderr := mainOut("up", "--dry-run", "-f", file, "--", "-f")
	if code != 125 || !strings.Contains(stderr, `"-f"`) {
		t.Errorf("up --dry-run -f FILE -- -f: exit %d, %q; want node -f refused", code, stderr)
	}
	code, _, stderr = mainOut("up", "web", "-f", filepath.Join(dir, "none.yaml"))
	if code != 125 || !strings.Contains(stderr, "none.yaml not found") {
		t.Errorf("up web -f none.yaml: exit %d, %q; want none.yaml not found", code, stderr)
	}
}
