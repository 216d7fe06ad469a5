package runstate

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLifecycle(t *testing.T) {
	rt := t.TempDir()
	id := NewID()
	r, err := Create(filepath.Join(RunsDir(rt), id), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WriteInfo(Info{ID: id, Nodes: []NodeInfo{{Name: "a", Addr: "172.18.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	if !Alive(rt, id) {
		t.Error("a locked run is not alive")
	}
	runs, err := List(rt)
	if err != nil || len(runs) != 1 || runs[0].ID != id {
		t.Fatalf("List = %+v, %v", runs, err)
	}
	if removed, _ := GC(rt); len(removed) != 0 {
		t.Errorf("GC removed a live run: %v", removed)
	}
	// A run whose supervisor died: its lock is released with its fds.
	r.lock.Close()
	if Alive(rt, id) {
		t.Error("a run without its lock holder is alive")
	}
	if runs, _ := List(rt); len(runs) != 0 {
		t.Errorf("List shows a dead run: %+v", runs)
	}
	if removed, err := GC(rt); err != nil || len(removed) != 1 || removed[0] != id {
		t.Errorf("GC = %v, %v; want %s", removed, err, id)
	}
	if _, err := os.Stat(r.Dir); !os.IsNotExist(err) {
		t.Errorf("run folder left: %v", err)
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	rt := t.TempDir()
	r, err := Create(filepath.Join(RunsDir(rt), "x"), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Remove()
	if _, err := Create(filepath.Join(RunsDir(rt), "x"), "x"); err == nil {
		t.Error("a second run with the same id was created")
	}
}

func TestRuntimeDirRefusesSymlink(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", tmp)
	if err := os.Symlink(t.TempDir(), filepath.Join(tmp, "nsrun-runs")); err != nil {
		t.Fatal(err)
	}
	if _, err := RuntimeDir(os.Getuid()); err == nil {
		t.Error("a symlinked runtime folder was accepted")
	}
}

// deadRun makes the folder of a run under rt whose supervisor is gone.
func deadRun(t *testing.T, rt, id string) string {
	t.Helper()
	r, err := Create(filepath.Join(RunsDir(rt), id), id)
	if err != nil {
		t.Fatal(err)
	}
	r.lock.Close()
	return r.Dir
}

// TestGCAllFallback: once the user has a runtime folder of the system's,
// the dead runs left in the fallback folder $TMPDIR/nsrun-UID (made
// before it existed) are removed too; live ones there stay.
func TestGCAllFallback(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	t.Setenv("TMPDIR", t.TempDir())
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	uid := os.Getuid()
	fb := legacyFallbackDir(uid)
	if err := os.Mkdir(fb, 0o700); err != nil {
		t.Fatal(err)
	}
	dead := deadRun(t, fb, "dead0001")
	live, err := Create(filepath.Join(RunsDir(fb), "live0001"), "live0001")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Remove()
	rt, err := RuntimeDir(uid)
	if err != nil {
		t.Fatal(err)
	}
	if rt == fb {
		t.Fatalf("runtime folder is the fallback %s with XDG_RUNTIME_DIR set", rt)
	}
	deadHere := deadRun(t, rt, "dead0002")
	removed, err := GCAll(rt, uid)
	if err != nil || !slices.Equal(removed, []string{"dead0002", "dead0001"}) {
		t.Errorf("GCAll = %v, %v; want dead0002 dead0001", removed, err)
	}
	for _, dir := range []string{dead, deadHere} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("dead run %s left: %v", dir, err)
		}
	}
	if !Alive(fb, "live0001") {
		t.Error("GCAll removed a live run of the fallback folder")
	}
	// The fallback as the runtime folder itself is collected once.
	deadRun(t, fb, "dead0003")
	if removed, err := GCAll(fb, uid); err != nil || !slices.Equal(removed, []string{"dead0003"}) {
		t.Errorf("GCAll of the fallback = %v, %v", removed, err)
	}
}

// TestFallbackNotInTmp: a user with no runtime folder of the system's gets
// one in the cache folder of their home ($XDG_CACHE_HOME, else
// $HOME/.cache), which another user cannot create first; the old name in
// the shared /tmp, taken by another user, changes nothing. With neither
// variable set, the error says what to set.
func TestFallbackNotInTmp(t *testing.T) {
	const noSession = 1<<31 - 7 // no /run/user of this uid
	tmp := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("TMPDIR", tmp)
	// What another user does: takes the old fallback name first.
	taken := legacyFallbackDir(noSession)
	if err := os.Mkdir(taken, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(taken, 0o777); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		if err := os.Chown(taken, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	got, err := RuntimeDir(noSession)
	if want := filepath.Join(cache, "nsrun-runs"); err != nil || got != want {
		t.Fatalf("RuntimeDir with XDG_CACHE_HOME = %q, %v; want %s", got, err, want)
	}
	if removed, err := GCAll(got, noSession); err != nil || len(removed) != 0 {
		t.Errorf("GCAll read the folder another user made: %v, %v", removed, err)
	}
	home := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", home)
	got, err = RuntimeDir(noSession)
	if want := filepath.Join(home, ".cache", "nsrun-runs"); err != nil || got != want {
		t.Fatalf("RuntimeDir with HOME = %q, %v; want %s (made with its .cache)", got, err, want)
	}
	if fi, err := os.Stat(got); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("fallback folder: %v, %v; want mode 0700", fi, err)
	}
	t.Setenv("HOME", "")
	if _, err := RuntimeDir(noSession); err == nil || !strings.Contains(err.Error(), "set XDG_RUNTIME_DIR") {
		t.Errorf("RuntimeDir with no HOME = %v; want an error saying what to set", err)
	}
	// A fallback others may write to is refused.
	if err := os.Chmod(filepath.Join(cache), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_CACHE_HOME", cache)
	if err := os.Chmod(filepath.Join(cache, "nsrun-runs"), 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := RuntimeDir(noSession); err == nil {
		t.Error("a fallback folder writable by others was accepted")
	}
}

// TestGCAllFallbackNotOwn: a fallback folder that is a symlink, or that
// others may write to (anyone may make /tmp/nsrun-UID), is never read.
func TestGCAllFallbackNotOwn(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	t.Setenv("TMPDIR", t.TempDir())
	uid := os.Getuid()
	rt, err := RuntimeDir(uid)
	if err != nil {
		t.Fatal(err)
	}
	fb := legacyFallbackDir(uid)
	elsewhere := t.TempDir()
	dead := deadRun(t, elsewhere, "dead0001")
	if err := os.Symlink(elsewhere, fb); err != nil {
		t.Fatal(err)
	}
	if removed, _ := GCAll(rt, uid); len(removed) != 0 {
		t.Errorf("GCAll went through a symlinked fallback: %v", removed)
	}
	if err := os.Remove(fb); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(fb, 0o700); err != nil {
		t.Fatal(err)
	}
	deadRun(t, fb, "dead0002")
	for _, mode := range []os.FileMode{0o777, 0o720} {
		if err := os.Chmod(fb, mode); err != nil {
			t.Fatal(err)
		}
		if removed, _ := GCAll(rt, uid); len(removed) != 0 {
			t.Errorf("GCAll read a fallback of mode %v: %v", mode, removed)
		}
	}
	if err := os.Chmod(fb, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(RunsDir(fb), 0o777); err != nil {
		t.Fatal(err)
	}
	if removed, _ := GCAll(rt, uid); len(removed) != 0 {
		t.Errorf("GCAll read a runs folder others may write to: %v", removed)
	}
	if _, err := os.Stat(dead); err != nil {
		t.Errorf("the run the symlink pointed at: %v", err)
	}
}

// TestPlannedRuntimeDirCreatesNothing: the folder a dry run plans with is
// the one a real run gets, and asking for it creates nothing.
func TestPlannedRuntimeDirCreatesNothing(t *testing.T) {
	xdg := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", xdg)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	uid := os.Getuid()
	planned, err := PlannedRuntimeDir(uid)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{xdg, tmp} {
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("PlannedRuntimeDir created %v in %s", ents, dir)
		}
	}
	got, err := RuntimeDir(uid)
	if err != nil || got != planned {
		t.Errorf("RuntimeDir = %s, %v; planned %s", got, err, planned)
	}
	// An existing folder is checked as RuntimeDir checks it.
	if err := os.Remove(got); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), got); err != nil {
		t.Fatal(err)
	}
	if _, err := PlannedRuntimeDir(uid); err == nil {
		t.Error("PlannedRuntimeDir accepted a symlinked runtime folder")
	}
}
