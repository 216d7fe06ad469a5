// Package test holds nsrun's end-to-end tests. They build the real binaries
// and run them as an unprivileged user, exactly as a user would: the test
// process itself may be root (to verify with ip/nft and to run
// nsrun-helper install), but nsrun always runs as the user named by
// NSRUN_TEST_USER, or as the caller when that is not root.
//
// A test that cannot get what it needs (root, a test user, unprivileged user
// namespaces) fails when CI=true and skips, saying why, otherwise.
package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binDir holds the binaries built for this test run, readable by everyone.
var binDir string

// raceDir, when the tests run against an nsrun built with -race
// (NSRUN_TEST_RACE=1, `make e2e-race`), is where every nsrun process of the
// test user writes its race reports (GORACE log_path): any report there
// fails the test that was running, and the whole run.
var raceDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nsrun-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	if os.Getenv("NSRUN_TEST_RACE") == "1" {
		raceDir = filepath.Join(dir, "race")
		err := os.Mkdir(raceDir, 0o777)
		if err == nil {
			err = os.Chmod(raceDir, 0o1777) // any test user may write here
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "race report folder:", err)
			os.Exit(1)
		}
	}
	code := 1
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
	} else {
		code = m.Run()
	}
	if reports := raceReports(); len(reports) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: nsrun reported data races:\n%s", strings.Join(reports, "\n"))
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// raceReports returns the race reports written so far and removes them.
func raceReports() []string {
	if raceDir == "" {
		return nil
	}
	var out []string
	ents, _ := os.ReadDir(raceDir)
	for _, e := range ents {
		path := filepath.Join(raceDir, e.Name())
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			out = append(out, e.Name()+":\n"+string(b))
		}
		_ = os.Remove(path)
	}
	return out
}

// checkRaces fails t if nsrun reported a data race while t ran.
func checkRaces(t *testing.T) {
	if reports := raceReports(); len(reports) > 0 {
		t.Errorf("nsrun reported data races:\n%s", strings.Join(reports, "\n"))
	}
}

// staticBuild are the build flags of nsrun in the Makefile: a static
// binary, which starts faster.
var staticBuild = []string{"-tags", "netgo,osusergo", "-ldflags", "-linkmode external -extldflags -static"}

func build(dir string) error {
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	for _, pkg := range []string{"nsrun", "nsrun-helper", "nsrun-capture", "probe"} {
		src := "../cmd/" + pkg
		if pkg == "probe" {
			src = "./probe"
		}
		args := []string{"build", "-o", filepath.Join(dir, pkg)}
		switch {
		case pkg == "nsrun" && raceDir != "":
			args = append(args, "-race") // dynamically linked: -race needs libc's loader
		case pkg == "nsrun":
			args = append(args, staticBuild...) // as the Makefile builds it
		}
		cmd := exec.Command("go", append(args, src)...)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s: %w", src, err)
		}
	}
	return nil
}

// inCI reports whether the tests run in CI, where nothing may be skipped.
func inCI() bool { return os.Getenv("CI") == "true" }

// need skips (outside CI) or fails (in CI) a test that cannot run here.
func need(t *testing.T, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if inCI() {
		t.Fatalf("cannot run in CI: %s", why)
	}
	t.Skipf("skipped: %s", why)
}

// testUser is the unprivileged user nsrun runs as.
type testUser struct {
	Name     string
	UID, GID int
	Home     string
}

func unprivileged(t *testing.T) testUser {
	t.Helper()
	if raceDir != "" {
		// Registered first, so it runs after the test's own clean-ups
		// (which stop its runs).
		t.Cleanup(func() { checkRaces(t) })
	}
	if os.Getuid() != 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		return testUser{Name: u.Username, UID: os.Getuid(), GID: os.Getgid(), Home: u.HomeDir}
	}
	name := os.Getenv("NSRUN_TEST_USER")
	need(t, name != "", "tests run as root: set NSRUN_TEST_USER to an unprivileged user for nsrun to run as")
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("NSRUN_TEST_USER=%s: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return testUser{Name: name, UID: uid, GID: gid, Home: u.HomeDir}
}

// requireRoot is for tests that must verify or set up as root.
func requireRoot(t *testing.T) {
	t.Helper()
	need(t, os.Getuid() == 0, "needs root to verify what nsrun did (run as root with NSRUN_TEST_USER set)")
}

// command builds a command that runs as the test user. Its environment is
// a clean login-like one, its folder a temporary one the user may enter.
func (u testUser) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = binDir
	cmd.Env = []string{
		"PATH=" + binDir + ":/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"HOME=" + u.Home,
		"USER=" + u.Name,
		"LANG=C",
	}
	if raceDir != "" {
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=50 log_path="+filepath.Join(raceDir, "race")) // the default 1s wait at exit slows every call
	}
	if os.Getuid() != 0 {
		cmd.Env = append(cmd.Env, "XDG_RUNTIME_DIR="+os.Getenv("XDG_RUNTIME_DIR"))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if os.Getuid() == 0 && u.UID != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: []uint32{}}
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// nsrun returns a command running the built nsrun as the test user.
func (u testUser) nsrun(ctx context.Context, args ...string) *exec.Cmd {
	return u.command(ctx, filepath.Join(binDir, "nsrun"), args...)
}

// result is what a finished command produced.
type result struct {
	Stdout, Stderr string
	Code           int
}

// run runs cmd to its end (at most a minute) and returns what it produced.
// dialTimeout is how long a probe waits for a TCP handshake before it
// calls the peer unreachable: long enough that a handshake on a loaded
// machine (two CPUs, a -race build beside it: seen to answer 900 ms late)
// is never taken for a cut, which a shorter one was.
const dialTimeout = "2s"

