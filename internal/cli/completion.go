package cli

import (
	"github.com/nsrun/nsrun/internal/verbs"

	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/nsrun/nsrun/internal/runstate"
	"github.com/nsrun/nsrun/internal/topology"
)

// commandFlags are the flags each command takes, for completion (the
// flag sets and help texts name them too; TestCompletionFlags holds the
// three together).
var commandFlags = map[string][]string{
	"":           {"--ip", "--ip6", "--ipv6", "--hostname", "--root", "--isolated", "--log-level", "--dry-run", "--json", "--version", "--help"},
	"up":         {"-f", "-d", "--detach", "--keep-logs", "--exit-code-from", "--abort-on-exit", "--timeout", "--capture", "--faults", "--report", "--root", "--isolated", "--log-level", "--dry-run", "--json", "--help"},
	"down":       {"--run", "--help"},
	"ps":         {"--run", "--json", "--help"},
	"logs":       {"--run", "-f", "--follow", "--since", "--timestamps", "--help"},
	"exec":       {"--run", "--root", "--help"},
	"events":     {"--run", "--json", "--follow", "--help"},
	"faults":     {"--run", "--seed", "--help"},
	"report":     {"--help"},
	"attach":     {"--run", "--pid", "--ip", "--ip6", "--name", "--help"},
	"ls":         {"--json", "--help"},
	"gc":         {"--help"},
	"doctor":     {"--help"},
	"help":       {"--man"},
	"version":    {"--help"},
	"completion": {"--help"},
}

// completionScripts are the scripts of `nsrun completion SHELL`: each
// asks `nsrun completion words -- WORD...` (the words after nsrun, the
// one being completed last, maybe empty) for the candidates.
var completionScripts = map[string]string{
	"bash": `# nsrun completion for bash: source <(nsrun completion bash)
_nsrun() {
	local IFS=$'\n'
	COMPREPLY=($(command nsrun completion words -- "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _nsrun nsrun
`,
	"zsh": `#compdef nsrun
# nsrun completion for zsh: source <(nsrun completion zsh), after compinit;
# or save it as _nsrun in a folder of $fpath, before compinit.
_nsrun() {
	local -a c
	c=("${(@f)$(command nsrun completion words -- "${(@)words[2,CURRENT]}" 2>/dev/null)}")
	if (( ${#c} )) && [[ -n ${c[1]} ]]; then
		compadd -a c
	else
		_files
	fi
}
# Autoloaded from $fpath, this file is the body of _nsrun: complete now.
if [[ ${funcstack[1]} == _nsrun ]]; then
	_nsrun "$@"
else
	compdef _nsrun nsrun
fi
`,
	"fish": `# nsrun completion for fish: nsrun completion fish | source
function __nsrun_complete
	set -l words (commandline -opc)
	set -l cur (commandline -ct)
	set -l c (command nsrun completion words -- $words[2..-1] "$cur" 2>/dev/null)
	if set -q c[1]
		printf '%s\n' $c
	else
		# Nothing of nsrun's (a flag's value, a command after --): files.
		__fish_complete_path "$cur"
	end
end
complete -c nsrun -f -a '(__nsrun_complete)'
`,
}

// cmdCompletion is `nsrun completion bash|zsh|fish` (the script) and
// `nsrun completion words -- WORD...` (the candidates, one a line, that
// the scripts ask for).
func cmdCompletion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
		fmt.Fprint(stdout, helpText("completion", verbs.Verb{}))
		return 0
	}
	if len(args) >= 2 && args[0] == "words" && args[1] == "--" {
		for _, c := range completeWords(args[2:]) {
			fmt.Fprintln(stdout, c)
		}
		return 0
	}
	if len(args) == 1 {
		if s, ok := completionScripts[args[0]]; ok {
			fmt.Fprint(stdout, s)
			return 0
		}
	}
	return fail(stderr, errors.New("completion: write nsrun completion bash, zsh or fish; see nsrun completion --help"))
}

