// Package nsenter joins nsrun's persisted user and gateway network
// namespaces before the Go runtime starts.
//
// A multithreaded process cannot setns(2) into a user namespace, and a Go
// program has several threads before main runs. So, as runc's
// libcontainer/nsenter does, a C constructor runs first, while the process
// is still single-threaded: when the environment variables named by
// EnvUserNS and EnvNetNS are set, it joins those namespaces (user first,
// then network), or prints why it could not and exits with 125. Import the
// package for its side effect in every binary that re-executes itself.
package nsenter

/*
#cgo CFLAGS: -Wall -Wextra -O2
extern void nsrun_nsenter(void);
void __attribute__((constructor)) nsrun_nsenter_init(void) { nsrun_nsenter(); }
*/
import "C"

// EnvUserNS and EnvNetNS name the namespace files to join at start-up.
const (
	EnvUserNS = "_NSRUN_JOIN_USERNS"
	EnvNetNS  = "_NSRUN_JOIN_NETNS"
)
