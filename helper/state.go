package helper

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/install"
)

// stateDir is the helper's root-only state: the host-wide lock and the
// authoritative record of each installed user (users/UID.json). Nothing
// under /run/user is ever read by root; the user's install.json is a copy.
const stateDir = "/run/nsrun-helper"

// lockTimeout bounds the wait for another install or uninstall.
const lockTimeout = 2 * time.Minute

// state is the opened, verified state folder, held under the lock.
type state struct {
	dir, users *os.File
	lock       *os.File
	create     bool // not a dry run: the lock file may be made
}

// openState opens the state folder, checking that it and users/ are
// root's; with create it makes them first. Without create a missing
// folder is an empty state (a dry run or status changes nothing).
func openState(create bool) (*state, error) {
	if create {
		if err := os.Mkdir(stateDir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("create %s: %w", stateDir, err)
		}
	}
	d, err := install.OpenVerifiedDir(nil, stateDir, 0)
	if !create && errors.Is(err, install.ErrNotInstalled) {
		return &state{}, nil
	}
	if err != nil {
		return nil, err
	}
	s := &state{dir: d, create: create}
	if create {
		if err := unix.Mkdirat(int(d.Fd()), "users", 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			s.close()
			return nil, fmt.Errorf("create %s/users: %w", stateDir, err)
		}
	}
	if s.users, err = install.OpenVerifiedDir(d, "users", 0); err != nil && !(!create && errors.Is(err, install.ErrNotInstalled)) {
		s.close()
		return nil, err
	}
	return s, nil
}

// acquire takes the host-wide lock: every install and uninstall on the
// host runs one at a time. It waits at most lockTimeout, and gives up when
// stop reports a signal.
func (s *state) acquire(stop func() bool) error {
	if s.dir == nil {
		return nil // dry run on a host without the state folder
	}
	flags := unix.O_RDWR | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if s.create {
		flags |= unix.O_CREAT
	}
	fd, err := unix.Openat(int(s.dir.Fd()), "lock", flags, 0o600)
	if errors.Is(err, unix.ENOENT) {
		return nil // a dry run, and no install has ever run
	}
	if err != nil {
		return fmt.Errorf("open %s/lock: %w", stateDir, err)
	}
	s.lock = os.NewFile(uintptr(fd), stateDir+"/lock")
	for deadline := time.Now().Add(lockTimeout); ; time.Sleep(20 * time.Millisecond) {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case stop():
			return errStopped
		case !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline):
			return fmt.Errorf("lock %s/lock (another nsrun-helper install or uninstall is running): %w", stateDir, err)
		}
	}
}

func (s *state) close() {
	for _, f := range []*os.File{s.lock, s.users, s.dir} {
		if f != nil {
			f.Close() // closing the lock file releases the lock
		}
	}
}

// record reads uid's authoritative record; ok is false when there is none.
func (s *state) record(uid int) (r install.Record, ok bool, err error) {
	if s.users == nil {
		return r, false, nil
	}
	b, err := install.ReadRootFile(s.users, strconv.Itoa(uid)+".json", install.MaxRecordSize)
	if errors.Is(err, os.ErrNotExist) {
		return r, false, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil {
		return r, false, fmt.Errorf("%s/users/%d.json is not a valid record: %w", stateDir, uid, err)
	}
	return r, true, nil
}

// others returns the records of every installed user but uid.
func (s *state) others(uid int) ([]install.Record, error) {
	if s.users == nil {
		return nil, nil
	}
	names, err := s.users.Readdirnames(-1)
	if _, serr := s.users.Seek(0, 0); err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("list %s/users: %w", stateDir, err)
	}
	var out []install.Record
	for _, n := range names {
		id, err := strconv.Atoi(strings.TrimSuffix(n, ".json"))
		if err != nil || !strings.HasSuffix(n, ".json") || id == uid {
			continue
		}
		if r, ok, err := s.record(id); err == nil && ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// marshalRecord is the record's one encoding, in both copies.
func marshalRecord(r install.Record) []byte {
	b, _ := json.MarshalIndent(r, "", "  ")
	return append(b, '\n')
}
