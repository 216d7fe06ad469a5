package docpointers

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// root is the repository's root, seen from this package.
const root = "../.."

var (
	// readmeRef is README: "Section" (quotes escaped or not), or
	// README.md ("Section", "Other"), or README: "Section" and "Other";
	// or the same with a page under docs/ for README: docs/file.md: "Section".
	// The first group is the file (README or a docs/ path), the second the
	// quoted sections.
	readmeRef = regexp.MustCompile(`\b(README|docs/[A-Za-z0-9_.-]+\.md)(?:\.md)?[:\s]\s*\(?((?:\\?"[^"\\\n]+\\?"(?:,\s*|\s+and\s+)?)+)`)
	quoted    = regexp.MustCompile(`\\?"([^"\\\n]+)\\?"`)
	// docsRef is a path under docs/ (or a top-level Markdown file).
	docsRef = regexp.MustCompile(`\b(docs/[A-Za-z0-9_.-]+\.md|[A-Z]+\.md)\b`)
	// mdLink is a Markdown link: [text](target).
	mdLink  = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)
)

// headings returns the headings of a Markdown file, as written (backticks
// removed) and as GitHub's anchors.
func headings(t *testing.T, path string) (titles, anchors map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	titles, anchors = map[string]bool{}, map[string]bool{}
	inCode := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if m := heading.FindStringSubmatch(line); m != nil && !inCode {
			title := strings.ReplaceAll(m[1], "`", "")
			titles[title] = true
			anchors[anchor(title)] = true
		}
	}
	return titles, anchors
}

// anchor is GitHub's anchor of a heading: lower case, spaces to '-',
// punctuation other than '-' and '_' dropped.
func anchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// sources walks the repository's files with the given extension.
func sources(t *testing.T, ext string, fn func(path, text string)) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != root || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ext) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fn(path, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// lineOf is the line of offset i in text.
func lineOf(text string, i int) int { return strings.Count(text[:i], "\n") + 1 }

// TestGoPointersResolve: every section of the README or of a page under
// docs/, and every documentation file, that a Go source names (messages,
// help texts, comments) exists.
func TestGoPointersResolve(t *testing.T) {
	titles := map[string]map[string]bool{}
	titlesOf := func(doc string) (map[string]bool, error) {
		if doc == "README" {
			doc = "README.md"
		}
		if ts, ok := titles[doc]; ok {
			return ts, nil
		}
		if _, err := os.Stat(filepath.Join(root, doc)); err != nil {
			return nil, err
		}
		ts, _ := headings(t, filepath.Join(root, doc))
		titles[doc] = ts
		return ts, nil
	}
	n := 0
	sources(t, ".go", func(path, text string) {
		if filepath.Base(filepath.Dir(path)) == "docpointers" {
			return // this package: its examples point nowhere
		}
		for _, m := range readmeRef.FindAllStringSubmatchIndex(text, -1) {
			doc := text[m[2]:m[3]]
			ts, err := titlesOf(doc)
			if err != nil {
				t.Errorf("%s:%d: %s does not exist", path, lineOf(text, m[0]), doc)
				continue
			}
			for _, q := range quoted.FindAllStringSubmatch(text[m[4]:m[5]], -1) {
				n++
				section := strings.ReplaceAll(q[1], "`", "")
				if !ts[section] {
					t.Errorf("%s:%d: %s has no section %q", path, lineOf(text, m[0]), doc, q[1])
				}
			}
		}
		for _, m := range docsRef.FindAllStringSubmatchIndex(text, -1) {
			n++
			if _, err := os.Stat(filepath.Join(root, text[m[2]:m[3]])); err != nil {
				t.Errorf("%s:%d: %s does not exist", path, lineOf(text, m[0]), text[m[2]:m[3]])
			}
		}
	})
	if n < 5 {
		t.Errorf("found only %d pointers: the patterns no longer match how the sources point", n)
	}
}

// TestMarkdownLinksResolve: every relative link of the Markdown files leads
// to a file that exists, and every #anchor to a heading of its file.
func TestMarkdownLinksResolve(t *testing.T) {
	n := 0
	sources(t, ".md", func(path, text string) {
		for _, m := range mdLink.FindAllStringSubmatchIndex(text, -1) {
			target := text[m[2]:m[3]]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			n++
			file, frag, _ := strings.Cut(target, "#")
			dest := path
			if file != "" {
				dest = filepath.Join(filepath.Dir(path), file)
				if _, err := os.Stat(dest); err != nil {
					t.Errorf("%s:%d: link to %s: no such file", path, lineOf(text, m[0]), file)
					continue
				}
			}
			if frag != "" {
				if _, anchors := headings(t, dest); !anchors[frag] {
					t.Errorf("%s:%d: link to %s: %s has no heading with that anchor", path, lineOf(text, m[0]), target, dest)
				}
			}
		}
	})
	if n < 5 {
		t.Errorf("found only %d links", n)
	}
}

// TestPointerPatterns: the patterns find the ways sources point.
func TestPointerPatterns(t *testing.T) {
	for _, c := range []struct {
		text string
		want []string
	}{
		{`(see README: \"A cluster from a file: nsrun up\")`, []string{"A cluster from a file: nsrun up"}},
		{`See README: "Speed".`, []string{"Speed"}},
		{`map[string]string{"README": "captures\n"}`, nil},
		{`See README: "Speed" and "How it works".`, []string{"Speed", "How it works"}},
		{`// README.md ("What install does as root", "The helper's threat model")`, []string{"What install does as root", "The helper's threat model"}},
		{`See docs/file.md: "A cluster from a file: nsrun up".`, []string{"docs/file.md:A cluster from a file: nsrun up"}},
		{`(see docs/verbs.md: \"Fault schedules\")`, []string{"docs/verbs.md:Fault schedules"}},
		{`// docs/helper.md ("What install does as root", "The helper's threat model")`, []string{"docs/helper.md:What install does as root", "docs/helper.md:The helper's threat model"}},
		{`see mydocs/file.md: "x"`, nil},
	} {
		var got []string
		for _, m := range readmeRef.FindAllStringSubmatch(c.text, -1) {
			for _, q := range quoted.FindAllStringSubmatch(m[2], -1) {
				if m[1] == "README" {
					got = append(got, q[1])
				} else {
					got = append(got, m[1]+":"+q[1])
				}
			}
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s: found %q, want %q", c.text, got, c.want)
		}
	}
	if a := anchor("Reaching the host and the world: nsrun-helper"); a != "reaching-the-host-and-the-world-nsrun-helper" {
		t.Errorf("anchor = %q", a)
	}
}
