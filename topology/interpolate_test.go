package topology

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func env(vars map[string]string) Lookup {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// TestInterpolate: compose's forms, each with set, empty and unset.
func TestInterpolate(t *testing.T) {
	vars := env(map[string]string{"A": "a", "E": "", "N": "7"})
	for in, want := range map[string]string{
		"x${A}y":           "xay",
		"$A-$N":            "a-7",
		"${U:-d}":          "d",
		"${E:-d}":          "d",
		"${E-d}":           "",
		"${A:-d}":          "a",
		"${U:-${N}0}":      "70",
		"${A:+set}":        "set",
		"${E:+set}":        "",
		"${E+set}":         "set",
		"$$A":              "$A",
		"cost: 5$":         "cost: 5$",
		"${A:?needed}":     "a",
		"sh -c 'echo $$1'": "sh -c 'echo $1'",
	} {
		got, err := Interpolate(in, vars)
		if err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"${U:?set U to the db host}": "${U:?set U to the db host}: U is required: set U to the db host (set it in the environment or in .env beside the file)",
		"${E:?}":                     "E is required: needs a value",
		"${A":                        "unterminated ${",
		"${1A}":                      "is not a variable name",
		"${A/x}":                     "unknown operator \"/\"",
		"${U}":                       "$U is not set",
		"echo $i":                    "write $$i for a $ that the node's shell reads",
	} {
		if _, err := Interpolate(in, vars); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want %q", in, err, want)
		}
	}
}

// TestParseInterpolation: values are filled from the environment, then
// .env beside the file; an error names the value's line and column.
func TestParseInterpolation(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("# defaults\nIP=172.18.0.9\nexport PORT=\"8080\"\nTAG='a b' \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := "nodes:\n  a:\n    ip: ${IP}\n    ports: [\"${PORT}:80\"]\n    command: echo ${TAG} ${WHO:-nobody}\n"
	top, err := ParseEnv("f.yaml", dir, []byte(file), env(map[string]string{"PORT": "9090"}))
	if err != nil {
		t.Fatal(err)
	}
	a := top.Nodes[0]
	if a.Addr.String() != "172.18.0.9" || a.Ports[0].Host != 9090 || strings.Join(a.Argv, "|") != "echo|a|b|nobody" {
		t.Errorf("node %+v", a)
	}
	_, err = ParseEnv("f.yaml", dir, []byte("nodes:\n  a:\n    ip: 172.18.0.2\n    command: [echo, \"${DB:?set DB}\"]\n"), env(nil))
	if err == nil || err.Error() != "f.yaml:4:21: ${DB:?set DB}: DB is required: set DB (set it in the environment or in .env beside the file)" {
		t.Errorf("required: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("OK=1\nnot a line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ParseEnv("f.yaml", dir, []byte(file), env(nil))
	if err == nil || !strings.HasSuffix(err.Error(), ".env:2:1: \"not a line\": write KEY=VALUE, with a key of letters, digits and _") {
		t.Errorf("bad .env: %v", err)
	}
}

// TestParseEnvFile: env_file's variables, overridden by environment:,
// later files over earlier ones; a missing file is named at its entry.
func TestParseEnvFile(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"a.env": "A=1\nB=from-a\n", "b.env": "B=from-b # a comment\nC=\"x\\ny\"\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	top, err := ParseEnv("f.yaml", dir, []byte("nodes:\n  a:\n    ip: 172.18.0.2\n    env_file: [a.env, b.env]\n    environment: {A: mine}\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(top.Nodes[0].Env, ","); got != "A=mine,B=from-b,C=x\ny" {
		t.Errorf("env %q", got)
	}
	_, err = ParseEnv("f.yaml", dir, []byte("nodes:\n  a:\n    ip: 172.18.0.2\n    env_file: nope.env\n"), env(nil))
	if err == nil || !strings.HasPrefix(err.Error(), "f.yaml:4:15: nodes.a.env_file: "+filepath.Join(dir, "nope.env")+": no such file or directory") {
		t.Errorf("missing env_file: %v", err)
	}
}
