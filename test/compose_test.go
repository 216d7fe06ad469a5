package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/completiontest"
)

// composeFile has a node that writes a numbered line every 200 ms ($$:
// a dollar sign the file does not interpolate), one
// that waits, and one that only holds its namespace.
const composeFile = `
nodes:
  worker:
    ip: 172.18.0.5
    command: sh -c 'i=0; while :; do i=$$((i+1)); echo tick $$i; sleep 0.2; done'
  idle:
    ip: 172.18.0.6
    command: sh -c 'trap "exit 0" TERM; echo idle waits; while :; do sleep 0.1; done'
  holder:
    ip: 172.18.0.7
`

// nsrunIn runs nsrun args as u in dir, to its end.
func nsrunIn(t *testing.T, u testUser, dir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := u.nsrun(ctx, args...)
	cmd.Dir = dir
	return run(t, cmd)
}

// upDetached runs `nsrun up -d args...` in dir, checks that it printed
// a run id and returned, and registers the run's stop.
func upDetached(t *testing.T, u testUser, dir string, args ...string) string {
	t.Helper()
	start := time.Now()
	r := nsrunIn(t, u, dir, append([]string{"up", "-d"}, args...)...)
	id := strings.TrimSpace(r.Stdout)
	if r.Code != 0 || !regexp.MustCompile(`^[0-9a-f]{8}$`).MatchString(id) {
		t.Fatalf("up -d: exit %d, stdout %q, stderr %q; want 0 and a run id", r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("up -d: run %s up in %s", id, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if !strings.Contains(nsrunOK(t, u, "ls"), id) {
			return
		}
		nsrunIn(t, u, dir, "down", "--run", id)
	})
	return id
}

// psNodes is `nsrun ps --json` of run id.
func psNodes(t *testing.T, u testUser, dir, id string) map[string]map[string]any {
	t.Helper()
	r := nsrunIn(t, u, dir, "ps", "--json", "--run", id)
	var nodes []map[string]any
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &nodes) != nil {
		t.Fatalf("ps --json: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	out := map[string]map[string]any{}
	for _, n := range nodes {
		out[n["name"].(string)] = n
	}
	return out
}

// TestComposeDetached: the daily loop of a compose user on one file, as
// the unprivileged user: up -d returns once every node is up with the
// run's id; ls, ps, logs, exec, node stop|start of several nodes and down
// find the run without --run (the one run of this folder's file) or by a
// prefix of its id; logs -f follows until down ends the run, which leaves
// no process and no folder behind.
func TestComposeDetached(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	dir := project(t, map[string]string{"nsrun.yaml": composeFile})
	other := project(t, map[string]string{"nsrun.yaml": "name: lonely\nnodes:\n  lone: {ip: 172.18.0.9}\n"})

	// A file that does not load: up -d fails as up does, at once.
	if r := nsrunIn(t, u, dir, "up", "-d", "-f", "missing.yaml"); r.Code != 125 || !strings.Contains(r.Stderr, "missing.yaml not found") || r.Stdout != "" {
		t.Errorf("up -d -f missing.yaml: exit %d, %q %q; want 125, not found", r.Code, r.Stdout, r.Stderr)
	}

	id := upDetached(t, u, dir)
	// A second run, of another folder's file: commands in dir still
	// find dir's run without --run.
	otherID := upDetached(t, u, other)

	ls := nsrunOK(t, u, "ls")
	if !regexp.MustCompile(id + `\s+` + filepath.Base(dir) + `\s+isolated\s+3 up\s+` + regexp.QuoteMeta(filepath.Join(dir, "nsrun.yaml"))).MatchString(ls) {
		t.Errorf("ls lacks run %s with its project, counts and file:\n%s", id, ls)
	}
	if !regexp.MustCompile(otherID + `\s+lonely\s+isolated\s+1 up\s+`).MatchString(ls) {
		t.Errorf("ls lacks run %s with its project from name:\n%s", otherID, ls)
	}

	ps := nsrunIn(t, u, dir, "ps")
	for _, want := range []string{"worker  up", "172.18.0.5,fd00:ac12::5", "idle    up", "holder  up"} {
		if ps.Code != 0 || !strings.Contains(ps.Stdout, want) {
			t.Errorf("ps: exit %d, lacks %q:\n%s%s", ps.Code, want, ps.Stdout, ps.Stderr)
		}
	}
	// From elsewhere, two runs: ps needs --run, and a prefix will do.
	if r := nsrunIn(t, u, binDir, "ps"); r.Code != 125 || !strings.Contains(r.Stderr, "2 live runs") || !strings.Contains(r.Stderr, "--run ID") {
		t.Errorf("ps with two runs, none of this folder: exit %d, %q", r.Code, r.Stderr)
	}
	if r := nsrunIn(t, u, binDir, "ps", "--run", otherID[:5]); r.Code != 0 || !strings.Contains(r.Stdout, "lone") {
		t.Errorf("ps --run %s: exit %d, %q %q", otherID[:5], r.Code, r.Stdout, r.Stderr)
	}

	// logs -f of one node follows its output.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	follow := u.nsrun(ctx, "logs", "-f", "worker")
	follow.Dir = dir
	rc, out := startBackground(t, follow, cancel, func(l *lineLog) bool { return strings.Contains(l.all(), "worker | tick 5\n") })
	if s := out.all(); strings.Contains(s, "idle") || !strings.Contains(s, "worker | tick 1\n") {
		t.Errorf("logs -f worker: not worker's lines alone, from the first:\n%s", s)
	}
	// logs of every node: each prefixed as up prints it, nsrun's too.
	logs := nsrunIn(t, u, dir, "logs")
	for _, want := range []string{"worker | tick 1\n", "idle   | idle waits\n", "nsrun  | every node is up: run " + id} {
		if !strings.Contains(logs.Stdout, want) {
			t.Errorf("logs lacks %q:\n%s%s", want, logs.Stdout, logs.Stderr)
		}
	}
	if r := nsrunIn(t, u, dir, "logs", "--since", "1h", "nobody"); r.Code != 125 || !strings.Contains(r.Stderr, `no node "nobody"`) {
		t.Errorf("logs nobody: exit %d, %q", r.Code, r.Stderr)
	}

	// exec: a command in a node, its exit code back.
	if r := nsrunIn(t, u, dir, "exec", "idle", "--", "sh", "-c", "ip -4 -o addr show eth0; exit 3"); r.Code != 3 || !strings.Contains(r.Stdout, "inet 172.18.0.6/24") {
		t.Errorf("exec idle: exit %d, %q %q; want 3 and its address", r.Code, r.Stdout, r.Stderr)
	}

	// node stop of two nodes, then start one: ps follows.
	if r := nsrunIn(t, u, dir, "node", "stop", "worker", "idle"); r.Code != 0 || !strings.Contains(r.Stdout, "worker: stop done\nidle: stop done") {
		t.Errorf("node stop worker idle: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	nodes := psNodes(t, u, dir, id[:4])
	if nodes["worker"]["state"] != "stopped" || nodes["idle"]["state"] != "stopped" || nodes["holder"]["state"] != "up" {
		t.Errorf("ps after node stop: %v", nodes)
	}
	if r := nsrunIn(t, u, dir, "node", "start", "worker"); r.Code != 0 {
		t.Errorf("node start worker: exit %d, %q", r.Code, r.Stderr)
	}
	nodes = psNodes(t, u, dir, id)
	if nodes["worker"]["state"] != "up" || nodes["worker"]["restarts"] != float64(1) {
		t.Errorf("ps after node start: %v", nodes["worker"])
	}

	// down: the run of this folder's file; logs -f ends with it.
	r := nsrunIn(t, u, dir, "down")
	if r.Code != 0 || r.Stdout != "stopped run "+id+"\n" {
		t.Errorf("down: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if code := rc.wait(); code != 0 {
		t.Errorf("logs -f: exit %d after down; %s", code, rc.stderr)
	}
	if ls := nsrunOK(t, u, "ls"); strings.Contains(ls, id) || !strings.Contains(ls, otherID) {
		t.Errorf("ls after down:\n%s", ls)
	}
	// The other run is the user's only one now: down needs no --run.
	if r := nsrunIn(t, u, binDir, "down"); r.Code != 0 || !strings.Contains(r.Stdout, otherID) {
		t.Errorf("down of the only run: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if !eventually(5*time.Second, func() bool { return len(nsrunProcesses(u)) == 0 }) {
		t.Errorf("nsrun processes left: %v", nsrunProcesses(u))
	}
	if len(processesOf(u, "sleep 0.1")) != 0 || len(processesOf(u, "sleep 0.2")) != 0 {
		t.Error("node processes left after down")
	}
	if left := u.runDirs(); len(left) != 0 {
		t.Errorf("run folders left: %v", left)
	}
}

// keptLogDirs are where u's kept logs of run id may be.
func keptLogDirs(u testUser, id string) []string {
	var out []string
	for _, rt := range u.runtimeDirs() {
		out = append(out, filepath.Join(rt, "logs", id))
	}
	return out
}

// TestComposeKeepLogs: the output of a run started with --keep-logs is
// read after the run with nsrun logs --run ID (a prefix will do); without
// it nothing is kept.
func TestComposeKeepLogs(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	dir := project(t, map[string]string{"nsrun.yaml": `
nodes:
  once:
    ip: 172.18.0.5
    command: sh -c 'echo said once; exit 4'
  stays:
    ip: 172.18.0.6
    command: sh -c 'trap "exit 0" TERM; while :; do sleep 0.1; done'
`})
	id := upDetached(t, u, dir, "--keep-logs")
	t.Cleanup(func() {
		for _, d := range keptLogDirs(u, id) {
			os.RemoveAll(d)
		}
	})
	if !eventually(10*time.Second, func() bool { return psNodes(t, u, dir, id)["once"]["exit_code"] == float64(4) }) {
		t.Errorf("ps never showed once exited with code 4: %v", psNodes(t, u, dir, id))
	}
	if ps := nsrunIn(t, u, dir, "ps"); !regexp.MustCompile(`once\s+exited \(4\)`).MatchString(ps.Stdout) {
		t.Errorf("ps:\n%s", ps.Stdout)
	}
	nsrunOK(t, u, "down", "--run", id)
	r := nsrunIn(t, u, binDir, "logs", "--run", id[:6], "once")
	if r.Code != 0 || r.Stdout != "once  | said once\n" {
		t.Errorf("logs --run %s once after the run: exit %d, %q %q", id[:6], r.Code, r.Stdout, r.Stderr)
	}
	r = nsrunIn(t, u, binDir, "logs", "--run", id)
	if r.Code != 0 || !strings.Contains(r.Stdout, "nsrun | once exited with code 4\n") {
		t.Errorf("logs --run %s: exit %d, %q %q", id, r.Code, r.Stdout, r.Stderr)
	}

	// Without --keep-logs, nothing outlives the run.
	id2 := upDetached(t, u, dir)
	nsrunOK(t, u, "down", "--run", id2)
	if r := nsrunIn(t, u, binDir, "logs", "--run", id2); r.Code != 125 || !strings.Contains(r.Stderr, "no live run with that id") {
		t.Errorf("logs of a run without --keep-logs after it: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
}

// TestCompletionLiveRun: completion in bash, zsh (the script sourced, or
// autoloaded from $fpath) and fish, each run as a TAB runs it
// (internal/completiontest), completes node names of the live run a
// command means, run ids after --run, verbs and flags, the same in each.
func TestCompletionLiveRun(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	dir := project(t, map[string]string{"nsrun.yaml": composeFile})
	id := upDetached(t, u, dir)
	cases := []struct {
		in    string
		words []string
		want  string
	}{
		{dir, []string{"node", "stop", ""}, "worker idle holder"},
		{dir, []string{"node", "stop", "worker", "i"}, "idle"},
		{dir, []string{"net", "exec", "w"}, "worker"},
		{dir, []string{"exec", "h"}, "holder"},
		{dir, []string{"exec", "holder", ""}, "--"},
		{binDir, []string{"logs", "--run", id[:3], "w"}, "worker"},
		{binDir, []string{"ps", "--run", ""}, id},
		{binDir, []string{"down", "--run", id[:2]}, id},
		{binDir, []string{"net", "iso"}, "isolate"},
		{binDir, []string{"net", "isolate", "--up"}, "--uplink"},
		{binDir, []string{"dow"}, "down"},
		{binDir, []string{"comp"}, "completion"},
		{dir, []string{"up", "-d", "ho"}, "holder"},
	}
	// By folder: one shell's run completes the lines of one folder.
	for _, shell := range completiontest.Shells {
		t.Run(shell, func(t *testing.T) {
			completiontest.Need(t, shell)
			for _, in := range []string{dir, binDir} {
				var lines []string
				var want [][]string
				for _, c := range cases {
					if c.in == in {
						lines = append(lines, strings.Join(c.words, " "))
						want = append(want, slices.Sorted(slices.Values(strings.Fields(c.want))))
					}
				}
				args, err := completiontest.Command(shell, lines)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				cmd := u.command(ctx, args[0], args[1:]...)
				cmd.Dir = in
				r := run(t, cmd)
				cancel()
				if r.Code != 0 {
					t.Fatalf("complete in %s: exit %d, %q", shell, r.Code, r.Stderr)
				}
				got, err := completiontest.Results(r.Stdout, len(lines))
				if err != nil {
					t.Fatalf("complete in %s: %v", shell, err)
				}
				for i, line := range lines {
					if !slices.Equal(got[i], want[i]) {
						t.Errorf("complete %q in %s: %q; want %q", "nsrun "+line, shell, got[i], want[i])
					}
				}
			}
		})
	}
}

// TestHelperNoteNamesPath: without the helper, the note that asks for
// sudo nsrun-helper install names the helper's absolute path (beside
// nsrun), which sudo's PATH may not have.
func TestHelperNoteNamesPath(t *testing.T) {
	u := unprivileged(t)
	requireRoot(t) // to forget that the note was shown (its marker)
	userNamespaces(t, u)
	if _, err := os.Stat(fmt.Sprintf("/run/user/%d/nsrun/install.json", u.UID)); err == nil {
		t.Skip("the helper is installed for", u.Name)
	}
	for _, rt := range u.runtimeDirs() {
		os.Remove(filepath.Join(rt, ".helper-note-shown"))
	}
	r := nsrunIn(t, u, binDir, "--", "true")
	if want := "run once: sudo " + filepath.Join(binDir, "nsrun-helper") + " install"; r.Code != 0 || !strings.Contains(r.Stderr, want) {
		t.Errorf("nsrun -- true without the helper: exit %d, %q; want %q", r.Code, r.Stderr, want)
	}
}

// TestUpNoColor: on a terminal, up colours each name; NO_COLOR (set to
// anything) turns it off, as no-color.org asks.
func TestUpNoColor(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	needPrograms(t, "script")
	dir := project(t, map[string]string{"nsrun.yaml": "nodes:\n  hello: {ip: 172.18.0.5, command: echo hi}\n"})
	up := func(env ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// script(1) gives up a terminal of its own.
		cmd := u.command(ctx, "script", "-qec", "nsrun up", "/dev/null")
		cmd.Dir = dir
		cmd.Env = append(cmd.Env, env...)
		r := run(t, cmd)
		if r.Code != 0 || !strings.Contains(r.Stdout, "hi") {
			t.Fatalf("nsrun up on a terminal %v: exit %d, %q %q", env, r.Code, r.Stdout, r.Stderr)
		}
		return r.Stdout
	}
	if out := up(); !strings.Contains(out, "\x1b[") {
		t.Errorf("up on a terminal is not coloured: %q", out)
	}
	if out := up("NO_COLOR=1"); strings.Contains(out, "\x1b[") {
		t.Errorf("up with NO_COLOR=1 is coloured: %q", out)
	}
}

// TestDetachedNodeSignalDefaults: a detached run's supervisor ignores
// SIGPIPE (its launcher is gone), but a node's command starts with every
// signal's default action but SIGHUP's and SIGINT's, as before nodes had
// an init of C: `yes | head -1` ends quietly rather than with "Broken
// pipe" errors.
func TestDetachedNodeSignalDefaults(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	dir := project(t, map[string]string{"nsrun.yaml": `
nodes:
  n1:
    ip: 172.18.0.2
    command: [sh, -c, 'grep SigIgn /proc/self/status; yes | head -1; echo piped; exec sleep 300']
`})
	id := upDetached(t, u, dir)
	var logs string
	if !eventually(10*time.Second, func() bool {
		logs = nsrunIn(t, u, dir, "logs", "--run", id).Stdout
		return strings.Contains(logs, "piped")
	}) {
		t.Fatalf("the node's output did not come:\n%s", logs)
	}
	m := regexp.MustCompile(`SigIgn:\s*([0-9a-f]+)`).FindStringSubmatch(logs)
	if m == nil {
		t.Fatalf("no SigIgn line in the node's output:\n%s", logs)
	}
	ign, err := strconv.ParseUint(m[1], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	if ign&(1<<(int(syscall.SIGPIPE)-1)) != 0 {
		t.Errorf("the node's command starts with SIGPIPE ignored (SigIgn %s)", m[1])
	}
	if strings.Contains(logs, "Broken pipe") {
		t.Errorf("yes | head -1 in a node wrote errors:\n%s", logs)
	}
}
