package cli

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/nsrun/nsrun/userns/launch"
)

// goDecision is what the Go side does with a command line: which run it
// starts, with which --root and --isolated (launch.None when it starts
// none: another command, help, the version or a flag error).
func goDecision(args []string) (kind launch.Kind, root, isolated bool) {
	if len(args) > 0 {
		if _, ok := command(args[0]); ok && args[0] != "up" {
			return launch.None, false, false
		}
		switch args[0] {
		case "up":
			var f upFlags
			if _, err := parseInterspersed(f.flagSet(), args[1:]); err != nil || f.dryRun || f.json || f.detach {
				return launch.None, false, false
			}
			return launch.Up, f.root, f.isolated
		}
	}
	var f runFlags
	fs := f.flagSet()
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil || f.version || f.dryRun || f.json {
		return launch.None, false, false
	}
	if argv, err := runArgs(fs, args); err != nil || len(argv) == 0 {
		return launch.None, false, false
	}
	return launch.Run, f.root, f.isolated
}

// TestLaunchReadsFlagsLikeGo holds the C launcher's reading of a command
// line to package flag's: a run the launcher does not start is an internal
// error, and a --root it misreads maps the wrong uid.
func TestLaunchReadsFlagsLikeGo(t *testing.T) {
	for _, line := range launchLines {
		args := strings.Fields(line)
		if strings.HasSuffix(line, " ") {
			args = append(args, "")
		}
		checkLaunchDecision(t, line, args)
	}
}

// FuzzLaunchDecision: on every command line, the C launcher and Go decide
// the same (run or not, --root, --isolated). An input is a command line
// with its arguments separated by spaces (so arguments may be empty).
func FuzzLaunchDecision(f *testing.F) {
	for _, line := range launchLines {
		f.Add(line)
	}
	for _, name := range commandNames {
		f.Add(name + " --root -- true")
		f.Add("--root " + name)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if strings.ContainsRune(line, 0) {
			return // an argument cannot hold a NUL byte
		}
		checkLaunchDecision(t, line, strings.Split(line, " "))
	})
}

func checkLaunchDecision(t *testing.T, line string, args []string) {
	t.Helper()
	gk, groot, giso := goDecision(args)
	ck, croot, ciso := launch.Decide(args)
	if ck != gk || (gk != launch.None && (croot != groot || ciso != giso)) {
		t.Errorf("%q: launcher says kind %d root %v isolated %v; Go says kind %d root %v isolated %v",
			line, ck, croot, ciso, gk, groot, giso)
	}
}

// launchLines are command lines the launcher must read as Go does.
var launchLines = []string{
	"up -d", "up --detach=false db", "up db -d=0 --keep-logs", "up -f x -d -- a", "up --keep-logs=false", "-- true", "true", "", "--", "-- ", "--root -- id", "-root id", "--root=true -- id",
	"--root=false -- id", "--root=0 -- id", "--root=T -- x", "--root=yes -- x", "--root false -- x",
	"--isolated -- true", "--isolated=1 --root -- true", "--ip 172.18.0.7 -- true",
	"--ip=172.18.0.7 --hostname db -- true", "--ip", "--ip --root -- true", "--hostname -- true",
	"--ip6 fd00:ac12::7 -- true", "--ip6=fd00:ac12::7 --root -- id", "--ip6", "--ipv6=false -- true", "--ipv6 -- true",
	"--ipv6=maybe -- true", "--ipv6 false -- true",
	"--log-level debug -- true", "--version", "--version -- true", "--version=false -- true",
	"-h", "--help -- true", "-help", "--bogus -- true", "---root -- true", "-=x -- true",
	"- true", "-- --root", "true --root", "--root", "--isolated",
	"up", "up -f x.yaml", "up --root", "up --root=false --isolated", "up -f", "up --help",
	"up --timeout 3 --abort-on-exit web", "up --exit-code-from web -f a.yaml", "up --bogus",
	"up --capture dir --log-level info db", "up -- --root", "up web --root", "up --abort-on-exit=false",
	"--dry-run -- true", "--dry-run=false -- true", "--json --dry-run -- true", "--json -- true",
	"--dry-run=0 --root -- id", "up --dry-run", "up --dry-run=false --root", "up --json --dry-run -f x.yaml",
	"up --json", "up --dry-run=f", "up --dry-run=maybe",
	"ls", "gc", "net exec a -- true", "node stop a", "attach --run x", "ls --root",
	// A program runs after -- or as a path; any other word runs nothing.
	"upp", "ps", "help", "version", "down", "logs web", "./prog", "/bin/true", "bin/x --root",
	"--root ./x", "--root x/", "--isolated up", "--ip -- true", "--ip -- -- true", "--ip -- ./x",
	"--hostname -- --", "--root=false -- up", "-- up", "--root ps", "--ipv6 false ./x",
	// up takes flags anywhere; after -- every word is a node.
	"up web -f x.yaml", "up web --isolated db --root", "up web --bogus", "up web --help",
	"up web -- --root", "up -f -- web --root", "up web --dry-run", "up a b c --timeout 2",
	"up web -f", "up - --root", "up web --root=maybe",
}

// TestLaunchNotInTests checks that the test binary itself was not launched
// into a run (its flags are not nsrun's).
func TestLaunchNotInTests(t *testing.T) {
	if st := launch.Get(); st.Launched || st.Kind != launch.None {
		t.Fatalf("the test binary was launched: %+v", st)
	}
	var f runFlags
	fs := f.flagSet()
	fs.SetOutput(io.Discard)
	if err := fs.Parse([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
}
