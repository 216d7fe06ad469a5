package test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// evilYAML is a run of one default node, evil, the attacker.
const evilYAML = `
nodes:
  evil: {ip: 172.18.0.1, command: "probe listen 0.0.0.0:9000"}
`

// victimYAML is the run that evil attacks: n1 and n2.
const victimYAML = `
nodes:
  n1: {ip: 172.18.0.1, command: "probe listen 0.0.0.0:9000"}
  n2: {ip: 172.18.0.2, command: "probe listen 0.0.0.0:9000"}
`

// runElsewhere starts `nsrun up -d` of yaml as u, in a project folder of
// its own and under the runtime folder rt (XDG_RUNTIME_DIR), and returns
// the run's id and nsrun, which runs nsrun as u in that folder under rt.
// t's cleanup takes the run down, after the cleanups the test registers
// later (which put back what an attack moved). what names the run in
// failures.
func runElsewhere(t *testing.T, u testUser, rt, yaml, what string) (string, func(args ...string) result) {
	t.Helper()
	dir := project(t, map[string]string{"nsrun.yaml": yaml})
	nsrun := func(args ...string) result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := u.nsrun(ctx, args...)
		cmd.Dir = dir
		cmd.Env = append(cmd.Env, "XDG_RUNTIME_DIR="+rt)
		return run(t, cmd)
	}
	up := nsrun("up", "-d")
	if up.Code != 0 {
		t.Fatalf("nsrun up -d of %s: exit %d %s %s", what, up.Code, up.Stdout, up.Stderr)
	}
	id := strings.TrimSpace(up.Stdout)
	t.Cleanup(func() {
		if r := nsrun("down", "--run", id); r.Code != 0 {
			t.Errorf("nsrun down of %s: exit %d %s", what, r.Code, r.Stderr)
		}
	})
	return id, nsrun
}

// TestNodeCannotControlAnotherRun attacks a run of the user's from a
// default node of another of their runs. A node hides only the folders
// of runs that exist when it starts, and it runs as the user, so it can
// reach the folder of a run that lives elsewhere (another
// XDG_RUNTIME_DIR: a login session's /run/user/UID beside a cron job's
// ~/.cache; or a folder it renamed aside). Its pid is outside that run's
// pid namespace, which the supervisor used to take for the user on the
// host: it healed the other run's cut and got `net exec --root` there.
// Both must be refused, and the cut must hold.
func TestNodeCannotControlAnotherRun(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	// The attacker: a default node of a run in the default runtime
	// folder.
	a := startRun(t, u, evilYAML, "evil  | listening")

	// The victim: a run of the same user in another runtime folder,
	// started after the attacker's node, with n1 cut off.
	xdg := userDir(t, u, "xdg")
	id, victim := runElsewhere(t, u, xdg, victimYAML, "the victim run")
	ctl := filepath.Join(xdg, "nsrun-runs", "runs", id, "ctl")
	if _, err := os.Stat(ctl); err != nil {
		t.Fatalf("the victim run's control socket: %v", err)
	}
	if r := victim("net", "isolate", "--run", id, "n1"); r.Code != 0 {
		t.Fatalf("isolate n1 in the victim run: exit %d %s", r.Code, r.Stderr)
	}
	reaches := func() bool {
		r := victim("net", "exec", "--run", id, "n1", "--", "probe", "dial", "172.18.0.2:9000", dialTimeout)
		return strings.HasPrefix(r.Stdout, "ok ")
	}
	if reaches() {
		t.Fatal("isolate n1 did not cut n1 from n2")
	}

	// From the attacker's node, through the victim's socket.
	for _, a2 := range []struct{ what, args string }{
		{"net fullmesh", "net fullmesh"},
		{"net exec --root", "net exec --root n1 -- true"},
		{"events", "events --json"},
	} {
		res := a.exec(t, "evil", "sh", "-c", "NSRUN_CONTROL="+ctl+" timeout 5 nsrun "+a2.args)
		if res.Code == 0 || !strings.Contains(res.Stderr, "refused") {
			t.Errorf("%s from a node of another run: exit %d, %q %q; want it refused", a2.what, res.Code, res.Stdout, res.Stderr)
		}
	}
	if reaches() {
		t.Error("n1 reaches n2 after the attacks: a node of another run healed the cut")
	}
	if show := victim("net", "show", "--run", id); !strings.Contains(show.Stdout, "cut off: n1") {
		t.Errorf("net show of the victim run after the attacks: %q, want the cut of n1", show.Stdout)
	}
	// The user on the host still has every verb.
	if r := victim("net", "exec", "--run", id, "--root", "n2", "--", "true"); r.Code != 0 {
		t.Errorf("net exec --root from the host: exit %d %s", r.Code, r.Stderr)
	}
}

