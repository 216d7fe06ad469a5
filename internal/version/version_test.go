package version

import (
	"regexp"
	"testing"
)

// TestString: a semantic version, then the commit (or "unknown").
func TestString(t *testing.T) {
	re := regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+ \(commit ([0-9a-f]{7,40}(-dirty)?|unknown)\)$`)
	if s := String(); !re.MatchString(s) {
		t.Errorf("String() = %q; want SEMVER (commit HASH)", s)
	}
	commit = "0123456789ab-dirty"
	defer func() { commit = "" }()
	if s := String(); s != Semver+" (commit 0123456789ab-dirty)" {
		t.Errorf("with make's commit: %q", s)
	}
}
