package supervise

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/eventlog"
	"github.com/nsrun/nsrun/internal/guest"
	"github.com/nsrun/nsrun/internal/plan"
	"github.com/nsrun/nsrun/internal/runstate"
)

// OutputLog is the name of a run's output log in its folder (and in its
// kept logs' folder): what `nsrun up` prints, for `nsrun logs`.
const OutputLog = "output.log"

// setUpFiles makes the run's mounts and state files: a private mount
// namespace with /proc of the run's pid namespace, the run folder, and the
// run's /etc/hosts and resolv.conf.
func (s *supervisor) setUpFiles() error {
	p := s.plan
	var err error
	// Mounts made for guests must never propagate back to the caller.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	// A /proc of the run's own pid namespace, for the supervisor and guests.
	if err := s.mountProc(); err != nil {
		return err
	}
	if s.state, err = runstate.Create(p.Run.Dir, p.Run.ID); err != nil {
		return err
	}
	events, err := eventlog.Open(filepath.Join(p.Run.Dir, EventsFile), s.started)
	if err != nil {
		return err
	}
	s.events.Store(events)
	s.hidden = hiddenDirs(p)
	// Files for every node and for the first subnet's are mounted in the
	// supervisor's mount namespace, which its nodes share; nodes of other
	// subnets get a mount namespace of their own (mounts).
	for _, m := range p.Mounts {
		var content []byte
		switch m.Kind {
		case plan.HostsFile:
			content = hostsFile(p.Hosts)
		case plan.ResolvFile:
			if _, err := os.Stat(m.Target); errors.Is(err, fs.ErrNotExist) {
				// Nothing to mount over (a container without a network
				// has none): the resolver's default, said once.
				s.limits.noResolv = true
				continue
			}
			content = []byte("# written by nsrun for run " + p.Run.ID + "\nnameserver " + m.Nameserver.String() + "\n")
		case plan.GaiFile:
			if _, err := os.Stat(m.Target); err != nil {
				continue // nothing to mount over: glibc's own order
			}
			content = []byte(gaiConf)
		}
		path, err := s.state.WriteFile(m.File, content)
		if err != nil {
			return err
		}
		if m.Kind == plan.HostsFile {
			s.hosts = path
		}
		if m.Subnet == plan.AllSubnets || m.Subnet == 0 {
			if err := guest.BindReadOnly(path, m.Target); err != nil {
				return err
			}
		}
	}
	return nil
}

// mounts are the files node n sees other than the supervisor does:
// target to source.
func (s *supervisor) mounts(n *node) map[string]string {
	m := s.plan.NodeMounts(&n.cfg)
	if s.limits.noResolv {
		for _, pm := range s.plan.Mounts {
			if pm.Kind == plan.ResolvFile {
				delete(m, pm.Target)
			}
		}
	}
	for target, file := range m {
		m[target] = filepath.Join(s.state.Dir, file)
	}
	return m
}

// spec is how node n's command (or an exec into n) is started.
// Every node has the folders of the user's runs covered (hidden): only a
// node with control: true sees its own run's folder, with the control
// socket, and gets NSRUN_CONTROL.
func (s *supervisor) spec(n *node, argv, env []string, dir string) guest.Spec {
	sp := guest.Spec{
		NetNS:    n.ns,
		Hostname: n.cfg.Hostname,
		Mounts:   s.mounts(n),
		// Where the container refuses them (limits.go).
		SharedProc:   s.limits.sharedProc,
		KeepHostname: s.limits.keepHostname,
		Hide:         s.hidden,
		Argv:         argv,
		Env:          append(append([]string{}, env...), "NSRUN_RUN="+s.plan.Run.ID, "NSRUN_NODE="+n.cfg.Name),
		Dir:          dir,
		MapUser:      s.plan.User.Mode == plan.UserMapped,
		UID:          s.plan.User.UID,
		GID:          s.plan.User.GID,
	}
	if a := s.plan.HostAddr(); a.IsValid() {
		sp.Env = append(sp.Env, plan.HostEnv+"="+a.String())
	}
	if n.cfg.Control {
		if sp.Mounts == nil {
			sp.Mounts = map[string]string{}
		}
		sp.Mounts[s.plan.Run.Dir] = s.plan.Run.Dir
		sp.Env = append(sp.Env, "NSRUN_CONTROL="+control.Path(s.plan.Run.Dir))
	}
	return sp
}

