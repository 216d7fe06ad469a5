package test

import (
	"context"
	"debug/elf"
	"encoding/json"
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

// containerCheck runs inside the container (busybox sh): nsrun -- true, a
// 3-node nsrun up with an isolate and a heal, a node paused and resumed,
// stopped and started, each checked by connectivity, and a SIGKILL of
// nsrun up that must leave no process behind.
const containerCheck = `#!/bin/sh
set -u
fail() { echo "FAIL: $*"; exit 1; }
nsrun --isolated -- true 2>/tmp/true.err || { cat /tmp/true.err; fail "nsrun -- true: exit $?"; }
echo "notices: $(grep -c '^nsrun: here ' /tmp/true.err)"
nsrun up --isolated -f /etc/nsrun-test/net.yaml >/tmp/up.log 2>&1 &
up=$!
reach() { nsrun net exec --run "$run" "$1" -- timeout 3 nc -w 2 "$2" 9000 2>/dev/null | grep -q hi; }
run=
for i in $(seq 1 100); do
  run=$(nsrun ls 2>/dev/null | awk 'NR==2{print $1}')
  [ -n "$run" ] && reach n1 n2 && break
  sleep 0.1
done
[ -n "$run" ] || { cat /tmp/up.log; fail "no run"; }
reach n1 n2 || fail "n1 cannot reach n2 before isolate"
reach n1 n3 || fail "n1 cannot reach n3 before isolate"
nsrun net isolate --run "$run" n1 >/dev/null || fail "isolate"
reach n1 n2 && fail "n1 reaches n2 while isolated"
reach n3 n1 && fail "n3 reaches n1 while isolated"
reach n2 n3 || fail "n2 cannot reach n3 while n1 is isolated"
nsrun net fullmesh --run "$run" >/dev/null || fail "fullmesh"
reach n1 n2 || fail "n1 cannot reach n2 after heal"
reach n3 n1 || fail "n3 cannot reach n1 after heal"
nsrun node pause --run "$run" n3 >/dev/null || fail "node pause"
reach n1 n3 && fail "paused n3 answers"
nsrun node resume --run "$run" n3 >/dev/null || fail "node resume"
reach n1 n3 || fail "n3 does not answer after resume"
nsrun node stop --run "$run" n2 >/dev/null || fail "node stop"
reach n1 n2 && fail "stopped n2 answers"
nsrun node start --run "$run" n2 >/dev/null || fail "node start"
for i in $(seq 1 50); do reach n1 n2 && break; sleep 0.1; done
reach n1 n2 || fail "n2 does not answer after start"
kill -KILL $up
# A node with control: true acts on its run: the supervisor finds the
# caller's node by its pid, which the container's /proc shows as another.
nsrun up --isolated -f /etc/nsrun-test/ctl.yaml --exit-code-from ctl >/tmp/ctl.log 2>&1 || { cat /tmp/ctl.log; fail "a control node could not isolate n2"; }
grep -q "cut off: n2" /tmp/ctl.log || { cat /tmp/ctl.log; fail "no isolate from the control node"; }
left=x
for i in $(seq 1 50); do
  left=$(ps -o comm | grep -c -e '^nsrun' -e '^nc$')
  [ "$left" = 0 ] && break
  sleep 0.1
done
[ "$left" = 0 ] || { ps -o pid,args; fail "processes left after SIGKILL of nsrun"; }
echo "PASS uid $(id -u)"
`

const containerCtl = `nodes:
  ctl: {ip: 172.18.0.9, control: true, command: "sh -c 'nsrun net isolate n2 && nsrun net show'"}
  n2: {ip: 172.18.0.2, command: "sleep 30"}
`

const containerNet = `nodes:
  n1: {ip: 172.18.0.1, command: "nc -ll -p 9000 -e echo hi"}
  n2: {ip: 172.18.0.2, command: "nc -ll -p 9000 -e echo hi"}
  n3: {ip: 172.18.0.3, command: "nc -ll -p 9000 -e echo hi"}
`

// TestRootlessPodmanContainer runs nsrun in a default rootless podman
// container (the test user's), as the container's root and as a non-root
// user: the image is made from a local root filesystem holding only the
// static nsrun and static busybox (no registry is reachable).
func TestRootlessPodmanContainer(t *testing.T) {
	requireRoot(t)
	u := unprivileged(t)
	podman, err := exec.LookPath("podman")
	need(t, err == nil, "podman is not installed (apt-get install podman uidmap runc)")
	_, err = exec.LookPath("runc")
	need(t, err == nil, "runc is not installed (apt-get install runc)")
	busybox, err := exec.LookPath("busybox")
	need(t, err == nil && static(busybox), "a static busybox is not installed (apt-get install busybox-static)")

	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // the test user's podman reads and enters it
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc/nsrun-test", "proc", "sys", "dev", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	copyFile(t, busybox, filepath.Join(root, "bin/busybox"), 0o755)
	copyFile(t, filepath.Join(binDir, "nsrun"), filepath.Join(root, "bin/nsrun"), 0o755)
	// Under make e2e-race, nsrun is built with -race, which links it
	// dynamically: the image then also holds its loader and libraries,
	// at the paths the binary names.
	if !static(filepath.Join(binDir, "nsrun")) {
		for _, lib := range sharedLibs(t, filepath.Join(binDir, "nsrun")) {
			if err := os.MkdirAll(filepath.Join(root, filepath.Dir(lib)), 0o755); err != nil {
				t.Fatal(err)
			}
			copyFile(t, lib, filepath.Join(root, lib), 0o755)
		}
	}
	for _, a := range []string{"sh", "true", "timeout", "ps", "grep", "awk", "seq", "sleep", "kill", "cat", "id", "nc", "echo", "hostname"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range map[string]string{
		"etc/passwd":              "root:x:0:0::/root:/bin/sh\nu:x:1000:1000::/tmp:/bin/sh\n",
		"etc/group":               "root:x:0:\nu:x:1000:\n",
		"etc/nsrun-test/check.sh": containerCheck,
		"etc/nsrun-test/net.yaml": containerNet,
		"etc/nsrun-test/ctl.yaml": containerCtl,
	} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tarball := filepath.Join(dir, "rootfs.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	_ = os.Chmod(tarball, 0o644)

	// Rootless podman wants a runtime folder of the user's. Short: podman
	// refuses a --runroot over 50 characters, and one it takes from a
	// longer XDG_RUNTIME_DIR unchecked (a t.TempDir's: 61) makes every
	// podman run --rm wait 20 s after the container ends, which once
	// starved the subtests of a shared deadline.
	xdg, err := os.MkdirTemp("", "nsrun-pod")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(xdg) })
	if err := os.Chown(xdg, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	image := fmt.Sprintf("localhost/nsrun-e2e-%d:latest", os.Getpid())
	pod := func(ctx context.Context, args ...string) *exec.Cmd {
		// Storage and state of this test's own, in its folder: nothing
		// stays in the user's home, nothing from earlier runs is used.
		cmd := u.command(ctx, podman, append([]string{"--runtime", "runc", "--cgroup-manager", "cgroupfs",
			"--root", filepath.Join(xdg, "storage"), "--runroot", filepath.Join(xdg, "run"), "--tmpdir", filepath.Join(xdg, "tmp")}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(cmd.Env, "XDG_RUNTIME_DIR="+xdg)
		return cmd
	}
	// Each podman call below has a deadline of its own (the import, and
	// every subtest), so that one slow call cannot starve the others.
	deadline := func(t *testing.T, d time.Duration) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		t.Cleanup(cancel)
		return ctx
	}
	if r := run(t, pod(deadline(t, 2*time.Minute), "import", tarball, image)); r.Code != 0 {
		t.Fatalf("podman import: exit %d: %s", r.Code, r.Stderr)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = pod(ctx, "rmi", "-f", image).Run()
		// Rootless podman leaves a pause process holding its user
		// namespace; this test's runtime folder names it.
		if b, err := os.ReadFile(filepath.Join(xdg, "tmp", "pause.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	seccomp := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// What docker's default profile does to a container without
	// CAP_SYS_ADMIN: no new user namespace (clone3 answers ENOSYS so
	// that callers fall back to clone, whose flags it can see).
	refusing := seccomp("refusing.json", `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
 {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
 {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
  "args": [{"index": 0, "value": 268435456, "valueTwo": 268435456, "op": "SCMP_CMP_MASKED_EQ"}]},
 {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}`)
	shipped, err := os.ReadFile("../contrib/seccomp/nsrun.json")
	if err != nil {
		t.Fatal(err)
	}
	ours := seccomp("nsrun.json", string(shipped))
	// inPod runs argv in a fresh container of the image, within the
	// calling subtest's deadline.
	inPod := func(t *testing.T, ctx context.Context, opts []string, argv ...string) result {
		t.Helper()
		args := append([]string{"run", "--rm", "--network", "none"}, opts...)
		return run(t, pod(ctx, append(append(args, image), argv...)...))
	}
	t.Run("doctor in a default container", func(t *testing.T) {
		ctx := deadline(t, time.Minute)
		r := inPod(t, ctx, []string{"--user", "1000:1000"}, "nsrun", "doctor")
		for _, want := range []string{
			"ok    user namespaces:", "(under a seccomp filter: a container)",
			"note  /proc: no fresh /proc can be mounted", "unmask=ALL",
			"note  hostname: sethostname is refused", "seccomp=contrib/seccomp/nsrun.json",
			"note  /dev/net/tun: there is no /dev/net/tun", "note  helper:", "runs work here",
		} {
			if r.Code != 0 || !strings.Contains(r.Stdout, want) {
				t.Errorf("nsrun doctor: exit %d, want 0 and %q in:\n%s%s", r.Code, want, r.Stdout, r.Stderr)
			}
		}
	})
	t.Run("doctor and nsrun where seccomp refuses user namespaces", func(t *testing.T) {
		ctx := deadline(t, time.Minute)
		r := inPod(t, ctx, []string{"--security-opt", "seccomp=" + refusing}, "nsrun", "doctor")
		if r.Code != 1 || !strings.Contains(r.Stdout, "FAIL  user namespaces: the container's seccomp profile refuses user namespaces") ||
			!strings.Contains(r.Stdout, "fix: docker run --security-opt seccomp=contrib/seccomp/nsrun.json") {
			t.Errorf("nsrun doctor: exit %d, want 1 and the seccomp finding:\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		r = inPod(t, ctx, []string{"--security-opt", "seccomp=" + refusing}, "nsrun", "--isolated", "--", "true")
		if r.Code != 125 || !strings.Contains(r.Stderr, "seccomp profile refuses user namespaces") || !strings.Contains(r.Stderr, "seccomp=contrib/seccomp/nsrun.json") {
			t.Errorf("nsrun -- true: exit %d, want 125 and the seccomp fix:\n%s", r.Code, r.Stderr)
		}
	})
	t.Run("the shipped seccomp profile", func(t *testing.T) {
		// podman accepts it, and with it nodes get their hostnames.
		ctx := deadline(t, time.Minute)
		r := inPod(t, ctx, []string{"--user", "1000:1000", "--security-opt", "seccomp=" + ours}, "nsrun", "--isolated", "--hostname", "web", "--", "hostname")
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != "web" {
			t.Errorf("nsrun --hostname web -- hostname: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		r = inPod(t, ctx, []string{"--security-opt", "seccomp=" + ours}, "nsrun", "doctor")
		if r.Code != 0 || !strings.Contains(r.Stdout, "ok    hostname:") {
			t.Errorf("nsrun doctor: exit %d:\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
	})
	for _, user := range []string{"0:0", "1000:1000"} {
		t.Run("user "+user, func(t *testing.T) {
			r := inPod(t, deadline(t, time.Minute), []string{"--user", user}, "/etc/nsrun-test/check.sh")
			if r.Code != 0 || !strings.Contains(r.Stdout, "PASS") {
				t.Fatalf("in the container: exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
			}
			// Here a fresh /proc and sethostname are refused: nsrun says
			// so once per run.
			if !strings.Contains(r.Stdout, "notices: 1") {
				t.Errorf("nsrun -- true should say once what differs in this container:\n%s", r.Stdout)
			}
		})
	}
}

// TestDoctorOnHost: on this machine, as the test user, nsrun doctor
// finds user namespaces, /proc and sethostname working, and says how the
// qdiscs, /dev/net/tun and the helper are (their unit tests in package
// doctor cover each finding).
func TestDoctorOnHost(t *testing.T) {
	u := unprivileged(t)
	r := run(t, u.nsrun(context.Background(), "doctor"))
	for _, want := range []string{"ok    user namespaces: a user namespace", "ok    /proc:", "ok    hostname:", "qdisc netem:", "ok    qdisc tbf:", "/dev/net/tun:", "helper:", "runs work here"} {
		if r.Code != 0 || !strings.Contains(r.Stdout, want) {
			t.Errorf("nsrun doctor: exit %d, want 0 and %q in:\n%s%s", r.Code, want, r.Stdout, r.Stderr)
		}
	}
}

// TestProfilesParse: the shipped AppArmor profile parses with
// apparmor_parser -Q (on AppArmor 3, which knows no userns rule, without
// that rule), and the seccomp profile is JSON (podman accepts it:
// TestRootlessPodmanContainer).
func TestProfilesParse(t *testing.T) {
	parser, err := exec.LookPath("apparmor_parser")
	need(t, err == nil, "apparmor_parser is not installed (apt-get install apparmor)")
	profile, err := os.ReadFile("../contrib/apparmor/nsrun")
	if err != nil {
		t.Fatal(err)
	}
	text := string(profile)
	out, _ := exec.Command(parser, "--version").Output()
	if strings.Contains(string(out), "version 3.") || strings.Contains(string(out), "version 2.") {
		t.Logf("%s: no userns rule and ABI 4.0 before AppArmor 4; parsing the rest", strings.SplitN(string(out), "\n", 2)[0])
		text = strings.Replace(text, "abi <abi/4.0>,", "abi <abi/3.0>,", 1)
		text = strings.Replace(text, "  userns,\n", "", 1)
	}
	path := filepath.Join(t.TempDir(), "nsrun")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(parser, "-Q", path).CombinedOutput(); err != nil {
		t.Errorf("apparmor_parser -Q: %v\n%s", err, out)
	}
	var v any
	b, err := os.ReadFile("../contrib/seccomp/nsrun.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Errorf("contrib/seccomp/nsrun.json: %v", err)
	}
}

// static says whether the ELF file at path has no program interpreter.
func static(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// copyFile copies src to dst with mode.
// sharedLibs lists the loader and the libraries a dynamically linked
// binary loads, as absolute paths (from ldd).
func sharedLibs(t *testing.T, bin string) []string {
	t.Helper()
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", bin, err)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				libs = append(libs, f)
			}
		}
	}
	if len(libs) == 0 {
		t.Fatalf("ldd %s names no library:\n%s", bin, out)
	}
	return libs
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}
