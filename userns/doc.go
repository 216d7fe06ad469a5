// Package userns holds what nsrun knows about the user namespaces of a run:
// the launch protocol (this comment), the signals passed on, and advice
// when the kernel refuses a user namespace.
//
// # Processes
//
// A run is three kinds of process:
//
//	nsrun (launcher)    the process the caller started, in the caller's
//	  │                 namespaces (or the gateway's user namespace, when
//	  │                 joined); plain C, it never starts the Go runtime
//	  └─ supervisor     PID 1 of the run's own pid namespace, with every
//	       │            capability in the run's user namespace; the Go
//	       │            program (package supervise)
//	       └─ CMD ...   one per node, each in its node's network, UTS and
//	                    mount namespaces
//
// # Why a C launcher
//
// Go cannot setns(2) into a user namespace (EINVAL: the process already has
// threads before main), nor unshare(CLONE_NEWUSER); and every start of a Go
// binary costs milliseconds of page faults. So package launch's C
// constructor does the namespace entry before the Go runtime starts, and the
// Go runtime starts once per run, in the supervisor:
//
//   - Isolated (no helper, or --isolated): the launcher clones the
//     supervisor with CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNS and writes its
//     uid and gid maps: "UID UID 1" (the caller's ids as themselves, so CMD
//     runs as the caller with no user namespace of its own), or "0 UID 1"
//     with --root.
//   - Joined (nsrun-helper installed): the launcher first joins the
//     persisted user namespace of the gateway (uid 0 there), then clones the
//     supervisor with CLONE_NEWPID|CLONE_NEWNS. Node commands that are not
//     --root start in a nested user namespace mapping the caller's uid and
//     gid back (plan.UserMapped).
//
// The launcher stays in the caller's network namespace, where it binds
// published ports on 127.0.0.1 when the supervisor asks (over the port
// socket, SCM_RIGHTS); the supervisor gets a network namespace of its own
// right after the clone, which is the run's bridge namespace. It reaches
// the node and gateway namespaces through fds, on threads that die if they
// cannot return (package nsfd).
//
// # Synchronisation and lifetime
//
// One pipe: the supervisor sets PR_SET_PDEATHSIG (NSRUN_LAUNCHER_GONE, a
// real-time signal whose default action terminates), maps nsrun's code and
// data into its page tables in one call per segment (cheaper than page
// faults; the launcher writes the id maps meanwhile), then waits for the
// launcher to write the supervisor's pid (after the id maps); the launcher
// keeps its end open for its whole life, so a supervisor that sees the pipe
// hang up after the go-ahead knows the launcher is already gone and exits.
// When the launcher dies, even by SIGKILL, the supervisor ends: before the
// Go runtime starts, by that signal's default action; once nsrun calls
// launch.LauncherGone, which listens for the signal and sees a launcher
// that died in between by its end of the port socket having hung up, the
// supervisor kills every node, lets the capture write out its last whole
// records, and exits. As PID 1 of the run's pid namespace its exit kills
// every process of the run, daemons included. Namespaces are held only by
// those processes and by fds, never by bind mounts, so the kernel frees
// them (and with them every veth of the run) as the processes go. What is
// left on disk (the run's state folder) is removed by the supervisor on
// exit, and after a SIGKILL by the next run or by `nsrun gc`, which find it
// unlocked.
//
// Failures before the Go runtime starts (no user namespace allowed, the
// gateway gone) leave the process as it was; Go reads them from package
// launch and explains them. Failures of the supervisor are printed by it,
// with exit code 125 (126/127 for a command that cannot run); the launcher
// exits with the supervisor's exit code (128+N when killed by signal N).
//
// # Signals and the terminal
//
// The launcher forwards SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 to the
// supervisor, which forwards them to the nodes' process groups. SIGINT and
// SIGQUIT are forwarded too, except when stdin is the caller's foreground
// terminal: then the terminal has already delivered them to every process
// of the foreground group, the command included, and forwarding would
// deliver them twice. SIGTSTP, SIGTTIN and SIGTTOU are not caught, so job
// control stops and continues the launcher, the supervisor and the command
// together. `nsrun up` reads no terminal (its nodes' stdin is /dev/null):
// there the supervisor has a process group of its own and the launcher
// forwards every signal exactly once; the first SIGINT/SIGTERM stops every
// node gracefully, a second one kills them. (rootlesskit's pkg/sigproxy
// catches every signal, the job control ones included, and forwards
// terminal signals twice; hence this small forwarder of our own.)
//
// It is not a stable API: it is importable only because the project keeps
// it at the top of the module, and it may change in any release. Go users
// import nstest (see docs/nstest.md).
package userns
