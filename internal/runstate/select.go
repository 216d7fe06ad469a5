package runstate

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Select picks the run a command means among runs (the user's live runs,
// see List). id is what the user wrote after --run: a whole id or a
// prefix that only one run's id starts with. Without one (id ""), the run
// is the only one started from a file in the folder dir (the caller's
// current folder), else the user's only run. The error says which runs
// there are and how to name one.
func Select(runs []Info, id, dir string) (Info, error) {
	if id != "" {
		var match []Info
		for _, r := range runs {
			if r.ID == id {
				return r, nil
			}
			if strings.HasPrefix(r.ID, id) {
				match = append(match, r)
			}
		}
		switch len(match) {
		case 0:
			return Info{}, fmt.Errorf("--run %s: no live run with that id; see nsrun ls", id)
		case 1:
			return match[0], nil
		}
		return Info{}, fmt.Errorf("--run %s: %d runs have ids that start so (%s): give more of the id", id, len(match), ids(match))
	}
	if len(runs) == 1 {
		return runs[0], nil
	}
	if len(runs) == 0 {
		return Info{}, fmt.Errorf("no live run (start one with nsrun up; see nsrun ls)")
	}
	var here []Info
	for _, r := range runs {
		if r.File != "" && dir != "" && filepath.Dir(r.File) == filepath.Clean(dir) {
			here = append(here, r)
		}
	}
	if len(here) == 1 {
		return here[0], nil
	}
	if len(here) > 1 {
		return Info{}, fmt.Errorf("%d live runs of this folder's files (%s): name one with --run ID", len(here), ids(here))
	}
	return Info{}, fmt.Errorf("%d live runs (%s), none of a file in this folder: name one with --run ID (see nsrun ls)", len(runs), ids(runs))
}

// ids lists the ids of runs, comma-separated.
func ids(runs []Info) string {
	var out []string
	for _, r := range runs {
		out = append(out, r.ID)
	}
	return strings.Join(out, ", ")
}

// KeptLogsDir is the folder where the output of runs started with
// --keep-logs is kept after they end: one folder per run id, with the
// run's info.json and its output logs.
func KeptLogsDir(runtimeDir string) string { return filepath.Join(runtimeDir, "logs") }
