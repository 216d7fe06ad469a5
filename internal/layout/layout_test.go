// Package layout holds the module's public surface to what users import:
// a test fails when a package outside internal/ appears that is not in
// the list below.
package layout

import (
	"os/exec"
	"strings"
	"testing"
)

// public are the importable packages (and their subtrees) outside
// internal/: what users import (nstest), the commands, and the packages
// the project's brief keeps at the top (each of userns, helper, nft and
// ipam says in its doc that it is not a stable API).
var public = []string{"cmd/", "userns", "helper", "nft", "ipam", "nstest", "test", "bench/"}

// TestPublicSurface: go list of the module shows no package outside
// internal/ but the public ones.
func TestPublicSurface(t *testing.T) {
	out, err := exec.Command("go", "list", "github.com/nsrun/nsrun/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/nsrun/nsrun/"
	for _, p := range strings.Fields(string(out)) {
		rel, ok := strings.CutPrefix(p, mod)
		if !ok || strings.HasPrefix(rel, "internal/") {
			continue
		}
		allowed := false
		for _, a := range public {
			allowed = allowed || rel == strings.TrimSuffix(a, "/") || strings.HasPrefix(rel, strings.TrimSuffix(a, "/")+"/")
		}
		if !allowed {
			t.Errorf("package %s is importable: move it under internal/ (or add it to the public list with a reason)", p)
		}
	}
}