// TestNodeCannotMoveRunFolders attacks the folder of its own run from a
// default node. The node sees that folder covered, but the folders above
// it are the user's (~/.cache of the fallback runtime folder, a
// folder given as XDG_RUNTIME_DIR), and the node runs as the user: it
// used to rename one aside, which moved the run's folder with it on the
// host, and could then put a folder of its own (with a socket of its
// own) where `nsrun net --run ID` looks, answering the cuts meant for it
// with a fake "applied".
func TestNodeCannotMoveRunFolders(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	home := userDir(t, u, "home")
	rt := filepath.Join(home, "rt")
	if err := os.Mkdir(rt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(rt, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	id, nsrun := runElsewhere(t, u, rt, evilYAML, "the run")
	moved := filepath.Join(home, "moved")
	t.Cleanup(func() {
		// Put back what an attack that worked moved, so the run can end.
		if _, err := os.Stat(rt); os.IsNotExist(err) {
			os.Rename(moved, rt)
		}
	})
	runDir := filepath.Join(rt, "nsrun-runs", "runs", id)
	if _, err := os.Stat(filepath.Join(runDir, "ctl")); err != nil {
		t.Fatalf("the run's control socket: %v", err)
	}
	for _, a := range []struct{ what, script string }{
		{"rename the runtime folder", "mv " + rt + " " + moved},
		{"rename nsrun-runs", "mv " + rt + "/nsrun-runs " + moved + "2"},
		{"remove the runtime folder", "rm -rf " + rt},
	} {
		res := nsrun("net", "exec", "--run", id, "evil", "--", "sh", "-c", a.script)
		if res.Code == 0 {
			t.Errorf("%s from a default node: exit 0 %q; want it refused", a.what, res.Stderr)
		}
		if _, err := os.Stat(filepath.Join(runDir, "ctl")); err != nil {
			t.Fatalf("after %q from a default node, the run's socket is not where it was: %v", a.script, err)
		}
	}
	if r := nsrun("net", "isolate", "--run", id, "evil"); r.Code != 0 || !strings.Contains(r.Stdout, "cut off: evil") {
		t.Errorf("isolate evil after the attacks: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
}

// fakeSupervisor is a control socket that answers every request with a
// cut "applied": what a node would serve in place of its run's.
const fakeSupervisor = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
while True:
    c, _ = s.accept()
    req = json.loads(c.recv(65536).split(b"\n")[0])
    net = {"partition": {"verb": "isolate", "args": ["n1"], "clusters": [["n2"]]}, "blocked": None,
        "faults": {}, "latency": {}, "nodes": {"n1": {"addr": "172.18.0.1"}, "n2": {"addr": "172.18.0.2"}}}
    c.sendall((json.dumps({"version": req.get("version"), "done": True, "exit_code": 0,
        "output": "isolate applied: cut off: n1", "net": net}) + "\n").encode())
    c.close()
`

// TestNodeCannotImpersonateARun attacks the user on the host from a
// default node: it moves another run's folder aside (that folder was
// not hidden from it: made later, under another XDG_RUNTIME_DIR) and
// serves a folder of its own in its place, with a held lock, the run's
// info.json and a control socket that answers every cut with "applied".
// nsrun on the host must see that the socket is not the run's supervisor
// and refuse it, rather than report a cut that never happened.
func TestNodeCannotImpersonateARun(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	a := startRun(t, u, evilYAML, "evil  | listening")
	xdg := userDir(t, u, "xdg")
	id, victim := runElsewhere(t, u, xdg, victimYAML, "the victim run")
	runDir := filepath.Join(xdg, "nsrun-runs", "runs", id)
	t.Cleanup(func() {
		if _, err := os.Stat(runDir + ".real"); err == nil {
			os.RemoveAll(runDir)
			os.Rename(runDir+".real", runDir)
		}
	})
	if err := os.WriteFile(filepath.Join(xdg, "fake.py"), []byte(fakeSupervisor), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `set -e; B=` + runDir + `; mv $B $B.real; mkdir -m 700 $B; cp $B.real/info.json $B/; : > $B/lock
setsid flock $B/lock python3 ` + filepath.Join(xdg, "fake.py") + ` $B/ctl </dev/null >/dev/null 2>&1 &
for i in $(seq 50); do test -S $B/ctl && exit 0; sleep 0.1; done; exit 1`
	if res := a.exec(t, "evil", "sh", "-c", script); res.Code != 0 {
		t.Fatalf("the node's fake run folder: exit %d %s %s", res.Code, res.Stdout, res.Stderr)
	}
	r := victim("net", "isolate", "--run", id, "n1")
	if r.Code == 0 || !strings.Contains(r.Stderr, "not the supervisor of run") {
		t.Errorf("isolate n1 through the node's fake socket: exit %d %q %q; want it refused as not the run's supervisor", r.Code, r.Stdout, r.Stderr)
	}
}
