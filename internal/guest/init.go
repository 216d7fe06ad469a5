package guest

import (
	"github.com/nsrun/nsrun/userns/launch"
)

// InitMarker is argv[1] of a node's init: nsrun run again (/proc/self/exe)
// as PID 1 of the node's own pid namespace (Spec.PIDNS), or as the
// starter of a command run in a node's namespaces (Spec.Join). No command
// line of nsrun's starts with it. The init is C (package launch's
// nodeinit.c), run before the Go runtime would start; it never returns.
var InitMarker = launch.NodeInitMarker

// initStatus is the init's report once the command started, or why it
// did not.
type initStatus struct {
	Pid   int    `json:"pid,omitempty"` // in the node's pid namespace
	Error string `json:"error,omitempty"`
}

// initFlags are the flags of the init that starts s's command.
func initFlags(s Spec) launch.InitFlags {
	var f launch.InitFlags
	for _, o := range []struct {
		set  bool
		flag launch.InitFlags
	}{
		{s.MapUser, launch.InitMapUser}, {s.AllCaps, launch.InitAllCaps}, {s.Setpgid, launch.InitSetpgid},
		{s.Terminal, launch.InitTerminal}, {s.Join != nil, launch.InitExec}, {s.SharedProc, launch.InitSharedProc},
	} {
		if o.set {
			f |= o.flag
		}
	}
	return f
}
