package test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// userDir makes an empty folder of u's (mode 0700) under binDir, which u
// may enter, removed when the test ends.
func userDir(t *testing.T, u testUser, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp(binDir, name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	return dir
}

// withRuntime sets the runtime folder (XDG_RUNTIME_DIR) and the
// temporary folder (TMPDIR, where the fallback runtime folder lives) of a
// command of u's.
func withRuntime(cmd *exec.Cmd, xdg, tmp string) *exec.Cmd {
	cmd.Env = append(cmd.Env, "XDG_RUNTIME_DIR="+xdg, "TMPDIR="+tmp)
	return cmd
}

// TestGCFallback: runs that died in the fallback runtime folder
// $TMPDIR/nsrun-UID (made while the user had no runtime folder of the
// system's) are removed by `nsrun gc` and by the next run once the user
// has one; a live run there stays.
func TestGCFallback(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	xdg, tmp := userDir(t, u, "xdg"), userDir(t, u, "tmp")
	fb := filepath.Join(tmp, fmt.Sprintf("nsrun-%d", u.UID))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// What a dead run leaves: its folder with a lock no one holds.
	r := run(t, u.command(ctx, "sh", "-c", `set -e; mkdir -m 700 "$1" "$1/runs"; for id in dead0001 dead0002; do mkdir -m 700 "$1/runs/$id"; : > "$1/runs/$id/lock"; done`, "sh", fb))
	if r.Code != 0 {
		t.Fatalf("make dead runs: %d %s", r.Code, r.Stderr)
	}
	// A live one: the lock is held.
	live := withRuntime(u.command(ctx, "sh", "-c", `set -e; mkdir -m 700 "$1/runs/live0001"; exec flock "$1/runs/live0001/lock" sh -c 'echo locked; exec sleep 60'`, "sh", fb), xdg, tmp)
	out, err := live.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = live.Process.Kill(); _ = live.Wait() }()
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "locked\n" {
		t.Fatalf("live run's lock: %q", line)
	}

	r = run(t, withRuntime(u.nsrun(ctx, "gc"), xdg, tmp))
	if r.Code != 0 || !strings.Contains(r.Stdout, "removed run dead0001") || !strings.Contains(r.Stdout, "removed run dead0002") || strings.Contains(r.Stdout, "live0001") {
		t.Errorf("nsrun gc: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, id := range []string{"dead0001", "dead0002"} {
		if _, err := os.Stat(filepath.Join(fb, "runs", id)); !os.IsNotExist(err) {
			t.Errorf("dead run %s left in the fallback folder: %v", id, err)
		}
	}
	if _, err := os.Stat(filepath.Join(fb, "runs", "live0001")); err != nil {
		t.Errorf("live run of the fallback folder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(xdg, "nsrun-runs")); err != nil {
		t.Errorf("runtime folder: %v", err)
	}

	// The next run removes what died since, before it ends.
	r = run(t, u.command(ctx, "sh", "-c", `mkdir -m 700 "$1/runs/dead0003" && : > "$1/runs/dead0003/lock"`, "sh", fb))
	if r.Code != 0 {
		t.Fatalf("make a dead run: %d %s", r.Code, r.Stderr)
	}
	r = run(t, withRuntime(u.nsrun(ctx, "--isolated", "--", "true"), xdg, tmp))
	if r.Code != 0 {
		t.Fatalf("nsrun --isolated -- true: exit %d\n%s", r.Code, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(fb, "runs", "dead0003")); !os.IsNotExist(err) {
		t.Errorf("a run did not remove the dead run of the fallback folder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(fb, "runs", "live0001")); err != nil {
		t.Errorf("live run of the fallback folder after a run: %v", err)
	}
}

// TestGCFallbackOthers: a fallback folder that is not the user's own (made
// by another user in the shared temporary folder) is never read by gc.
func TestGCFallbackOthers(t *testing.T) {
	u := unprivileged(t)
	requireRoot(t)
	xdg, tmp := userDir(t, u, "xdg"), userDir(t, u, "tmp")
	fb := filepath.Join(tmp, fmt.Sprintf("nsrun-%d", u.UID))
	dead := filepath.Join(fb, "runs", "dead0001")
	if err := os.MkdirAll(dead, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dead, "lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(fb, "runs"), u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// fb is root's: u cannot read it, and must not try past the check.
	r := run(t, withRuntime(u.nsrun(ctx, "gc"), xdg, tmp))
	if r.Code != 0 || strings.Contains(r.Stdout, "dead0001") {
		t.Errorf("nsrun gc with another user's fallback folder: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if _, err := os.Stat(dead); err != nil {
		t.Errorf("gc removed a run of another user's folder: %v", err)
	}
}

// TestDryRunCreatesNothing: `nsrun up --dry-run` and `nsrun --dry-run`
// plan with the runtime folder a run would get, and create nothing: not
// that folder, not the fallback one.
func TestDryRunCreatesNothing(t *testing.T) {
	u := unprivileged(t)
	xdg, tmp := userDir(t, u, "xdg"), userDir(t, u, "tmp")
	dir := project(t, map[string]string{"nsrun.yaml": "nodes:\n  a: {ip: 172.18.0.2, command: 'true'}\n"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, args := range [][]string{{"up", "-f", filepath.Join(dir, "nsrun.yaml"), "--dry-run"}, {"up", "-f", filepath.Join(dir, "nsrun.yaml"), "--dry-run", "--json"}, {"--dry-run", "--", "true"}} {
		for _, isolated := range []bool{false, true} {
			a := args
			if isolated {
				a = append([]string{"--isolated"}, args...)
				if args[0] == "up" {
					a = append([]string{"up", "--isolated"}, args[1:]...)
				}
			}
			r := run(t, withRuntime(u.nsrun(ctx, a...), xdg, tmp))
			if want := filepath.Join(xdg, "nsrun-runs"); r.Code != 0 || !strings.Contains(r.Stdout, want) {
				t.Errorf("nsrun %v: exit %d, plan without %s\n%s\n%s", a, r.Code, want, r.Stdout, r.Stderr)
			}
			for _, d := range []string{xdg, tmp} {
				if ents, _ := os.ReadDir(d); len(ents) != 0 {
					t.Errorf("nsrun %v created %s in %s", a, ents[0].Name(), d)
				}
			}
		}
	}
}

// TestFallbackTakenByOther: the attack of issue 20 item 7. A user without
// a runtime folder of the system's (no XDG_RUNTIME_DIR, no /run/user/UID:
// hidden here by an empty tmpfs in a mount namespace of the test's) used
// to run in $TMPDIR/nsrun-UID, which any other user could create first:
// every run then failed with 125. Another user takes that name; the run
// still works, in the user's cache folder, and the other user's folder is
// left alone.
func TestFallbackTakenByOther(t *testing.T) {
	u := unprivileged(t)
	requireRoot(t)
	userNamespaces(t, u)
	other := secondUser(t)
	tmp := filepath.Join(binDir, fmt.Sprintf("sharedtmp-%d", os.Getpid()))
	if err := os.Mkdir(tmp, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o1777); err != nil {
		t.Fatal(err)
	}
	cache := userDir(t, u, "cache")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	taken := filepath.Join(tmp, fmt.Sprintf("nsrun-%d", u.UID))
	if r := run(t, other.command(ctx, "mkdir", "-m", "755", taken)); r.Code != 0 {
		t.Fatalf("%s takes %s: exit %d %s", other.Name, taken, r.Code, r.Stderr)
	}
	env := append(u.command(ctx, "true").Env, "TMPDIR="+tmp, "XDG_CACHE_HOME="+cache)
	script := `set -e
mount -t tmpfs -o mode=755 nsrun-test /run/user
uid=$1 gid=$2
shift 2
exec setpriv --reuid="$uid" --regid="$gid" --init-groups env -i "$@"`
	argv := append([]string{"-m", "--propagation", "private", "sh", "-c", script, "sh", strconv.Itoa(u.UID), strconv.Itoa(u.GID)}, env...)
	// (env -i takes the variables, then the command after them)
	argv = append(argv, filepath.Join(binDir, "nsrun"), "--isolated", "--", "sh", "-c", "echo ran")
	cmd := exec.CommandContext(ctx, "unshare", argv...)
	cmd.Dir = binDir
	r := run(t, cmd)
	if r.Code != 0 || r.Stdout != "ran\n" {
		t.Fatalf("nsrun with %s taken by %s: exit %d %q\n%s", taken, other.Name, r.Code, r.Stdout, r.Stderr)
	}
	st, err := os.Stat(filepath.Join(cache, "nsrun-runs"))
	if err != nil || st.Sys().(*syscall.Stat_t).Uid != uint32(u.UID) {
		t.Errorf("the run's folder in %s: %v", cache, err)
	}
	if ents, err := os.ReadDir(taken); err != nil || len(ents) != 0 {
		t.Errorf("%s's folder %s: %v, %v; want it untouched and empty", other.Name, taken, ents, err)
	}
}
