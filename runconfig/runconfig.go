// Package runconfig describes one run as the supervisor carries it out:
// its subnets, its nodes and how they are started, and how the run ends.
// nsrun's command line builds it; package supervise runs it.
package runconfig

import "os"

// Node is one node of a run as the supervisor starts it.
type Node struct {
	Name      string   `json:"name"`
	Hostname  string   `json:"hostname"`
	Addr      string   `json:"addr"`           // guest IPv4 address
	Subnet    int      `json:"subnet"`         // index into Config.Subnets
	Argv      []string `json:"argv,omitempty"` // command and arguments; none: the node only holds its namespace
	Env       []string `json:"env,omitempty"`  // complete environment
	Dir       string   `json:"dir,omitempty"`  // working directory
	DependsOn []string `json:"depends_on,omitempty"`
	ReadyPort uint16   `json:"ready_port,omitempty"` // up once this TCP port accepts
	Ports     []Port   `json:"ports,omitempty"`
	Capture   bool     `json:"capture,omitempty"` // write CaptureDir/NAME.pcap
	Taps      []Tap    `json:"taps,omitempty"`    // tap links instead of eth0
}

// Tap is a tap link of a node, wired to a subnet's bridge.
type Tap struct {
	Name   string `json:"name"`
	Subnet int    `json:"subnet"`
}

// Port is a published port: the supervisor accepts on Listener (bound on
// the host's 127.0.0.1:Host before the run changed network namespace) and
// connects each client to the node's port Node.
type Port struct {
	Host     uint16   `json:"host"`
	Node     uint16   `json:"node"`
	Listener *os.File `json:"-"`
}

// Subnet is a guest subnet with its own bridge.
type Subnet struct {
	Name string `json:"name"`
	CIDR string `json:"cidr"`
}

// Config is the whole run.
type Config struct {
	RunID      string   `json:"run_id"`
	RunDir     string   `json:"run_dir"`     // state folder of this run
	RuntimeDir string   `json:"runtime_dir"` // the user's nsrun folder (runs, leases)
	File       string   `json:"file,omitempty"`
	Subnets    []Subnet `json:"subnets"`
	Nodes      []Node   `json:"nodes"`
	Root       bool     `json:"root"` // commands run as uid 0 of the user namespace
	UID        int      `json:"uid"`  // the caller's uid and gid, seen inside unless Root
	GID        int      `json:"gid"`
	Uplink     bool     `json:"uplink"`     // joined the gateway: lease an uplink and NAT
	GatewayNS  string   `json:"gateway_ns"` // the gateway's network namespace file (with Uplink)
	RunsCIDR   string   `json:"runs_cidr"`  // pool of uplink /30s (with Uplink)
	HostDNS    string   `json:"host_dns"`   // where bridge DNS goes, e.g. 172.18.255.1:53 ("" for none)
	Terminal   bool     `json:"terminal"`   // stdin is the caller's foreground terminal
	NsrunPid   int      `json:"nsrun_pid"`  // nsrun's pid as the caller sees it, for nsrun ls
	// MapUser: node commands start in a nested user namespace that maps
	// UID and GID to the supervisor's uid 0 (joined, without Root). In
	// the run's own user namespace the caller's ids are mapped directly.
	MapUser bool `json:"map_user"`

	// Up is `nsrun up`: output prefixed by node, every node stopped on a
	// signal. Without it (`nsrun -- CMD`) the single node's stdio is the
	// caller's and its exit ends the run.
	Up           bool    `json:"up,omitempty"`
	Color        bool    `json:"color,omitempty"`
	ExitCodeFrom string  `json:"exit_code_from,omitempty"`
	AbortOnExit  bool    `json:"abort_on_exit,omitempty"`
	StopTimeout  float64 `json:"stop_timeout,omitempty"` // seconds between SIGTERM and SIGKILL
	CaptureDir   string  `json:"capture_dir,omitempty"`  // absolute; pcap files and nsrun.log
	LogLevel     string  `json:"log_level,omitempty"`    // step log to stderr; "" is quiet

	// LauncherGone is closed when the launcher (the nsrun process the
	// caller started) has died, even by SIGKILL: the run must end now.
	LauncherGone <-chan struct{} `json:"-"`
}

// ExitSetupFailed is nsrun's exit code when the run could not be set up
// (as with docker run and podman run).
const ExitSetupFailed = 125
