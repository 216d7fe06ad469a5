// Package completiontest runs the scripts of `nsrun completion SHELL` in
// the real shells, as each shell runs its completion on a TAB, and gives
// the candidates the shell ends up with: for the tests of the scripts
// (internal/cli, against a file in the working folder) and of the
// completion of a live run (test/, as the unprivileged user).
//
// The nsrun on the command's PATH answers the scripts. Words must need
// no quoting in the shells (no blanks, quotes or backslashes).
package completiontest

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// Shells are the ways a shell can load nsrun's completion that Command
// drives: bash, zsh with the script sourced after compinit, zsh with the
// script saved as _nsrun in a folder of $fpath, and fish.
var Shells = []string{"bash", "zsh", "zsh-fpath", "fish"}

var (
	//go:embed bash.bash
	bashDriver string
	//go:embed zsh.zsh
	zshDriver string
	//go:embed fish.fish
	fishDriver string
)

// fishWrapper runs the fish driver with fish's configuration and data
// folders in a temporary folder, so that the test leaves nothing in the
// user's home (fish makes its folders there when it starts). fish takes
// the arguments after -- as $argv (before it, - starts its options).
const fishWrapper = `d=$(mktemp -d) || exit 2
trap 'rm -rf -- "$d"' EXIT
XDG_CONFIG_HOME=$d/config XDG_DATA_HOME=$d/data XDG_CACHE_HOME=$d/cache fish -N -c "$0" -- "$@"`

// end is the line the drivers print after each command line's
// candidates.
const end = "<end of candidates>"

// Program is the shell program that shell (one of Shells) runs.
func Program(shell string) string {
	prog, _, _ := strings.Cut(shell, "-")
	return prog
}

// Command is the command line (program first) that prints what shell
// (one of Shells) completes for each of lines, a line being what follows
// "nsrun " with the cursor at its end: words separated by single spaces,
// the last one the word being completed (after a trailing space, an
// empty one). Words must need no quoting (no blanks, quotes, backslashes
// or dollars). The shell loads the script of the nsrun on its PATH, and
// nothing of the user's shell configuration; the command leaves no file
// behind and exits non-zero when the shell could not load the script or
// did not complete. Results reads its output.
func Command(shell string, lines []string) ([]string, error) {
	if len(lines) == 0 {
		return nil, fmt.Errorf("complete in %s: no command lines", shell)
	}
	for _, line := range lines {
		if strings.ContainsAny(line, "\t\n'\"\\$`") || strings.Contains(line, "  ") || strings.HasPrefix(line, " ") {
			return nil, fmt.Errorf("complete in %s: line %q needs quoting or has empty words, which the drivers do not do", shell, line)
		}
	}
	switch shell {
	case "bash":
		return slices.Concat([]string{"bash", "--norc", "--noprofile", "-c", bashDriver, "bash", end}, lines), nil
	case "zsh", "zsh-fpath":
		mode := "source"
		if shell == "zsh-fpath" {
			mode = "fpath"
		}
		return slices.Concat([]string{"zsh", "-f", "-c", zshDriver, "zsh", mode, end}, lines), nil
	case "fish":
		return slices.Concat([]string{"sh", "-c", fishWrapper, fishDriver, end}, lines), nil
	}
	return nil, fmt.Errorf("complete in %q: no such shell; known: %s", shell, strings.Join(Shells, ", "))
}

// Results are the candidates of each of n command lines in the output
// of a Command: each sorted, without duplicates, without fish's
// descriptions (after a tab) or the / after a folder's name that fish and
// zsh show.
func Results(out string, n int) ([][]string, error) {
	var results [][]string
	var cands []string
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == end {
			slices.Sort(cands)
			results = append(results, slices.Compact(cands))
			cands = nil
			continue
		}
		line, _, _ = strings.Cut(line, "\t")
		if line = strings.TrimSuffix(line, "/"); line != "" {
			cands = append(cands, line)
		}
	}
	if len(results) != n || len(cands) > 0 {
		return nil, fmt.Errorf("completion output has the candidates of %d lines (and %d after the last), not %d:\n%s", len(results), len(cands), n, out)
	}
	return results, nil
}

// Need fails t when CI=true and shell's program is missing, and skips it
// with the reason otherwise.
func Need(t testing.TB, shell string) {
	t.Helper()
	prog := Program(shell)
	if _, err := exec.LookPath(prog); err == nil {
		return
	}
	why := fmt.Sprintf("%s is not installed (apt-get install %s), so its completion of nsrun is not tested", prog, prog)
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run in CI: %s", why)
	}
	t.Skip("skipped: " + why)
}
