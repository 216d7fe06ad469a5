package test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUpInterpolation: ${VAR} in the file is filled from the caller's
// environment, then from .env beside the file, shown resolved by
// --dry-run and seen by the node; env_file's variables reach the node
// below environment:'s; a required variable left unset is refused at its
// file:line:col, before anything starts.
func TestUpInterpolation(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	dir := project(t, map[string]string{
		"nsrun.yaml": `
nodes:
  a:
    ip: ${A_IP}
    env_file: [web.env]
    environment: {OVER: from-file}
    command: ["sh", "-c", "echo greeting=${GREETING:-hi} mode=$$MODE over=$$OVER who=${WHO:?set WHO to a name}"]
`,
		".env":    "A_IP=172.18.0.7\nWHO=dotenv\n",
		"web.env": "# comment\nMODE=fast\nOVER=from-env-file\n",
	})
	upEnv := func(extra []string, args ...string) result {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := u.nsrun(ctx, append([]string{"up"}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(cmd.Env, extra...)
		return run(t, cmd)
	}
	r := upEnv([]string{"WHO=shell"}, "--dry-run")
	if r.Code != 0 || !strings.Contains(r.Stdout, "172.18.0.7") || !strings.Contains(r.Stdout, `echo greeting=hi mode=$MODE over=$OVER who=shell`) ||
		!strings.Contains(r.Stdout, "MODE=fast OVER=from-file") {
		t.Errorf("dry run: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	r = upEnv([]string{"GREETING=hello"}, "--exit-code-from", "a", "--timeout", "2")
	if r.Code != 0 || !strings.Contains(r.Stdout, "| greeting=hello mode=fast over=from-file who=dotenv") {
		t.Errorf("run: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if err := writeFile(dir, ".env", "A_IP=172.18.0.7\n"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--dry-run"}, nil} {
		r = upEnv(nil, args...)
		if r.Code != 125 || !strings.Contains(r.Stderr, "nsrun.yaml:7:27: ${WHO:?set WHO to a name}: WHO is required: set WHO to a name (set it in the environment or in .env beside the file)") {
			t.Errorf("up %v without WHO: exit %d, %q", args, r.Code, r.Stderr)
		}
	}
	if left := u.runDirs(); len(left) != 0 {
		t.Errorf("run folders left: %v", left)
	}
}

// writeFile writes name in dir, readable by the test user.
func writeFile(dir, name, body string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
}
