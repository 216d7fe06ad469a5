package test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// goTestBinary builds the test binary of the package in dir (a folder of
// this module, or of a module of its own such as an example) into binDir.
func goTestBinary(t *testing.T, dir, name string) string {
	t.Helper()
	out := filepath.Join(binDir, name)
	args := []string{"test", "-c", "-o", out}
	if raceDir != "" {
		args = append(args, "-race") // its supervisors are the test binary: race reports as nsrun's
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOSUMDB=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go test -c in %s: %v\n%s", dir, err, b)
	}
	return out
}

// runTestBinary runs a Go test binary as u, exactly as `go test` would as
// that user, and fails with its output unless it passes.
func runTestBinary(t *testing.T, u testUser, bin string, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := u.command(ctx, bin, "-test.v", "-test.count=1", "-test.timeout=4m")
	cmd.Env = append(append(cmd.Env, "CI="+os.Getenv("CI")), env...)
	r := run(t, cmd)
	if r.Code != 0 {
		t.Fatalf("%s as %s: exit %d\n%s\n%s", filepath.Base(bin), u.Name, r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("%s as %s:\n%s", filepath.Base(bin), u.Name, r.Stdout)
}

// TestNstest runs package nstest's own tests (and examples) as the
// unprivileged user: plain `go test`, no root, no helper, no nsrun binary.
func TestNstest(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	runTestBinary(t, u, goTestBinary(t, "../nstest", "nstest.test"))
	if left := u.runDirs(); len(left) != 0 {
		t.Errorf("run folders left after nstest's tests: %v", left)
	}
}

// TestNstestWithHelper runs package nstest's tests as a user who has
// nsrun-helper installed: the test binary's runs join the user's gateway
// and have an uplink, which TestUplink dials to a server on the host's
// nsrun address.
func TestNstestWithHelper(t *testing.T) {
	u := unprivileged(t)
	rec := installFor(t, u, testResolver(t))
	server := rec.HostAddr.Addr().String() + ":7004"
	hostServer(t, "listen", server)
	runTestBinary(t, u, goTestBinary(t, "../nstest", "nstest.test"), "NSTEST_HOST_SERVER="+server)
}

// TestNstestExample runs the tests of examples/kvstore, a module of its
// own that tests a small replicated store under partitions with nstest,
// as the unprivileged user.
func TestNstestExample(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	runTestBinary(t, u, goTestBinary(t, "../examples/kvstore", "kvstore.test"))
}
