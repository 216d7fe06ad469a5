package cli

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNstestDoesNotImportCLI: package nstest drives runs through the
// typed client (control.Client) and starts them through package start,
// never through this package's command-line text: `go list -deps
// ./nstest` lists no cli.
func TestNstestDoesNotImportCLI(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command on PATH to list nstest's imports with: %v", err)
	}
	cmd := exec.Command(goBin, "list", "-deps", "./nstest")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./nstest: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps ./nstest listed %d packages: %q", len(deps), deps)
	}
	for _, d := range deps {
		if d == "github.com/nsrun/nsrun/internal/cli" {
			t.Errorf("nstest imports %s (go list -deps ./nstest)", d)
		}
	}
}