// hiddenDirs are the folders of the user's runs that exist: every
// node's mount namespace has them covered.
func hiddenDirs(p *plan.Plan) []string {
	var out []string
	for _, d := range append([]string{p.Run.RuntimeDir}, runstate.Candidates(p.User.UID)...) {
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// EventsFile is the file in the run folder to which the run appends
// every event, one JSON object (control.Event) a line.
const EventsFile = "events.jsonl"

// keepLogs moves the run's output log, with its info.json, to the kept
// logs' folder (runstate.KeptLogsDir) when the run asked for it
// (--keep-logs): `nsrun logs --run ID` reads it after the run.
func (s *supervisor) keepLogs() {
	if s.outLog == nil {
		return
	}
	s.infoMu.Lock()
	defer s.infoMu.Unlock()
	s.outLog.Close()
	if !s.plan.Run.KeepLogs || s.state == nil || s.logsKept {
		return
	}
	s.logsKept = true
	kept := runstate.KeptLogsDir(s.plan.Run.RuntimeDir)
	dst := filepath.Join(kept, s.plan.Run.ID)
	if err := os.MkdirAll(kept, 0o700); err != nil {
		s.log.Error("keep logs", "err", err)
		return
	}
	if err := os.Mkdir(dst, 0o700); err != nil {
		s.log.Error("keep logs", "err", err)
		return
	}
	for _, name := range []string{"info.json", OutputLog + ".1", OutputLog} {
		if err := os.Rename(filepath.Join(s.state.Dir, name), filepath.Join(dst, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Error("keep logs", "file", name, "err", err)
		}
	}
}

// updateInfo writes the run's record again once it has been written:
// a node's state changed.
func (s *supervisor) updateInfo() {
	s.infoMu.Lock()
	listed := s.listed
	s.infoMu.Unlock()
	if listed {
		s.writeInfo()
	}
}

// writeInfo records the run for `nsrun ls` and `nsrun ps`.
func (s *supervisor) writeInfo() {
	s.infoMu.Lock()
	defer s.infoMu.Unlock()
	s.listed = true
	info := runstate.Info{ID: s.plan.Run.ID, File: s.plan.Run.FilePath, Project: s.plan.Run.Project, Pid: s.plan.Run.NsrunPid}
	if block, ok := s.net.UplinkBlock(); ok {
		info.Uplink = block.String()
	}
	for _, n := range s.allNodes() {
		ni := n.info()
		if n.cfg.Addr.IsValid() {
			ni.Addr = n.cfg.Addr.String()
		}
		if n.cfg.Addr6.IsValid() {
			ni.Addr6 = n.cfg.Addr6.String()
		}
		info.Nodes = append(info.Nodes, ni)
	}
	_ = s.state.WriteInfo(info)
}

// gaiConf is the run's /etc/gai.conf (plan.GaiFile): RFC 6724's policy
// table, which orders IPv4 before unique local IPv6 addresses.
const gaiConf = `# written by nsrun: RFC 6724's address order (IPv4 before fd00::/8),
# as Go and the RFC have it; glibc's default (RFC 3484) tries IPv6 first.
label ::1/128 0
label ::/0 1
label ::ffff:0:0/96 4
label 2002::/16 2
label 2001::/32 5
label fc00::/7 13
label ::/96 3
label fec0::/10 11
label 3ffe::/16 12
precedence ::1/128 50
precedence ::/0 40
precedence ::ffff:0:0/96 35
precedence 2002::/16 30
precedence 2001::/32 5
precedence fc00::/7 3
precedence ::/96 1
precedence fec0::/10 1
precedence 3ffe::/16 1
`

// hostsFile is the run's /etc/hosts: localhost, then entries.
func hostsFile(entries []plan.HostEntry) []byte {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, e := range entries {
		fmt.Fprintf(&b, "%s\t%s\n", e.Addr, strings.Join(e.Names, " "))
	}
	return []byte(b.String())
}

// hostEntries are the lines of the run's /etc/hosts: the plan's, then
// attached nodes'.
func (s *supervisor) hostEntries() []plan.HostEntry {
	out := append([]plan.HostEntry(nil), s.plan.Hosts...)
	for _, n := range s.allNodes() {
		if n.attached {
			for _, a := range []netip.Addr{n.cfg.Addr, n.cfg.Addr6} {
				if a.IsValid() {
					out = append(out, plan.HostEntry{Addr: a, Names: []string{n.cfg.Name}})
				}
			}
		}
	}
	return out
}

// nodeEnv is node n's environment: nsrun's, then the node's own.
func (s *supervisor) nodeEnv(n *node) []string {
	env := append(append([]string(nil), s.plan.Env...), envNotes+"="+NotesAddr)
	return append(env, n.cfg.Env...)
}
