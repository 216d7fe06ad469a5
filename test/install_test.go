package test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sudoPath is sudo's PATH (Debian's secure_path): no Go on it.
const sudoPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// nstestUse is a test of a module of the user's own that uses package
// nstest: a node serves, another dials it by name.
const nstestUse = `package mine

import (
	"context"
	"testing"
	"time"

	"github.com/nsrun/nsrun/nstest"
)

func TestTwoNodes(t *testing.T) {
	n := nstest.Start(t, "nodes:\n  a: {ip: 172.18.0.11}\n  b: {ip: 172.18.0.12}\n")
	ln, err := n.Node("b").Listen("tcp", ":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("hi from b"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := n.Node("a").DialContext(ctx, "tcp", "b:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64)
	k, _ := c.Read(buf)
	t.Logf("a read %q", buf[:k])
	if string(buf[:k]) != "hi from b" {
		t.Fatalf("a read %q", buf[:k])
	}
}
`

// TestInstallFromClone: on a clean clone owned by the user, sudo make
// install (as root, with sudo's PATH, which has no Go) refuses before a
// build and says to build first; after make build as the user it installs
// the binaries and the man page, builds nothing and leaves no root-owned
// file in the clone; the installed nsrun prints a semantic version and
// the clone's commit. go install from the clone works too, and a module
// of the user's uses nstest from the clone by a replace line and by a
// workspace. Modules come from the local module cache (GOPROXY=off).
func TestInstallFromClone(t *testing.T) {
	u := unprivileged(t)
	requireRoot(t) // sudo make install
	userNamespaces(t, u)
	tmp, err := os.MkdirTemp(binDir, "install-") // t.TempDir's parent is closed to the user
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("chmod", "-R", "u+w", tmp).Run() // the module cache is read-only
		os.RemoveAll(tmp)
	})
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	root := func(dir string, env []string, name string, args ...string) result {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir, cmd.Env = dir, env
		return run(t, cmd)
	}
	mustRoot := func(dir string, env []string, name string, args ...string) {
		t.Helper()
		if r := root(dir, env, name, args...); r.Code != 0 {
			t.Fatalf("%s %s: exit %d\n%s%s", name, strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
		}
	}
	clone := filepath.Join(tmp, "nsrun")
	mustRoot(tmp, os.Environ(), "git", "clone", "-q", repo, clone)
	// The module cache, from root's own download cache: no network.
	gomodcache, _ := exec.Command("go", "env", "GOMODCACHE").Output()
	mod := filepath.Join(tmp, "mod")
	mustRoot(clone, append(os.Environ(), "GOMODCACHE="+mod, "GOFLAGS=-mod=mod", "GOSUMDB=off",
		"GOPROXY=file://"+filepath.Join(strings.TrimSpace(string(gomodcache)), "cache", "download")), "go", "mod", "download")
	for _, d := range []string{"gocache", "gobin", "mine", "mine2"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustRoot(tmp, os.Environ(), "chown", "-R", fmt.Sprintf("%d:%d", u.UID, u.GID), clone, mod,
		filepath.Join(tmp, "gocache"), filepath.Join(tmp, "gobin"), filepath.Join(tmp, "mine"), filepath.Join(tmp, "mine2"))
	user := func(dir string, env []string, name string, args ...string) result {
		t.Helper()
		cmd := u.command(ctx, name, args...)
		cmd.Dir = dir
		for i, e := range cmd.Env {
			if p, ok := strings.CutPrefix(e, "PATH="); ok {
				cmd.Env[i] = "PATH=/usr/local/go/bin:" + p
			}
		}
		cmd.Env = append(append(cmd.Env, "GOMODCACHE="+mod, "GOCACHE="+filepath.Join(tmp, "gocache"),
			"GOPROXY=off", "GOSUMDB=off", "GOTOOLCHAIN=local"), env...)
		return run(t, cmd)
	}
	mustUser := func(dir string, env []string, name string, args ...string) result {
		t.Helper()
		r := user(dir, env, name, args...)
		if r.Code != 0 {
			t.Fatalf("as %s: %s %s: exit %d\n%s%s", u.Name, name, strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
		}
		return r
	}
	sudoEnv := []string{sudoPath, "HOME=/root", "LANG=C"}
	if r := root(clone, sudoEnv, "sh", "-c", "command -v go"); r.Code == 0 {
		t.Fatalf("sudo's PATH has go (%s): the test would prove nothing", r.Stdout)
	}
	prefix := filepath.Join(tmp, "prefix")

	// Before make build: refused, nothing built or installed.
	r := root(clone, sudoEnv, "make", "install", "PREFIX="+prefix)
	if r.Code == 0 || !strings.Contains(r.Stderr, "run make build first (as yourself, not with sudo), then sudo make install") {
		t.Errorf("sudo make install before make build: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if _, err := os.Stat(prefix); err == nil {
		t.Error("sudo make install before make build installed something")
	}

	mustUser(clone, []string{"GOFLAGS=-mod=mod"}, "make", "build")
	r = root(clone, sudoEnv, "make", "install", "PREFIX="+prefix)
	if r.Code != 0 || !strings.Contains(r.Stdout, "run once: sudo "+prefix+"/bin/nsrun-helper install") || strings.Contains(r.Stdout, "go build") {
		t.Fatalf("sudo make install: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
	head := strings.TrimSpace(mustUser(clone, nil, "git", "rev-parse", "--short=12", "HEAD").Stdout)
	for _, bin := range []string{"nsrun", "nsrun-helper"} {
		out := mustUser(tmp, nil, filepath.Join(prefix, "bin", bin), "--version").Stdout
		if !regexp.MustCompile(`^` + bin + ` [0-9]+\.[0-9]+\.[0-9]+ \(commit ` + head + `\)\n$`).MatchString(out) {
			t.Errorf("installed %s --version: %q; want a semantic version and commit %s", bin, out, head)
		}
	}
	if fi, err := os.Stat(filepath.Join(prefix, "bin", "nsrun-capture")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("nsrun-capture installed: %v %v", fi, err)
	}
	man, err := os.ReadFile(filepath.Join(prefix, "share", "man", "man1", "nsrun.1"))
	if err != nil || !strings.HasPrefix(string(man), ".TH NSRUN 1") || !strings.Contains(string(man), "Usage: nsrun logs") {
		t.Errorf("man page: %v, %.200q", err, man)
	}
	if r := root(tmp, sudoEnv, "man", "-l", filepath.Join(prefix, "share", "man", "man1", "nsrun.1")); r.Code != 0 || !strings.Contains(r.Stdout, "nsrun down [--run ID]") {
		t.Errorf("man -l nsrun.1: exit %d, %.300q %q", r.Code, r.Stdout, r.Stderr)
	}
	var rootOwned []string
	_ = filepath.WalkDir(clone, func(p string, d fs.DirEntry, err error) error {
		var st syscall.Stat_t
		if err == nil && syscall.Lstat(p, &st) == nil && st.Uid == 0 {
			rootOwned = append(rootOwned, p)
		}
		return nil
	})
	if len(rootOwned) > 0 {
		t.Errorf("root-owned files in the user's clone: %v", rootOwned)
	}

	// go install from the clone: the commit from Go's build info.
	gobin := filepath.Join(tmp, "gobin")
	mustUser(clone, []string{"GOBIN=" + gobin, "GOFLAGS=-mod=mod -buildvcs=true"}, "go", "install", "./cmd/...")
	if out := mustUser(tmp, nil, filepath.Join(gobin, "nsrun"), "--version").Stdout; !strings.Contains(out, "(commit "+head+")") {
		t.Errorf("go install's nsrun --version: %q; want commit %s", out, head)
	}
	if out := mustUser(tmp, nil, filepath.Join(gobin, "nsrun"), "--isolated", "--", "sh", "-c", "echo inside $NSRUN_RUN").Stdout; !strings.HasPrefix(out, "inside ") {
		t.Errorf("go install's nsrun -- CMD: %q", out)
	}

	// userModule writes module example.com/NAME, a test that uses
	// nstest, into the folder tmp/NAME and gives it to the user.
	userModule := func(name string) string {
		t.Helper()
		dir := filepath.Join(tmp, name)
		for file, content := range map[string]string{"go.mod": "module example.com/" + name + "\n\ngo 1.26\n", "mine_test.go": nstestUse} {
			if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		mustRoot(tmp, os.Environ(), "chown", "-R", fmt.Sprintf("%d:%d", u.UID, u.GID), dir)
		return dir
	}
	// nstest from the clone, by a replace line...
	mine := userModule("mine")
	mustUser(mine, nil, "go", "mod", "edit", "-require", "github.com/nsrun/nsrun@v0.0.0", "-replace", "github.com/nsrun/nsrun="+clone)
	// -e: the tests of nsrun's own dependencies need modules that are in
	// no local cache (with the network, go mod tidy fetches them).
	mustUser(mine, []string{"GOFLAGS=-mod=mod"}, "go", "mod", "tidy", "-e")
	if out := mustUser(mine, []string{"GOFLAGS=-mod=mod", "CI=true"}, "go", "test", "-count=1", "-v", ".").Stdout; !strings.Contains(out, `a read "hi from b"`) {
		t.Errorf("nstest by replace: %s", out)
	}
	// ... and by a workspace.
	mine2 := userModule("mine2")
	mustUser(mine2, nil, "go", "work", "init", ".", clone)
	if out := mustUser(mine2, []string{"CI=true"}, "go", "test", "-count=1", "-v", ".").Stdout; !strings.Contains(out, `a read "hi from b"`) {
		t.Errorf("nstest by go work: %s", out)
	}
}
