package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/nsrun/nsrun/internal/verbs"
)

// usage is nsrun --help (and nsrun help): every command and every flag;
// the net and node verbs come from their table (Verbs), which the
// supervisor shares.
var usage = `nsrun runs commands as hosts on networks of their own, without root.

Usage:
  nsrun [flags] -- CMD [ARGS...]     run CMD as one host (172.18.0.1) in a fresh network
  nsrun [flags] ./PROG [ARGS...]     the same, for a program named by a path (with a /)
  nsrun up [flags] [NODE...]         start the nodes of nsrun.yaml, supervised
                                     (-d: in the background; prints the run id)
  nsrun down [--run ID]              stop a run (started with up -d, or any)
  nsrun ps [--run ID] [--json]       a run's nodes: state, restarts, addresses
  nsrun logs [--run ID] [-f] [--since WHEN] [NODE...]
                                     a run's output, as up prints it
  nsrun exec [--run ID] [--root] NODE -- CMD [ARGS...]
                                     run CMD in NODE (as nsrun net exec)
` + verbs.Usage() + `  nsrun events --run ID [--json] [--follow]
                                     what happened in a run: nodes started, ready,
                                     exited, stopped; net verbs; the run stopping
  nsrun attach --run ID --pid PID --ip ADDR [--ip6 ADDR6] [--name NAME]
                                     plug a process you started in its own network
                                     namespace into a run (nsrun attach --help)
  nsrun faults --run ID [--seed N] FILE|-
                                     run a fault schedule against a live run;
                                     Ctrl-C stops it and heals (nsrun faults --help)
  nsrun report DIR                   draw DIR/events.jsonl (from up --report DIR or
                                     --capture DIR) as DIR/report.html
  nsrun ls [--json]                  list your live runs
  nsrun gc                           remove what killed runs left behind
  nsrun completion bash|zsh|fish     a script that completes nsrun's command lines
  nsrun help [COMMAND [VERB]]        this text, or a command's (as COMMAND --help)
  nsrun doctor                       check what runs can do here, and what to change
  nsrun version                      print nsrun's version (as --version)

A word before -- that is neither a command nor a path is refused: to run a
program found in PATH, write nsrun -- PROGRAM.

--run ID names a run (see nsrun ls); a unique start of its id will do.
Without it, a command on the host means the run of a file in the current
folder, when there is exactly one, or else your only run.

Flags of nsrun -- CMD (before the --):
` + runFlagsHelp + `
Flags of nsrun up (anywhere after up):
` + upFlagsHelp + `
CMD's exit code is nsrun's (128+N if it was killed by signal N); 125 means
nsrun itself failed, 126 that CMD cannot be executed, 127 that it was not
found. SIGINT, SIGTERM and SIGHUP are forwarded to CMD.
`

// startFlagsHelp describes the flags that nsrun -- CMD and nsrun up share.
const startFlagsHelp = `  --root             run the commands as uid 0 of the run's user namespace
                     (default: your own uid and gid, as outside)
  --isolated         no uplink to the host or beyond, even when nsrun-helper
                     is installed (without the helper every run is isolated)
  --log-level LEVEL  log every setup and tear-down step to stderr: debug,
                     info, warn or error (default: quiet)
  --dry-run [--json] print the run's plan (as JSON) and start nothing
  --help             print this help
`

// runFlagsHelp describes the flags of nsrun -- CMD.
const runFlagsHelp = `  --ip ADDR          the host's address in 172.18.0.0/24 (default 172.18.0.1)
  --ip6 ADDR         its IPv6 address in fd00:ac12::/64 (default: the one --ip
                     maps to, fd00:ac12::1 for 172.18.0.1)
  --ipv6=false       no IPv6 at all (by default every run is dual-stack)
  --hostname NAME    the host's hostname (default "node")
` + startFlagsHelp + `  --version          print nsrun's version
`

