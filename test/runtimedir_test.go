package test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
