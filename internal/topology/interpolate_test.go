package topology

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// TestParseHealthcheck: compose's forms of healthcheck: and depends_on's
// conditions, and their errors at file:line:col.
func TestParseHealthcheck(t *testing.T) {
	file := `nodes:
  db:
    ip: 172.18.0.2
    command: sleep 60
    healthcheck: {test: [CMD-SHELL, "pg_isready -q"], interval: 2s, timeout: 1s, retries: 5, start_period: 10s}
  web:
    ip: 172.18.0.3
    command: sleep 60
    healthcheck: {test: "http://localhost:8000/health"}
  app:
    ip: 172.18.0.4
    command: sleep 60
    healthcheck: {test: udp:53, start_interval: 5m}
    depends_on:
      db: {condition: service_healthy}
      web:
      init: {condition: service_completed_successfully}
  init: {ip: 172.18.0.5, command: "true"}
`
	top, err := ParseEnv("f.yaml", t.TempDir(), []byte(file), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Node{}
	for _, n := range top.Nodes {
		by[n.Name] = n
	}
	db, web, app := by["db"].Health, by["web"].Health, by["app"].Health
	if db.Kind != HealthCmd || strings.Join(db.Argv, "|") != "/bin/sh|-c|pg_isready -q" || db.Interval != 2*time.Second || db.Timeout != time.Second || db.Retries != 5 || db.StartPeriod != 10*time.Second || db.StartInterval != time.Second {
		t.Errorf("db: %+v", db)
	}
	if web.Kind != HealthHTTP || web.URL != "http://localhost:8000/health" || web.Interval != 30*time.Second || web.Retries != 3 {
		t.Errorf("web: %+v", web)
	}
	if app.Kind != HealthUDP || app.Port != 53 || app.StartInterval != 30*time.Second {
		t.Errorf("app: %+v (start_interval is at most interval)", app)
	}
	if c := by["app"].Conditions; len(c) != 2 || c["db"] != ServiceHealthy || c["init"] != ServiceCompletedSuccessfully || strings.Join(by["app"].DependsOn, ",") != "db,web,init" {
		t.Errorf("app depends on %v, %v", by["app"].DependsOn, c)
	}
	for yaml, want := range map[string]string{
		"nodes:\n  a: {ip: 172.18.0.2, command: sleep 1, healthcheck: {test: [pg_isready]}}\n":                                 "f.yaml:2:61: nodes.a.healthcheck.test: a list starts with CMD",
		"nodes:\n  a: {ip: 172.18.0.2, command: sleep 1, healthcheck: {test: tcp:0}}\n":                                        "f.yaml:2:61: nodes.a.healthcheck.test: \"tcp:0\": write tcp:PORT",
		"nodes:\n  a: {ip: 172.18.0.2, command: sleep 1, healthcheck: {test: true, retries: 0}}\n":                             "f.yaml:2:76: nodes.a.healthcheck.retries: \"0\": write a number from 1 to 1000",
		"nodes:\n  a: {ip: 172.18.0.2, command: sleep 1, healthcheck: {test: true, interval: soon}}\n":                         "f.yaml:2:77: nodes.a.healthcheck.interval: \"soon\": write a duration",
		"nodes:\n  a: {ip: 172.18.0.2, command: sleep 1, healthcheck: {interval: 1s}}\n":                                       "f.yaml:2:54: nodes.a.healthcheck.test: missing",
		"nodes:\n  a: {ip: 172.18.0.2, healthcheck: {test: true}}\n":                                                           "f.yaml:2:36: nodes.a.healthcheck: the node has no command",
		"nodes:\n  a: {ip: 172.18.0.2}\n  b: {ip: 172.18.0.3, depends_on: {a: {condition: started}}}\n":                        "f.yaml:3:51: nodes.b.depends_on.a.condition: \"started\": write one of service_started, service_healthy, service_completed_successfully",
		"nodes:\n  a: {ip: 172.18.0.2}\n  b: {ip: 172.18.0.3, depends_on: {a: {condition: service_completed_successfully}}}\n": "f.yaml:3:3: nodes.b.depends_on.a: condition: service_completed_successfully, but node a has no command",
	} {
		if _, err := ParseEnv("f.yaml", "/", []byte(yaml), env(nil)); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: %v\nwant %s", yaml, err, want)
		}
	}
}
