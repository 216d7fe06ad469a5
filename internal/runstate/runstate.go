// Package runstate keeps the on-disk state of a user's runs: one folder per
// live run under the user's runtime folder, locked by the run's supervisor
// for as long as it lives, so that what a killed run left behind is found
// (its lock is free) and removed by the next run or by `nsrun gc`.
package runstate

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// RuntimeDir returns the nsrun folder of the user whose uid on the host is
// hostUID, creating it (mode 0700): $XDG_RUNTIME_DIR/nsrun-runs, else
// /run/user/UID/nsrun-runs, else the fallback in the user's own cache
// folder (see fallbackDir). A folder owned by someone else, writable by
// others, or a symlink, is refused. Ownership is checked against the
// current uid as this process sees it (0 inside the user's namespaces).
func RuntimeDir(hostUID int) (string, error) {
	base, err := runtimeBase(hostUID)
	if err != nil {
		return "", err
	}
	if base == fallbackDir() {
		// The cache folder itself may be missing in a fresh home.
		if err := os.MkdirAll(filepath.Dir(base), 0o700); err != nil {
			return "", fmt.Errorf("create runtime folder %s: %w", base, err)
		}
	}
	if err := os.Mkdir(base, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("create runtime folder %s: %w", base, err)
	}
	if err := ownDir(base); err != nil {
		return "", fmt.Errorf("runtime folder %s: %w; remove it or set XDG_RUNTIME_DIR", base, err)
	}
	return base, nil
}

// PlannedRuntimeDir is the folder RuntimeDir would return, for a plan
// that starts nothing (a dry run): it creates nothing. A folder that
// exists is checked as RuntimeDir checks it; one that does not is fine.
func PlannedRuntimeDir(hostUID int) (string, error) {
	base, err := runtimeBase(hostUID)
	if err != nil {
		return "", err
	}
	if err := ownDir(base); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("runtime folder %s: %w; remove it or set XDG_RUNTIME_DIR", base, err)
	}
	return base, nil
}

// runtimeBase picks the user's runtime folder (see RuntimeDir).
func runtimeBase(hostUID int) (string, error) {
	uid := os.Getuid()
	for _, cand := range []string{os.Getenv("XDG_RUNTIME_DIR"), "/run/user/" + strconv.Itoa(hostUID)} {
		if cand != "" && ownedDir(cand, uid) == nil {
			return filepath.Join(cand, "nsrun-runs"), nil
		}
	}
	if fb := fallbackDir(); fb != "" {
		return fb, nil
	}
	return "", fmt.Errorf("no runtime folder: XDG_RUNTIME_DIR is unset and /run/user/%d is not yours, and neither XDG_CACHE_HOME nor HOME is an absolute path for the fallback; set XDG_RUNTIME_DIR to a folder of yours", hostUID)
}

// Candidates are every folder where runs of the user whose uid on the
// host is hostUID may keep their state, whichever environment started
// them: $XDG_RUNTIME_DIR/nsrun-runs, /run/user/UID/nsrun-runs, the
// fallback and the fallback of earlier versions. A node that must not reach any run's control socket gets
// them covered (package guest's Spec.Hide).
func Candidates(hostUID int) []string {
	var out []string
	for _, cand := range []string{os.Getenv("XDG_RUNTIME_DIR"), "/run/user/" + strconv.Itoa(hostUID)} {
		if cand != "" {
			out = append(out, filepath.Join(cand, "nsrun-runs"))
		}
	}
	if fb := fallbackDir(); fb != "" {
		out = append(out, fb)
	}
	return append(out, legacyFallbackDir(hostUID))
}

// fallbackDir is the runtime folder of a user who has no runtime folder
// of the system's (no login session, no XDG_RUNTIME_DIR):
// $XDG_CACHE_HOME/nsrun-runs, else $HOME/.cache/nsrun-runs; "" when
// neither is an absolute path. It lies in the user's own home, where no
// other user can create it first: the fallback of earlier versions,
// $TMPDIR/nsrun-UID, is a name in the shared /tmp that anyone could take
// (a folder of theirs there made every run of the user fail).
func fallbackDir() string {
	if c := os.Getenv("XDG_CACHE_HOME"); filepath.IsAbs(c) {
		return filepath.Join(c, "nsrun-runs")
	}
	if h := os.Getenv("HOME"); filepath.IsAbs(h) && filepath.Clean(h) != "/" {
		return filepath.Join(h, ".cache", "nsrun-runs")
	}
	return ""
}

