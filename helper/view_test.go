package helper

import "testing"

// TestUnescapeMount: paths of the mount table come back as the kernel
// wrote them before escaping (a user picks the names of their folders).
func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/run/user/1000/nsrun`:         "/run/user/1000/nsrun",
		`/run/user/1000/a\040b`:        "/run/user/1000/a b",
		`/run/user/1000/x\012y\011z`:   "/run/user/1000/x\ny\tz",
		`/run/user/1000/\134134`:       `/run/user/1000/\134`,
		`/run/user/1000/end\04`:        `/run/user/1000/end\04`,
		`/run/user/1000/not\999an-esc`: `/run/user/1000/not\999an-esc`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestReadMountinfo: the helper's own mount table parses, with its root
// mount among the entries.
func TestReadMountinfo(t *testing.T) {
	entries, err := readMountinfo()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Point == "/" && e.FSType != "" {
			return
		}
	}
	t.Errorf("no entry for / among %d entries", len(entries))
}