// upFlagsHelp describes the flags of nsrun up.
const upFlagsHelp = `  -f FILE            the topology file (default nsrun.yaml)
  --exit-code-from NODE
                     exit with NODE's exit code; implies --abort-on-exit
  --abort-on-exit    stop every node when one exits; exit with its code
  --timeout SECONDS  between SIGTERM and SIGKILL when stopping (default 10)
  --capture DIR      write a pcap file of every node link into DIR
                     (DIR/NODE.pcap) and the step log to DIR/nsrun.log
  -d, --detach       start in the background: return once every node is up,
                     printing the run's id (stop it with nsrun down)
  --keep-logs        keep the run's output after it ends, for nsrun logs
  --faults=false     start the file without its faults: section
  --report DIR       at the end, write the run's events to DIR/events.jsonl
                     and their timeline to DIR/report.html
` + startFlagsHelp

// commandHelp is the --help text of each command but the run itself.
var commandHelp = map[string]string{
	"up": `Usage: nsrun up [flags] [NODE...]

Starts the nodes of the topology file (every node, or the NODEs named and
what they depend on), each a host of the run, in dependency order, and
stays until they end; Ctrl-C stops them. Flags go anywhere after up, before
or after node names; after -- every word is a node name.

Flags:
` + upFlagsHelp + `
See docs/file.md: "A cluster from a file: nsrun up".
`,
	"down": `Usage: nsrun down [--run ID]

Stops a run as Ctrl-C on its nsrun up would: every node gets SIGTERM, and
SIGKILL after up's --timeout. It returns once the run has ended. Without
--run, the run of a file in the current folder, or your only run.

Flags:
  --run ID   the run (see nsrun ls; a unique start of the id will do)

See docs/file.md: "In the background: up -d, ps, logs, exec, down".
`,
	"ps": `Usage: nsrun ps [--run ID] [--json]

Lists the nodes of a run: each node's state (starting, up, ready, paused,
stopped, or exited with its code), how often it was started again, and its
addresses.

Flags:
  --run ID   the run (see nsrun ls; a unique start of the id will do)
  --json     the nodes as a JSON array: name, addr, addr6, state,
             exit_code, restarts

See docs/file.md: "In the background: up -d, ps, logs, exec, down".
`,
	"logs": `Usage: nsrun logs [--run ID] [-f] [--since WHEN] [--timestamps] [NODE...]

Prints the output of a run's nodes as nsrun up prints it, each line after
its node's name: every node's and nsrun's own lines, or the NODEs' alone.
The run keeps its output in its folder, the last 16 MiB of it; with
nsrun up --keep-logs it stays after the run ends (in the runtime folder's
logs/ID), for nsrun logs --run ID.

Flags:
  --run ID         the run (see nsrun ls; a unique start of the id will do)
  -f, --follow     then print new lines as they come, until the run ends
  --since WHEN     only lines since WHEN: a duration before now (10m, 1h)
                   or a time (2026-12-07T13:20:00Z)
  --timestamps     print each line after the time it was written

See docs/file.md: "In the background: up -d, ps, logs, exec, down".
`,
	"exec": `Usage: nsrun exec [--run ID] [--root] NODE -- CMD [ARGS...]

Runs CMD in NODE's namespaces with your terminal, and exits with its exit
code: the same as nsrun net exec.

Flags:
  --run ID   the run (see nsrun ls; a unique start of the id will do)
  --root     as uid 0 of the run's user namespace

See docs/file.md: "In the background: up -d, ps, logs, exec, down".
`,
	"net": `Usage: nsrun net VERB [--run ID] [ARGS...]

Changes or shows the network of a run: who reaches whom, and link faults.
From the host, name the run with --run ID (see nsrun ls); a node of the run
with control: true needs no --run. Verbs:

` + verbs.UsageOf("net") + `
Flags go anywhere after net; nsrun net VERB --help describes one verb.
See docs/verbs.md: "Breaking the network: nsrun net" and "Who controls a run".
`,
	"node": `Usage: nsrun node VERB [--run ID] NODE...

Stops, starts and freezes nodes of a run, one after the other, in the
order named; the run goes on. Verbs:

` + verbs.UsageOf("node") + `
From the host, name the run with --run ID (see nsrun ls); a node of the run
with control: true needs no --run.
See docs/verbs.md: "Breaking the network: nsrun net".
`,
	"events": `Usage: nsrun events [--run ID] [--json] [--follow]

Prints the events of a run, one a line, from its start: nodes started,
ready, exited (with their code), stopped, paused and resumed; every net
verb applied; link faults set; the run stopping. Each has its sequence
number and the time since the run started.

Flags:
  --run ID    the run (see nsrun ls); not needed in a control: true node of it
  --json      one JSON object a line, as the run's events.jsonl
  --follow    then wait for the events to come, until the run ends

See docs/protocol.md: "Events".
`,
	"attach": `Usage: nsrun attach --run ID --pid PID --ip ADDR [--ip6 ADDR6] [--name NAME]

Plugs the process PID, already in a network namespace of its own, into the
run ID as a node: a veth to the bridge of ADDR's subnet, the address and a
default route.

Flags:
  --run ID       the run (see nsrun ls)
  --pid PID      the process whose network namespace is plugged in
  --ip ADDR      its IPv4 address, in one of the run's subnets
  --ip6 ADDR6    its IPv6 address (default: the one ADDR maps to)
  --name NAME    its node name (default pidPID)

See docs/verbs.md: "Plugging in a process: nsrun attach".
`,
	"faults": `Usage: nsrun faults --run ID [--seed N] FILE|-

Runs a fault schedule against the live run ID, from now: the faults:
section of FILE (an nsrun.yaml, or a file with only that section; - reads
stdin). Its steps are nsrun net and nsrun node verbs; the word random
picks a node with the schedule's seeded generator. Each fault and heal is
printed as it is done. Ctrl-C (SIGINT, SIGTERM, SIGHUP) stops the schedule
and heals what is in force: the cut, link faults, paused and stopped
nodes. Exit code 130 after Ctrl-C.

Flags:
  --run ID     the run (see nsrun ls)
  --seed N     the generator's seed, over the file's (default: the file's,
               or drawn and printed)

See docs/verbs.md: "Fault schedules".
`,
	"report": `Usage: nsrun report DIR

Draws the events of a run, DIR/events.jsonl (written by nsrun up --report
DIR, or --capture DIR), as one self-contained page, DIR/report.html: a
lane per node (up, ready, paused, stopped, exit codes, link faults), the
partition in force, the fault steps and the annotations on one time axis,
and a table of every event. The page loads nothing from anywhere.

See docs/verbs.md: "A timeline of the run".
`,
	"ls": `Usage: nsrun ls [--json]

Lists your live runs: id, project (the file's name:, or its folder's), uplink, how
many nodes are in each state, and the file's absolute path.

Flags:
  --json   one JSON object per run, its id under "id", with its nodes
`,
	"gc": `Usage: nsrun gc

Removes what killed runs left behind: their run folders and uplink leases.
It takes no flags or arguments.
`,
	"completion": `Usage: nsrun completion bash|zsh|fish

Prints a script that completes nsrun's command lines in that shell:
commands, flags, net and node verbs, run ids after --run, levels after
--log-level, and node names (of the run a command means, or, for up, of
its file).

  bash:  source <(nsrun completion bash)       (in ~/.bashrc)
  zsh:   source <(nsrun completion zsh)        (in ~/.zshrc, after compinit)
  fish:  nsrun completion fish | source        (in ~/.config/fish/config.fish)

zsh also loads it from $fpath: nsrun completion zsh > DIR/_nsrun, with DIR
in $fpath before compinit runs. Where nsrun has nothing to offer (a flag's
value, the command after exec's --), each shell completes file names.
The script asks nsrun completion words -- WORD... for the candidates.
`,
	"help": `Usage: nsrun help [COMMAND [VERB]]
       nsrun help --man

Prints nsrun's help, or the help of COMMAND (or of its VERB), as
nsrun COMMAND [VERB] --help does; --man prints all of it as the man
page nsrun(1), in roff (make install installs it).
`,
	"doctor": `Usage: nsrun doctor

Checks what nsrun needs here, on a host or in a container: user namespaces
(user.max_user_namespaces, AppArmor's restriction, a container's seccomp
profile, a Kubernetes pod without a user namespace), a fresh /proc,
sethostname, the netem and tbf qdiscs, /dev/net/tun and the helper. Prints
what works, what differs and what to change; exits 1 when runs cannot
start here. See docs/ci.md.
`,
	"version": `Usage: nsrun version

Prints nsrun's version, as nsrun --version does.
`,
}

