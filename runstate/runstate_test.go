package runstate

import (
	"os"
	"path/filepath"
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