// legacyFallbackDir is the fallback runtime folder of earlier versions,
// $TMPDIR/nsrun-UID: never used for a run any more, only collected (when
// the user's own, see OwnFallbacks).
func legacyFallbackDir(hostUID int) string {
	return filepath.Join(os.TempDir(), "nsrun-"+strconv.Itoa(hostUID))
}

func ownedDir(path string, uid int) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok {
		return errors.New("not a directory")
	}
	if int(st.Uid) != uid {
		return fmt.Errorf("owned by uid %d, not %d", st.Uid, uid)
	}
	return nil
}

// NewID returns a fresh run id: 8 random hex characters. (getrandom(2)
// rather than crypto/rand: the id needs no more, and the crypto packages'
// start-up is paid by every run.)
func NewID() string {
	b := make([]byte, 4)
	for {
		if _, err := unix.Getrandom(b, 0); err != unix.EINTR {
			break
		}
	}
	return hex.EncodeToString(b)
}

// RunsDir is the folder holding one folder per run.
func RunsDir(runtimeDir string) string { return filepath.Join(runtimeDir, "runs") }

// Run is the state folder of one live run, locked while the run lives.
type Run struct {
	ID   string
	Dir  string
	lock *os.File
}

// Info describes a run for `nsrun ls` and for commands that reach into a run.
type Info struct {
	ID string `json:"id"`
	// File is the run's topology file, an absolute path (`nsrun up`).
	File string `json:"file,omitempty"`
	// Project names the run as compose does: `name:` in the file, else
	// the name of the file's folder.
	Project string     `json:"project,omitempty"`
	Pid     int        `json:"pid"` // nsrun's pid on the host (the run lives as long as it does)
	Nodes   []NodeInfo `json:"nodes"`
	// Uplink is the run's /30 towards the gateway, when it has one.
	Uplink string `json:"uplink,omitempty"`
}

// NodeInfo describes one node of a run.
type NodeInfo struct {
	Name  string `json:"name"`
	Addr  string `json:"addr,omitempty"`  // IPv4 ("" in an IPv6-only subnet)
	Addr6 string `json:"addr6,omitempty"` // IPv6 ("" without)
	// State is the node's state when the record was written: one of the
	// State constants.
	State State `json:"state"`
	// ExitCode is the code of the node's last process, once it exited.
	ExitCode int `json:"exit_code,omitempty"`
	// Restarts counts how often the node's process was started again
	// after its first start.
	Restarts int `json:"restarts"`
}

// State is a node's state, as `nsrun ps` shows it.
type State string

// The states of a node.
const (
	StateStarting State = "starting" // not started yet (waits for its dependencies)
	StateUp       State = "up"       // its process runs (or it has no command)
	StateReady    State = "ready"    // it runs and passed its ready check
	StatePaused   State = "paused"   // frozen by nsrun node pause
	StateStopped  State = "stopped"  // stopped by nsrun node stop
	StateExited   State = "exited"   // its process ended by itself (see ExitCode)
)

// Counts returns how many of info's nodes are in each state.
func (info Info) Counts() map[State]int {
	m := map[State]int{}
	for _, n := range info.Nodes {
		m[n.State]++
	}
	return m
}

// Create makes and locks the state folder dir of run id. The lock is held
// until Remove (or the process's death). The folder is built under a
// hidden name and renamed into place once locked, so GC never sees it
// unlocked.
func Create(dir, id string) (*Run, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(dir), err)
	}
	tmp := filepath.Join(filepath.Dir(dir), ".new-"+filepath.Base(dir))
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("create run folder %s: %w", tmp, err)
	}
	lock, err := os.OpenFile(filepath.Join(tmp, "lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err == nil {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX) // GC may hold LOCK_SH for an instant
		if err == nil {
			err = os.Rename(tmp, dir)
		}
		if err != nil {
			lock.Close()
		}
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("create run folder %s: %w", dir, err)
	}
	return &Run{ID: id, Dir: dir, lock: lock}, nil
}

// WriteFile writes a file of the run's state folder.
func (r *Run) WriteFile(name string, data []byte) (string, error) {
	p := filepath.Join(r.Dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", p, err)
	}
	return p, nil
}

