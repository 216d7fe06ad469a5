package topology

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPathsOfTheFile: tmpfs, env_file and working_dir take folders and
// files relative to the file's folder or absolute, tmpfs and env_file
// one or a list, and each refuses what is neither with its own message.
func TestPathsOfTheFile(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"data", "cache", "work"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, text := range map[string]string{"a.env": "A=1\n", "b.env": "A=2\nB=3\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	abs := filepath.Join(dir, "cache")
	parse := func(node string) (Node, error) {
		top, err := Parse("nsrun.yaml", dir, []byte("nodes:\n  a: {ip: 172.18.0.2, command: 'true', "+node+"}\n"))
		if err != nil {
			return Node{}, err
		}
		return top.Nodes[0], nil
	}
	for _, c := range []struct {
		node  string
		tmpfs []string
		env   []string
		wd    string
	}{
		{node: "tmpfs: data", tmpfs: []string{filepath.Join(dir, "data")}},
		{node: "tmpfs: [data/, " + abs + "]", tmpfs: []string{filepath.Join(dir, "data"), abs}},
		{node: "env_file: a.env", env: []string{"A=1"}},
		{node: "env_file: [a.env, " + filepath.Join(dir, "b.env") + "]", env: []string{"A=2", "B=3"}},
		{node: "working_dir: work", wd: filepath.Join(dir, "work")},
		{node: "working_dir: " + abs, wd: abs},
	} {
		n, err := parse(c.node)
		if err != nil {
			t.Errorf("%s: %v", c.node, err)
			continue
		}
		if !slices.Equal(n.Tmpfs, c.tmpfs) || c.env != nil && !slices.Equal(n.Env, c.env) || n.Dir != c.wd {
			t.Errorf("%s: tmpfs %q, env %q, dir %q; want %q, %q, %q", c.node, n.Tmpfs, n.Env, n.Dir, c.tmpfs, c.env, c.wd)
		}
	}
	for node, want := range map[string]string{
		"tmpfs: {x: y}":         "nsrun.yaml:2:47: nodes.a.tmpfs: write a folder, or a list of them, absolute or relative to the file",
		"tmpfs: [data, [x]]":    "nsrun.yaml:2:54: nodes.a.tmpfs: write a folder, or a list of them, absolute or relative to the file",
		"tmpfs: [data, data]":   "nodes.a.tmpfs: " + filepath.Join(dir, "data") + " appears twice",
		"tmpfs: missing":        "nodes.a.tmpfs: " + filepath.Join(dir, "missing") + " is not a folder",
		"tmpfs: /etc":           "nodes.a.tmpfs: /etc would cover /etc",
		"env_file: {x: y}":      "nsrun.yaml:2:50: nodes.a.env_file: write a file name, or a list of them, relative to the file",
		"env_file: [a.env, []]": "nsrun.yaml:2:58: nodes.a.env_file: write a file name, relative to the file",
		"env_file: none.env":    filepath.Join(dir, "none.env") + ": no such file",
		"working_dir: [work]":   "nodes.a.working_dir: write a folder, absolute or relative to the file",
		"working_dir: none":     "nodes.a.working_dir: " + filepath.Join(dir, "none") + " is not a folder",
	} {
		if _, err := parse(node); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", node, err, want)
		}
	}
}
