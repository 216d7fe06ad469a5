package runstate

import (
	"strings"
	"testing"
)

// TestSelect: a run is named by its id or a unique prefix; without one,
// by the folder of its file (when one run there), or as the only run.
func TestSelect(t *testing.T) {
	runs := []Info{
		{ID: "ab12cd34", File: "/p/one/nsrun.yaml"},
		{ID: "ab99ffff", File: "/p/two/nsrun.yaml"},
		{ID: "77000000", File: "/p/two/other.yaml"},
		{ID: "12345678"},
	}
	for _, c := range []struct {
		id, dir, want, err string
	}{
		{"ab12cd34", "", "ab12cd34", ""},
		{"ab1", "", "ab12cd34", ""},
		{"7", "/p/one", "77000000", ""},
		{"ab", "", "", "--run ab: 2 runs have ids that start so (ab12cd34, ab99ffff): give more of the id"},
		{"ff", "", "", "--run ff: no live run with that id"},
		{"", "/p/one", "ab12cd34", ""},
		{"", "/p/one/", "ab12cd34", ""},
		{"", "/p/two", "", "2 live runs of this folder's files (ab99ffff, 77000000): name one with --run ID"},
		{"", "/elsewhere", "", "4 live runs (ab12cd34, ab99ffff, 77000000, 12345678), none of a file in this folder"},
	} {
		got, err := Select(runs, c.id, c.dir)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Select(%q, %q): %v, %v; want error %q", c.id, c.dir, got.ID, err, c.err)
			}
			continue
		}
		if err != nil || got.ID != c.want {
			t.Errorf("Select(%q, %q): %q, %v; want %q", c.id, c.dir, got.ID, err, c.want)
		}
	}
	if got, err := Select(runs[3:], "", "/elsewhere"); err != nil || got.ID != "12345678" {
		t.Errorf("the only run: %q, %v", got.ID, err)
	}
	if _, err := Select(nil, "", "/p"); err == nil || !strings.Contains(err.Error(), "no live run") {
		t.Errorf("no run: %v", err)
	}
}
