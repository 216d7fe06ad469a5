// Package version is nsrun's version, which nsrun, nsrun-helper and
// nsrun-capture print: a semantic version, with the commit it was built
// from after it.
package version

import (
	"runtime/debug"
	"strings"
)

// Semver is nsrun's semantic version (https://semver.org): a release
// changes it, and its tag is "v" and it.
const Semver = "0.1.0"

// commit is the commit nsrun was built from, set by make build with
// -ldflags "-X github.com/nsrun/nsrun/internal/version.commit=...".
var commit string

// String is the version as the binaries print it: "0.1.0 (commit
// 1a2b3c4d5e6f)", "-dirty" after the commit when the work tree had
// changes. Without make's -X, the commit comes from what go build
// records of a git checkout (go install from a clone); built from
// elsewhere, it is "unknown".
func String() string {
	c := commit
	if c == "" {
		c = fromBuildInfo()
	}
	if c == "" {
		c = "unknown"
	}
	return Semver + " (commit " + c + ")"
}

// fromBuildInfo reads the commit go build recorded (vcs.revision, and
// vcs.modified for a dirty tree), shortened to 12 characters.
func fromBuildInfo() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev string
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && dirty {
		rev += "-dirty"
	}
	return strings.TrimSpace(rev)
}
