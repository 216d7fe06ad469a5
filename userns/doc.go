// Package userns creates and joins the user and network namespaces of a run,
// and defines the re-exec protocol between nsrun and its run supervisor.
//
// # Processes
//
// A run is three kinds of process:
//
//	nsrun (parent)      in the caller's namespaces, or in the helper's
//	  │                 persisted user + gateway namespaces (joined mode)
//	  └─ supervisor     "nsrun:supervisor", PID 1 of the run's own pid
//	       │            namespace, uid 0 of the run's user namespace
//	       └─ CMD ...   one per node, each in its node's network, UTS and
//	                    mount namespaces (+ a nested user namespace that
//	                    maps the caller's uid back, unless --root)
//
// # Why re-exec, and why two ways in
//
// Go cannot setns(2) into a user namespace (EINVAL: the process already has
// threads before main), nor unshare(CLONE_NEWUSER). Two ways remain, and
// nsrun uses each where it fits:
//
//   - Isolated mode (no helper): the parent creates a fresh user namespace at
//     fork, through SysProcAttr.Cloneflags CLONE_NEWUSER|CLONE_NEWPID|
//     CLONE_NEWNS with the mapping "0 UID 1", and the supervisor starts in it.
//   - Joined mode (helper installed): the user namespace already exists and
//     must be joined. The parent re-executes itself (execve, same pid) with
//     the environment variables of package nsenter set; nsenter's C
//     constructor joins the persisted user namespace and then the gateway
//     network namespace before the Go runtime starts — the pattern of runc's
//     libcontainer/nsenter. The parent then forks the supervisor with
//     CLONE_NEWPID|CLONE_NEWNS, which no longer needs a new user namespace.
//
// A cgo constructor for both modes would save one fork in isolated mode but
// put more of the logic in C; the clone flags of Go's own fork are the
// smaller, safer tool where they suffice.
//
// # Messages
//
// The supervisor is /proc/self/exe started with argv[0] == SupervisorArg0
// and an empty environment. Two pipes carry the typed messages of package
// messages:
//
//	fd 3 (parent → supervisor): one messages.Config, then EOF
//	fd 4 (supervisor → parent): messages.Status objects; either Ready, or
//	                            an Error with its exit code, then EOF
//
// Setup failures travel as a Status so that the parent reports them in its
// own words and exits with 125 (126/127 for a command that cannot run),
// never confusable with the command's own exit code. Otherwise the
// supervisor exits with the command's code (128+N for signal N) and the
// parent exits with the same.
//
// # Lifetime
//
// The parent forks and waits the supervisor from one locked OS thread, and
// the supervisor is started with PR_SET_PDEATHSIG=SIGKILL; every node process
// likewise. When the parent dies, even by SIGKILL, the supervisor is killed;
// as PID 1 of the run's pid namespace its death kills every process of the
// run, daemons included. Namespaces are held only by those processes and by
// fds, never by bind mounts, so the kernel frees them (and with them every
// veth of the run) as the processes go. What is left on disk (the run's
// state folder) is removed by the supervisor on exit, and after a SIGKILL by
// the next run or by `nsrun gc`, which find it unlocked.
//
// # Signals and the terminal
//
// The parent forwards SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 to the
// supervisor, which forwards them to the nodes' process groups. SIGINT and
// SIGQUIT are forwarded too, except when stdin is the caller's foreground
// terminal: then the terminal has already delivered them to every process
// of the foreground group, the command included, and forwarding would
// deliver them twice. SIGTSTP, SIGTTIN and SIGTTOU are not caught, so job
// control stops and continues nsrun, the supervisor and the command
// together. `nsrun up` reads no terminal (its nodes' stdin is /dev/null):
// there the supervisor has a process group of its own and nsrun forwards
// every signal exactly once; the first SIGINT/SIGTERM stops every node
// gracefully, a second one kills them. (rootlesskit's pkg/sigproxy catches every signal, the job
// control ones included, and forwards terminal signals twice; hence this
// small forwarder of our own.)
package userns

// SupervisorArg0 is argv[0] of a re-executed run supervisor.
const SupervisorArg0 = "nsrun:supervisor"