func run(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = exitCode(ee.ProcessState)
	} else if err != nil {
		t.Fatalf("%s: %v", strings.Join(cmd.Args, " "), err)
	}
	return result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

func exitCode(st *os.ProcessState) int {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

// nsrunOK runs nsrun with args as u and fails the test unless it exits 0.
func nsrunOK(t *testing.T, u testUser, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := run(t, u.nsrun(ctx, args...))
	if r.Code != 0 {
		t.Fatalf("nsrun %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// userNamespaces checks that u can create a user namespace at all.
func userNamespaces(t *testing.T, u testUser) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := run(t, u.command(ctx, "unshare", "-Urn", "true"))
	need(t, r.Code == 0, "unprivileged user namespaces are unavailable: "+r.Stderr)
}

// runtimeDir is where nsrun keeps u's run state when XDG_RUNTIME_DIR is unset.
func (u testUser) runtimeDirs() []string {
	out := []string{
		fmt.Sprintf("/run/user/%d/nsrun-runs", u.UID),
		filepath.Join(u.Home, ".cache", "nsrun-runs"), // runstate's fallback
		filepath.Join(os.TempDir(), fmt.Sprintf("nsrun-%d", u.UID)),
	}
	// The fallback in the user's own cache (package runstate), where
	// /run/user/UID is missing.
	if u.Home != "" {
		out = append(out, filepath.Join(u.Home, ".cache", "nsrun-runs"))
	}
	return out
}

// runDirs lists the run folders of u that exist now.
func (u testUser) runDirs() []string {
	var out []string
	for _, rt := range u.runtimeDirs() {
		ents, _ := os.ReadDir(filepath.Join(rt, "runs"))
		for _, e := range ents {
			out = append(out, filepath.Join(rt, "runs", e.Name()))
		}
	}
	return out
}

// processesOf lists pids of u whose command line is exactly cmdline
// (arguments joined by spaces).
func processesOf(u testUser, cmdline string) []int {
	return userProcesses(u, func(argv []string) bool { return strings.Join(argv, " ") == cmdline })
}

// nsrunProcesses lists u's processes running the nsrun under test: the
// launcher and the supervisor of each live run (both keep nsrun's command
// line).
func nsrunProcesses(u testUser) []int {
	return userProcesses(u, func(argv []string) bool { return argv[0] == filepath.Join(binDir, "nsrun") })
}

// userProcesses lists the pids of u's processes whose argv matches.
func userProcesses(u testUser, match func(argv []string) bool) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name(), &st) != nil || int(st.Uid) != u.UID {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"); match(argv) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// runProcesses follows the processes of one run. Every process nsrun
// starts for a run (supervisor, nodes, nsrun-capture, their daemons) lives
// in the run's own pid namespace, which the launcher creates for its one
// child, the supervisor; the launcher itself is the caller's child. So the
// processes a run left are exactly the live ones in that namespace, whoever
// else the test user runs (when the test user is the caller, that includes
// make, go test and this test binary). The namespace is held open by an fd,
// so its inode cannot be reused by a namespace created later.
type runProcesses struct {
	ns  *os.File
	ino uint64
}

// followRun finds the pid namespace of the run whose launcher is pid.
func followRun(t *testing.T, launcher int) *runProcesses {
	t.Helper()
	var sup int
	if !eventually(10*time.Second, func() bool { sup = firstChild(launcher); return sup > 0 }) {
		t.Fatalf("nsrun (pid %d) has no supervisor", launcher)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/pid", sup))
	if err != nil {
		t.Fatalf("open the run's pid namespace: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	var own syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/pid", &own); err != nil || own.Ino == st.Ino {
		t.Fatalf("pid %d (child of nsrun) is not in a pid namespace of its own: %v", sup, err)
	}
	return &runProcesses{ns: f, ino: st.Ino}
}

// firstChild returns a child of pid, or 0.
func firstChild(pid int) int {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		if f := strings.Fields(string(b)); len(f) > 0 {
			c, _ := strconv.Atoi(f[0])
			return c
		}
	}
	return 0
}

// live lists the run's processes that still run: zombies are not counted
// (this machine's PID 1 reaps orphans late), every other state is.
func (r *runProcesses) live() []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if !r.inRun(e.Name()) {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		i := bytes.LastIndexByte(b, ')')
		if err != nil || i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X' {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		out = append(out, e.Name()+" "+strings.ReplaceAll(strings.TrimRight(string(cmd), "\x00"), "\x00", " "))
	}
	return out
}

// nsGetParent is the ioctl NS_GET_PARENT, _IO(0xb7, 0x2): an fd of the
// parent of a pid namespace.
const nsGetParent = 0xb702

// inRun says whether process pid is in the run's pid namespace or in one
// nested in it (a node's own, under the node's init).
func (r *runProcesses) inRun(pid string) bool {
	f, err := os.Open("/proc/" + pid + "/ns/pid")
	if err != nil {
		return false
	}
	defer f.Close()
	fd := int(f.Fd())
	closeFd := func() {
		if fd != int(f.Fd()) {
			syscall.Close(fd)
		}
	}
	defer func() { closeFd() }()
	for range 32 {
		var st syscall.Stat_t
		if syscall.Fstat(fd, &st) != nil {
			return false
		}
		if st.Ino == r.ino {
			return true
		}
		parent, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), nsGetParent, 0)
		if errno != 0 {
			return false // the host's own namespace, or outside what we may see
		}
		closeFd()
		fd = int(parent)
	}
	return false
}

// eventually retries cond for up to d.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}