// WriteFileInPlace rewrites an existing file of the run's state folder
// in place, so that bind mounts of it show the new content.
func (r *Run) WriteFileInPlace(name string, data []byte) (string, error) {
	p := filepath.Join(r.Dir, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", fmt.Errorf("rewrite %s: %w", p, err)
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return p, werr
}

// WriteInfo records info as info.json for `nsrun ls`; it may be called
// again as the run changes (one writer at a time).
func (r *Run) WriteInfo(info Info) error {
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	tmp := filepath.Join(r.Dir, ".info.json")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write run info: %w", err)
	}
	return os.Rename(tmp, filepath.Join(r.Dir, "info.json"))
}

// ReadInfo reads the record WriteInfo wrote in the run folder dir.
func ReadInfo(dir string) (Info, error) {
	var info Info
	b, err := os.ReadFile(filepath.Join(dir, "info.json"))
	if err != nil {
		return info, fmt.Errorf("read run info: %w", err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("read run info %s: %w", filepath.Join(dir, "info.json"), err)
	}
	return info, nil
}

// Remove deletes the state folder and releases the lock.
func (r *Run) Remove() error {
	err := os.RemoveAll(r.Dir)
	r.lock.Close()
	return err
}

// List returns the live runs under runtimeDir. Folders of dead runs are
// skipped (see GC).
func List(runtimeDir string) ([]Info, error) {
	ents, err := os.ReadDir(RunsDir(runtimeDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range ents {
		dir := filepath.Join(RunsDir(runtimeDir), e.Name())
		if strings.HasPrefix(e.Name(), ".") || !locked(dir) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "info.json"))
		if err != nil {
			continue // still starting
		}
		var info Info
		if json.Unmarshal(b, &info) == nil {
			out = append(out, info)
		}
	}
	return out, nil
}

// GC removes the folders of runs whose supervisor is gone and returns their
// ids.
func GC(runtimeDir string) ([]string, error) {
	ents, err := os.ReadDir(RunsDir(runtimeDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", RunsDir(runtimeDir), err)
	}
	var removed []string
	for _, e := range ents {
		dir := filepath.Join(RunsDir(runtimeDir), e.Name())
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") && recent(dir) || locked(dir) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			return removed, fmt.Errorf("remove stale run %s: %w", dir, err)
		}
		removed = append(removed, e.Name())
	}
	return removed, nil
}

// GCAll is GC of runtimeDir, the runtime folder of the user whose uid on
// the host is hostUID, and of the fallback folders that are other folders
// (see OwnFallbacks): runs started while the user had no runtime folder
// of the system's (before /run/user/UID existed) live there, and once it
// exists no run looks there again. It returns the ids removed.
func GCAll(runtimeDir string, hostUID int) ([]string, error) {
	removed, err := GC(runtimeDir)
	if err != nil {
		return removed, err
	}
	for _, fb := range OwnFallbacks(runtimeDir, hostUID) {
		more, err := GC(fb)
		removed = append(removed, more...)
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// OwnFallbacks returns the fallback folders of the user whose uid on the
// host is hostUID (fallbackDir, and $TMPDIR/nsrun-UID of earlier
// versions) that are not runtimeDir and are the user's own: a folder, not
// a symlink, owned by the current uid (as RuntimeDir checks) and writable
// by no one else, and so is its runs folder if it has one. A folder that
// another user made in the shared temporary folder is never read.
func OwnFallbacks(runtimeDir string, hostUID int) []string {
	var out []string
	for _, fb := range []string{fallbackDir(), legacyFallbackDir(hostUID)} {
		if fb == "" || filepath.Clean(runtimeDir) == fb || ownDir(fb) != nil {
			continue
		}
		if err := ownDir(RunsDir(fb)); err != nil && !errors.Is(err, os.ErrNotExist) {
			continue
		}
		out = append(out, fb)
	}
	return out
}

// ownDir checks that path is a folder of the current uid's (not a
// symlink) that no other user may write to.
func ownDir(path string) error {
	if err := ownedDir(path, os.Getuid()); err != nil {
		return err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("writable by others (mode %v)", fi.Mode().Perm())
	}
	return nil
}

// Alive reports whether run id of runtimeDir is live.
func Alive(runtimeDir, id string) bool {
	return locked(filepath.Join(RunsDir(runtimeDir), id))
}

// locked reports whether a live supervisor holds dir's lock.
func locked(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return true
	}
	return false
}

// recent reports whether dir was created in the last few seconds: a run
// still building its folder under the hidden name.
func recent(dir string) bool {
	var st unix.Stat_t
	if unix.Stat(dir, &st) != nil {
		return false
	}
	var now unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &now)
	return now.Sec-st.Ctim.Sec < 10
}
