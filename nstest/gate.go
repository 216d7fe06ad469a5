package nstest

/*
// A test binary that imports nstest serves as nsrun when Start asks it to
// (package launch): this constructor runs before the launcher's (priority
// 101 comes before constructors without one) and tells it to act only when
// NSRUN_AS_NSRUN is set.
extern int nsrun_launch_on_request;
__attribute__((constructor(101))) static void nstest_launch_on_request(void) { nsrun_launch_on_request = 1; }

#include <sys/auxv.h>
static int nstest_secure(void) { return getauxval(AT_SECURE) != 0; }
*/
import "C"

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nsrun/nsrun/internal/exitcode"
	runstart "github.com/nsrun/nsrun/internal/start"
	"github.com/nsrun/nsrun/userns/launch"
)

// init makes the test binary nsrun when Start runs it as nsrun: before any
// test runs (and before the init functions of the packages that import
// nstest), the process carries out the command line as nsrun does and
// exits. The launcher has by then made this process the run's supervisor.
func init() {
	if secure() {
		return
	}
	if os.Getenv(launch.EnvAsNsrun) == "" {
		return
	}
	// Not for the nodes' commands, which inherit the environment.
	_ = os.Unsetenv(launch.EnvAsNsrun)
	os.Exit(up(os.Args[1:]))
}

// up starts the run that launch (in net.go) asked for: its command line
// is `up -f FILE --timeout SECONDS [--capture DIR] [--isolated]`, which
// the launcher has read as nsrun up's.
func up(args []string) int {
	fs := flag.NewFlagSet("nsrun up", flag.ContinueOnError)
	file := fs.String("f", "", "")
	timeout := fs.Float64("timeout", 5, "")
	capture := fs.String("capture", "", "")
	isolated := fs.Bool("isolated", false, "")
	if len(args) == 0 || args[0] != "up" || fs.Parse(args[1:]) != nil || fs.NArg() > 0 || *file == "" {
		fmt.Fprintf(os.Stderr, "nstest: the test binary runs as nsrun only for the run Start asks for, not %q\n", args)
		return exitcode.SetupFailed
	}
	id := os.Getenv(envRunID)
	_ = os.Unsetenv(envRunID) // not for the nodes' commands either
	if !validID(id) {
		fmt.Fprintf(os.Stderr, "nstest: %s=%q is not a run id\n", envRunID, id)
		return exitcode.SetupFailed
	}
	stop := time.Duration(*timeout * float64(time.Second))
	return runstart.Up(id, *file, stop, *capture, runstart.Flags{Isolated: *isolated}, os.Stdout, os.Stderr)
}

// secure reports whether this process must not take orders from its
// environment: the kernel started it setuid, setgid or with file
// capabilities (AT_SECURE), or its real and effective ids differ. The
// environment is then the caller's, and the process runs as someone
// else: a setuid-root tool that imports nstest, run with NSRUN_AS_NSRUN=1,
// would otherwise carry out an nsrun command line as root (issue 20). The
// launcher (launch.c) makes the same check before it acts.
func secure() bool {
	return C.nstest_secure() != 0 || os.Getuid() != os.Geteuid() || os.Getgid() != os.Getegid()
}

// envRunID names the run's id in the environment of the test binary that
// Start runs as nsrun: Start picks the id, so that it can follow the
// run's events from its start.
const envRunID = "NSTEST_RUN_ID"

// validID says whether id is of runstate.NewID's form: 8 hex digits.
func validID(id string) bool {
	if len(id) != 8 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
