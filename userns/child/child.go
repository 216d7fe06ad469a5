// Package child is the supervisor's side of the re-exec protocol: it reads
// the run's configuration from the parent and reports status back.
// See package userns for the whole protocol.
package child

import (
	"encoding/json"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/userns"
	"github.com/nsrun/nsrun/userns/messages"
)

// IsSupervisor reports whether this process was started as a run supervisor.
func IsSupervisor() bool {
	return len(os.Args) > 0 && os.Args[0] == userns.SupervisorArg0
}

// Conn is the supervisor's end of the two protocol pipes.
type Conn struct {
	status *os.File
	enc    *json.Encoder
}

// Open reads the configuration (fd 3) and opens the status pipe (fd 4).
func Open() (messages.Config, *Conn, error) {
	var cfg messages.Config
	cfgPipe := os.NewFile(3, "config")
	statPipe := os.NewFile(4, "status")
	if cfgPipe == nil || statPipe == nil {
		return cfg, nil, fmt.Errorf("protocol pipes missing: %s is started by nsrun only", userns.SupervisorArg0)
	}
	defer cfgPipe.Close()
	// Inherited without close-on-exec; node commands must not inherit them.
	unix.CloseOnExec(3)
	unix.CloseOnExec(4)
	if err := json.NewDecoder(cfgPipe).Decode(&cfg); err != nil {
		return cfg, nil, fmt.Errorf("read run configuration: %w", err)
	}
	return cfg, &Conn{status: statPipe, enc: json.NewEncoder(statPipe)}, nil
}

// Ready tells the parent that every node has started.
func (c *Conn) Ready() { _ = c.enc.Encode(messages.Status{Ready: true}) }

// Fail reports a setup failure; the supervisor then exits with code.
func (c *Conn) Fail(err error, code int) {
	_ = c.enc.Encode(messages.Status{Error: err.Error(), ExitCode: code})
}

// Close closes the status pipe.
func (c *Conn) Close() { c.status.Close() }
