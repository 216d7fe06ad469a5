package test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// setuidCopy copies the file src to binDir/name, owned by root with mode
// (which carries the setuid or setgid bit), removed when the test ends.
func setuidCopy(t *testing.T, src, name string, mode os.FileMode) string {
	t.Helper()
	dst := filepath.Join(binDir, name)
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dst) })
	_, err = io.Copy(out, in)
	if err := errorsJoin(err, out.Close(), os.Chown(dst, 0, 0), os.Chmod(dst, mode)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func errorsJoin(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// gatecheck builds ./gatecheck, a program that links nstest, once.
func gatecheck(t *testing.T) string {
	t.Helper()
	gate := filepath.Join(binDir, "gatecheck")
	if _, err := os.Stat(gate); err != nil {
		cmd := exec.Command("go", "build", "-o", gate, "./gatecheck")
		cmd.Env = append(os.Environ(), "GOPROXY=off", "GOSUMDB=off")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build ./gatecheck: %v\n%s", err, b)
		}
	}
	return gate
}

// TestSetuidNotALauncher: the attack of issue 20 item 3. A setuid-root
// tool that merely links nstest, run by a user with NSRUN_AS_NSRUN=1,
// became nsrun's launcher with root's effective uid: it carried out
// `--isolated --root -- CMD` (the review went on to read /etc/shadow from
// there); nstest now carries out only `up -f FILE`, whose nodes run the
// same command. The same copy without the setuid bit does act
// as nsrun (the attack's way in is real); the setuid-root copy (and a
// setgid-root one) runs as itself, and CMD never runs. A setuid-root copy
// of nsrun itself refuses to start a run.
func TestSetuidNotALauncher(t *testing.T) {
	u := unprivileged(t)
	requireRoot(t)
	userNamespaces(t, u)
	var fs unix.Statfs_t
	if err := unix.Statfs(binDir, &fs); err != nil {
		t.Fatal(err)
	}
	need(t, fs.Flags&unix.ST_NOSUID == 0, binDir+" is on a nosuid filesystem: a setuid copy cannot be tried there")
	gate := gatecheck(t)
	// Where the command would leave its mark: a folder only root may write.
	marks := filepath.Join(binDir, fmt.Sprintf("rootonly-%d", os.Getpid()))
	if err := os.Mkdir(marks, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(marks) })
	script := `id -u; if head -c1 /etc/shadow >/dev/null 2>&1; then echo READ-SHADOW; fi; touch "$1/owned" && echo WROTE`
	// nstest's gate carries out only the run nstest.Start asks for, `up
	// -f FILE ...` (since f3da8cd): the attack's command is a node's.
	file := filepath.Join(marks+"-file", "nsrun.yaml")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(file)) })
	if err := os.WriteFile(filepath.Join(filepath.Dir(file), "attack.sh"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("nodes:\n  n: {ip: 172.18.0.1, command: \"sh %s %s\"}\n", filepath.Join(filepath.Dir(file), "attack.sh"), marks)
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	attack := func(bin string) result {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := u.command(ctx, bin, "up", "-f", file, "--timeout", "2", "--isolated")
		cmd.Env = append(cmd.Env, "NSRUN_AS_NSRUN=1", "NSTEST_RUN_ID=5e7c0de1")
		return run(t, cmd)
	}

	plain := setuidCopy(t, gate, "gatecheck-plain", 0o755)
	if r := attack(plain); !strings.Contains(r.Stdout+r.Stderr, fmt.Sprintf("| %d", u.UID)) || strings.Contains(r.Stdout, "ran as itself") {
		t.Fatalf("the copy without setuid, with NSRUN_AS_NSRUN=1: exit %d %q %q; want a launcher running the node's command", r.Code, r.Stdout, r.Stderr)
	}
	for _, c := range []struct {
		name string
		mode os.FileMode
	}{{"gatecheck-setuid", 0o755 | os.ModeSetuid}, {"gatecheck-setgid", 0o755 | os.ModeSetgid}} {
		bin := setuidCopy(t, gate, c.name, c.mode)
		r := attack(bin)
		if r.Code != 0 || r.Stdout != "ran as itself\n" {
			t.Errorf("%s with NSRUN_AS_NSRUN=1: exit %d %q %q; want it to run as itself only", c.name, r.Code, r.Stdout, r.Stderr)
		}
		if _, err := os.Stat(filepath.Join(marks, "owned")); err == nil {
			t.Errorf("%s: the command wrote into a folder of root's", c.name)
			os.Remove(filepath.Join(marks, "owned"))
		}
	}

	nsrun := setuidCopy(t, filepath.Join(binDir, "nsrun"), "nsrun-setuid", 0o755|os.ModeSetuid)
	r := attack(nsrun)
	if r.Code != 125 || r.Stdout != "" || !strings.Contains(r.Stderr, "setuid") {
		t.Errorf("setuid-root nsrun: exit %d %q %q; want 125 and a refusal naming setuid", r.Code, r.Stdout, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(marks, "owned")); err == nil {
		t.Error("setuid-root nsrun: the command wrote into a folder of root's")
	}
}

// TestSetuidNotANodeInit: a node's init is nsrun (or a test binary that
// links nstest) run with a marker as argv[1]; it reads a path and an argv
// from fd 3 and execs them, before any Go runs. A user who runs a
// setuid-root copy that way, as the starter of an exec (no PID 1 needed),
// would get the path exec'd as root. Without the setuid bit the attack's
// way in is real: the program runs, as the user. Setuid or setgid copies
// of nsrun and of the test binary refuse (AT_SECURE), start nothing and
// write nothing.
func TestSetuidNotANodeInit(t *testing.T) {
	u := unprivileged(t)
	requireRoot(t)
	var fs unix.Statfs_t
	if err := unix.Statfs(binDir, &fs); err != nil {
		t.Fatal(err)
	}
	need(t, fs.Flags&unix.ST_NOSUID == 0, binDir+" is on a nosuid filesystem: a setuid copy cannot be tried there")
	gate := gatecheck(t)
	marks := filepath.Join(binDir, fmt.Sprintf("rootonly-init-%d", os.Getpid()))
	if err := os.Mkdir(marks, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(marks) })
	// What the init reads on fd 3: path, folder, uid, gid, the number of
	// argv's words, argv, the environment (none).
	config := filepath.Join(binDir, fmt.Sprintf("init-config-%d", os.Getpid()))
	t.Cleanup(func() { os.Remove(config) })
	// touch, not a shell: a shell drops a setuid's privileges itself.
	fields := []string{"/usr/bin/touch", "", "0", "0", "2", "touch", filepath.Join(marks, "owned")}
	if err := os.WriteFile(config, []byte(strings.Join(fields, "\x00")+"\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	const execStarter = "16" // launch.InitExec: no PID 1 needed, no /proc mount
	attack := func(bin string) result {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := u.command(ctx, "sh", "-c", `exec "$0" __nsrun_node_init `+execStarter+` 3<"$1" 4>&2`, bin, config)
		return run(t, cmd)
	}
	plain := setuidCopy(t, filepath.Join(binDir, "nsrun"), "nsrun-plain-init", 0o755)
	if r := attack(plain); r.Code != 1 || !strings.Contains(r.Stderr, `{"pid":`) || !strings.Contains(r.Stderr, "Permission denied") {
		t.Fatalf("nsrun without setuid as a node's init: exit %d %q %q; want touch run as the user, and refused (1)", r.Code, r.Stdout, r.Stderr)
	}
	for _, c := range []struct {
		src, name string
		mode      os.FileMode
	}{
		{filepath.Join(binDir, "nsrun"), "nsrun-setuid-init", 0o755 | os.ModeSetuid},
		{filepath.Join(binDir, "nsrun"), "nsrun-setgid-init", 0o755 | os.ModeSetgid},
		{gate, "gatecheck-setuid-init", 0o755 | os.ModeSetuid},
	} {
		r := attack(setuidCopy(t, c.src, c.name, c.mode))
		if r.Code != 125 || r.Stdout != "" || !strings.Contains(r.Stderr, "setuid") {
			t.Errorf("%s as a node's init: exit %d %q %q; want 125, nothing run, a refusal naming setuid", c.name, r.Code, r.Stdout, r.Stderr)
		}
		if _, err := os.Stat(filepath.Join(marks, "owned")); err == nil {
			t.Errorf("%s: the command wrote into a folder of root's", c.name)
			os.Remove(filepath.Join(marks, "owned"))
		}
	}
}