// verbFlagHelp describes the flags of net and node verbs: the flag (with
// its value), two spaces, what it does.
var verbFlagHelp = map[string]string{
	"--run":       "--run ID     the run (see nsrun ls; a unique start of its id will do); optional in a control: true node, or for the one run of this folder's file or your only run",
	"--root":      "--root       as uid 0 of the run's user namespace",
	"--uplink":    "--uplink     cut the way out to the host and beyond too",
	"--seed":      "--seed N     the random draw (a positive whole number; printed)",
	"--loss":      "--loss P%    drop this share of packets, such as 30% or 0.5%",
	"--rate":      "--rate R     bandwidth, such as 1mbit or 500kbit",
	"--delay":     "--delay D        added latency of what NODE receives, such as 100ms (nsrun's link engine)",
	"--jitter":    "--jitter D       standard deviation of the delay, such as 20ms (at most the delay)",
	"--reorder":   "--reorder P%     send this share of frames at once, ahead of the delayed ones",
	"--duplicate": "--duplicate P%   send this share of frames twice",
	"--corrupt":   "--corrupt P%     flip one bit in this share of frames",
	"--one-way":   "--one-way        only from A to B",
	"--clear":     "--clear          remove every delay of the matrix",
	"--json":      "--json       as JSON",
}

