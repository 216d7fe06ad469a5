// Package messages defines what the nsrun process (the parent, in the
// caller's namespaces) and the run supervisor (the child, inside the run's
// user namespace) tell each other over the two pipes of the re-exec
// protocol. Each message is one JSON object.
package messages

// Node is one node of a run as the supervisor starts it.
type Node struct {
	Name     string   `json:"name"`
	Hostname string   `json:"hostname"`
	Addr     string   `json:"addr"`          // guest IPv4 address
	Argv     []string `json:"argv"`          // command and arguments
	Env      []string `json:"env"`           // complete environment
	Dir      string   `json:"dir,omitempty"` // working directory
}

// Config is the parent's first and only message: the whole run.
type Config struct {
	RunID      string `json:"run_id"`
	RunDir     string `json:"run_dir"`     // state folder of this run
	RuntimeDir string `json:"runtime_dir"` // the user's nsrun folder (runs, leases)
	Subnet     string `json:"subnet"`      // guest subnet, e.g. 172.18.0.0/24
	Nodes      []Node `json:"nodes"`
	Root       bool   `json:"root"` // commands run as uid 0 of the user namespace
	UID        int    `json:"uid"`  // the caller's uid and gid, seen inside unless Root
	GID        int    `json:"gid"`
	Uplink     bool   `json:"uplink"`    // joined the gateway: lease an uplink and NAT
	RunsCIDR   string `json:"runs_cidr"` // pool of uplink /30s (with Uplink)
	HostDNS    string `json:"host_dns"`  // where bridge DNS goes, e.g. 172.18.255.1:53 ("" for none)
	Terminal   bool   `json:"terminal"`  // stdin is the caller's foreground terminal
}

// Status is what the supervisor reports back.
type Status struct {
	// Ready is set once every node has started.
	Ready bool `json:"ready,omitempty"`
	// Error is a setup failure, in words for the user. The supervisor exits
	// with ExitSetupFailed after sending it.
	Error string `json:"error,omitempty"`
	// ExitCode accompanies Error: 125 for setup failures, 126 for a command
	// that cannot be executed, 127 for one that does not exist.
	ExitCode int `json:"exit_code,omitempty"`
}

// ExitSetupFailed is nsrun's exit code when the run could not be set up
// (as with docker run and podman run).
const ExitSetupFailed = 125
