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
// user's home (fish makes its folders there when it starts).
const fishWrapper = `d=$(mktemp -d) || exit 2
trap 'rm -rf -- "$d"' EXIT
XDG_CONFIG_HOME=$d/config XDG_DATA_HOME=$d/data XDG_CACHE_HOME=$d/cache fish -N -c "$0" -- "$@"`

// Program is the shell program that shell (one of Shells) runs.
func Program(shell string) string {
	prog, _, _ := strings.Cut(shell, "-")
	return prog
}

// Command is the command line (program first) that prints, one a line,
// what shell (one of Shells) completes for `nsrun WORDS...`, the last word
// being the one under the cursor (maybe ""). It loads nothing of the
// user's shell configuration and leaves no file behind; it exits non-zero
// when the shell could not load the script or did not complete.
func Command(shell string, words []string) ([]string, error) {
	if len(words) == 0 {
		return nil, fmt.Errorf("complete in %s: no words; the last one is the word being completed", shell)
	}
	for _, w := range words {
		if strings.ContainsAny(w, " \t\n'\"\\$`") {
			return nil, fmt.Errorf("complete in %s: word %q needs quoting, which the drivers do not do", shell, w)
		}
	}
	switch shell {
	case "bash":
		return append([]string{"bash", "--norc", "--noprofile", "-c", bashDriver, "bash"}, words...), nil
	case "zsh", "zsh-fpath":
		mode := "source"
		if shell == "zsh-fpath" {
			mode = "fpath"
		}
		return append([]string{"zsh", "-f", "-c", zshDriver, "zsh", mode}, words...), nil
	case "fish":
		return append([]string{"sh", "-c", fishWrapper, fishDriver}, words...), nil
	}
	return nil, fmt.Errorf("complete in %q: no such shell; known: %s", shell, strings.Join(Shells, ", "))
}

// Candidates are the candidates in the output of a Command: sorted,
// without duplicates, without fish's descriptions (after a tab) or the /
// after a folder's name that fish and zsh show.
func Candidates(out string) []string {
	var cands []string
	for _, line := range strings.Split(out, "\n") {
		line, _, _ = strings.Cut(line, "\t")
		if line = strings.TrimSuffix(line, "/"); line != "" {
			cands = append(cands, line)
		}
	}
	slices.Sort(cands)
	return slices.Compact(cands)
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
