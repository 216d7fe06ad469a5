package nstest

/*
// A test binary that imports nstest serves as nsrun when Start asks it to
// (package launch): this constructor runs before the launcher's (priority
// 101 comes before constructors without one) and tells it to act only when
// NSRUN_AS_NSRUN is set.
extern int nsrun_launch_on_request;
__attribute__((constructor(101))) static void nstest_launch_on_request(void) { nsrun_launch_on_request = 1; }
*/
import "C"

import (
	"os"

	"github.com/nsrun/nsrun/cli"
	"github.com/nsrun/nsrun/userns/launch"
)

// init makes the test binary nsrun when Start runs it as nsrun: before any
// test runs (and before the init functions of the packages that import
// nstest), the process carries out the command line as nsrun does and
// exits. The launcher has by then made this process the run's supervisor.
func init() {
	if os.Getenv(launch.EnvAsNsrun) == "" {
		return
	}
	// Not for the nodes' commands, which inherit the environment.
	_ = os.Unsetenv(launch.EnvAsNsrun)
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