// verbHelp is the --help text of one net or node verb.
func verbHelp(v verbs.Verb) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: nsrun %s %s", v.Cmd, v.Name)
	if v.Args != "" {
		b.WriteString(" " + v.Args)
	}
	b.WriteString(" [--run ID]\n\n")
	help := v.Help
	if help == "" { // a shape of net halves
		help = "a partition shape of Jepsen's over the run's nodes (see nsrun net --help)"
	}
	b.WriteString(strings.ToUpper(help[:1]) + help[1:] + ".\n\nFlags:\n")
	for _, f := range append([]string{"--run"}, v.Flags...) {
		flag, what, _ := strings.Cut(verbFlagHelp[f], "  ") // aligned here
		fmt.Fprintf(&b, "  %-16s %s\n", flag, strings.TrimSpace(what))
	}
	return b.String()
}

// helpText is the help of a command line's command (and verb): "" is
// nsrun's own.
func helpText(cmd string, verb verbs.Verb) string {
	if verb.Name != "" {
		return verbHelp(verb)
	}
	if h, ok := commandHelp[cmd]; ok {
		return h
	}
	return usage
}

// cmdHelp is nsrun help [COMMAND [VERB]].
func cmdHelp(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if len(args) == 1 && args[0] == "--man" {
		fmt.Fprint(stdout, manPage())
		return 0
	}
	if len(args) > 2 {
		return fail(stderr, fmt.Errorf("help: write nsrun help [COMMAND [VERB]]"))
	}
	if _, ok := command(args[0]); !ok {
		return fail(stderr, fmt.Errorf("help: unknown command %q; known: %s", args[0], strings.Join(commandNames, ", ")))
	}
	var verb verbs.Verb
	if len(args) == 2 {
		v, ok := verbs.LookupVerb(args[0], args[1])
		if !ok {
			return fail(stderr, fmt.Errorf("help: %s has no verb %q; see nsrun %s --help", args[0], args[1], args[0]))
		}
		verb = v
	}
	fmt.Fprint(stdout, helpText(args[0], verb))
	return 0
}