// completeWords returns the candidates for the last of words, the words
// of a command line after nsrun (the last one being typed, maybe ""):
// commands, their flags (and those of nsrun [flags] -- CMD), net and node
// verbs, run ids after --run, and node names: of the run the line names
// (or would, without --run: the one of this folder's file, or the user's
// only run), or for up of its file.
func completeWords(words []string) []string {
	if len(words) == 0 {
		words = []string{""}
	}
	cur, before := words[len(words)-1], words[:len(words)-1]
	var cands []string
	switch {
	case len(before) == 0 && strings.HasPrefix(cur, "-"):
		cands = commandFlags[""]
	case len(before) == 0:
		cands = slices.Concat(commandNames, []string{"--help", "--version"})
	default:
		// nsrun CMD ARGS..., or nsrun FLAGS... -- CMD (cmd "").
		cmd, args := before[0], before[1:]
		if strings.HasPrefix(cmd, "-") {
			cmd, args = "", before
		}
		switch last := before[len(before)-1]; {
		case last == "--run":
			cands = runIDs()
		case last == "--log-level" && slices.Contains(valueFlagsOf(cmd), last):
			cands = logLevels
		case slices.Contains(valueFlagsOf(cmd), last):
			return nil // a flag's value: the shell's files, or nothing
		default:
			cands = completeArgs(cmd, args, cur)
		}
	}
	var out []string
	for _, c := range cands {
		if strings.HasPrefix(c, cur) && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// logLevels are the values of --log-level (slog's level names).
var logLevels = []string{"debug", "info", "warn", "error"}

// valueFlagsOf are the flags of cmd that take a value.
func valueFlagsOf(cmd string) []string {
	switch cmd {
	case "":
		return []string{"--ip", "--ip6", "--hostname", "--log-level"}
	case "up":
		return []string{"-f", "--exit-code-from", "--timeout", "--capture", "--report", "--log-level"}
	case "faults":
		return []string{"--seed"}
	case "logs":
		return []string{"--since"}
	case "attach":
		return []string{"--pid", "--ip", "--ip6", "--name"}
	case "net":
		return []string{"--seed", "--loss", "--rate", "--delay", "--jitter", "--reorder", "--duplicate", "--corrupt"}
	}
	return nil
}

// completeArgs are the candidates for cur after `nsrun CMD ARGS...`, or
// after `nsrun ARGS...` (flags, --, a command) for cmd "".
func completeArgs(cmd string, args []string, cur string) []string {
	runID := flagValue(args, "--run")
	switch cmd {
	case "net", "node":
		verb := firstWord(args)
		if verb == "" {
			var out []string
			for _, v := range verbs.Verbs {
				if v.Cmd == cmd {
					out = append(out, v.Name)
				}
			}
			return out
		}
		if strings.HasPrefix(cur, "-") {
			v, _ := verbs.LookupVerb(cmd, verb)
			return append([]string{"--run"}, v.Flags...)
		}
		if verb == "exec" && slices.Contains(args, "--") {
			return nil
		}
		return runNodeNames(runID)
	case "up":
		if strings.HasPrefix(cur, "-") {
			return commandFlags["up"]
		}
		file := flagValue(args, "-f")
		if file == "" {
			file = topology.DefaultFile
		}
		top, err := topology.Load(file)
		if err != nil {
			return nil
		}
		var out []string
		for _, n := range top.Nodes {
			out = append(out, n.Name)
		}
		return out
	case "logs", "exec":
		if strings.HasPrefix(cur, "-") {
			return commandFlags[cmd]
		}
		if cmd == "exec" && slices.Contains(args, "--") {
			return nil // the command: the shell's files
		}
		if cmd == "exec" && firstWord(args) != "" {
			return []string{"--"}
		}
		return runNodeNames(runID)
	case "help":
		if len(args) == 0 {
			return append(append([]string(nil), commandNames...), "--man")
		}
		var out []string
		for _, v := range verbs.Verbs {
			if v.Cmd == args[0] {
				out = append(out, v.Name)
			}
		}
		return out
	case "completion":
		return []string{"bash", "zsh", "fish"}
	case "":
		// nsrun FLAGS... -- CMD: more flags, or the command (files).
		if slices.Contains(args, "--") || !strings.HasPrefix(cur, "-") {
			return nil
		}
	}
	return commandFlags[cmd]
}

// flagValue is the value of flag name in args (--name V or --name=V).
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// firstWord is the first of args that is neither a flag nor a value of
// --run.
func firstWord(args []string) string {
	for i, a := range args {
		if strings.HasPrefix(a, "-") || i > 0 && args[i-1] == "--run" {
			continue
		}
		return a
	}
	return ""
}

// runIDs are the ids of the user's live runs.
func runIDs() []string {
	rt, err := runstate.PlannedRuntimeDir(os.Getuid())
	if err != nil {
		return nil
	}
	runs, _ := runstate.List(rt)
	var out []string
	for _, r := range runs {
		out = append(out, r.ID)
	}
	return out
}

// runNodeNames are the node names of the run id names (as --run does).
func runNodeNames(id string) []string {
	info, _, err := liveRun(id)
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range info.Nodes {
		out = append(out, n.Name)
	}
	return out
}
