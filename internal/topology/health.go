package topology

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// HealthKind is what a health check does.
type HealthKind string

// The kinds of health checks.
const (
	// HealthCmd runs Health.Argv in the node; exit code 0 is healthy.
	HealthCmd HealthKind = "cmd"
	// HealthTCP connects to Health.Port on the node's loopback.
	HealthTCP HealthKind = "tcp"
	// HealthUDP sends a datagram to Health.Port on the node's loopback
	// and is healthy when anything comes back.
	HealthUDP HealthKind = "udp"
	// HealthHTTP gets Health.URL from inside the node: a 2xx or 3xx
	// status is healthy.
	HealthHTTP HealthKind = "http"
)

// Health is a node's `healthcheck:`, as docker compose spells it: the
// check, run every Interval (but every StartInterval until it first
// passes), each within Timeout; failures in the first StartPeriod do not
// count, and Retries failures in a row make the node unhealthy.
type Health struct {
	Pos           Pos           `json:"-"`
	Kind          HealthKind    `json:"kind"`
	Argv          []string      `json:"argv,omitempty"`
	Port          uint16        `json:"port,omitempty"`
	URL           string        `json:"url,omitempty"`
	Interval      time.Duration `json:"interval_ns"`
	Timeout       time.Duration `json:"timeout_ns"`
	StartPeriod   time.Duration `json:"start_period_ns,omitempty"`
	StartInterval time.Duration `json:"start_interval_ns"`
	Retries       int           `json:"retries"`
}

// String is the check as the file could write it.
func (h Health) String() string {
	switch h.Kind {
	case HealthCmd:
		return fmt.Sprintf("%q", h.Argv)
	case HealthHTTP:
		return h.URL
	}
	return fmt.Sprintf("%s:%d", h.Kind, h.Port)
}

// Defaults of a health check: compose's, but for start_interval, which
// is short so that nodes that wait for a healthy one start soon.
const (
	DefaultHealthInterval      = 30 * time.Second
	DefaultHealthTimeout       = 30 * time.Second
	DefaultHealthRetries       = 3
	DefaultHealthStartInterval = time.Second
)

// Condition is what a node waits for of a node it depends on.
type Condition string

// The conditions of `depends_on:`, as docker compose names them.
const (
	// ServiceStarted: the dependency started (and passed its ready:).
	ServiceStarted Condition = "service_started"
	// ServiceHealthy: the dependency's health check passed.
	ServiceHealthy Condition = "service_healthy"
	// ServiceCompletedSuccessfully: the dependency exited with code 0.
	ServiceCompletedSuccessfully Condition = "service_completed_successfully"
)

var conditions = []string{string(ServiceStarted), string(ServiceHealthy), string(ServiceCompletedSuccessfully)}

var healthKeys = []string{"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"}

const healthHint = `write test: [CMD, prog, arg...], [CMD-SHELL, "shell command"], a shell command, tcp:PORT, udp:PORT or http://localhost:PORT/path`

// health reads `healthcheck:`; nil with `disable: true`.
func (p *parser) health(f string, v *yaml.Node) (*Health, error) {
	pairs, err := p.mapping(v, f, healthKeys...)
	if err != nil {
		return nil, err
	}
	h := &Health{Pos: Pos{v.Line, v.Column}, Interval: DefaultHealthInterval, Timeout: DefaultHealthTimeout, Retries: DefaultHealthRetries, StartInterval: DefaultHealthStartInterval}
	var test *yaml.Node
	for _, kv := range pairs {
		k, val := kv[0].Value, kv[1]
		kf := f + "." + k
		switch k {
		case "test":
			test = val
		case "disable":
			off, err := p.boolean(kf, val)
			if err != nil {
				return nil, err
			}
			if off {
				return nil, nil
			}
		case "retries":
			r, err := strconv.Atoi(val.Value)
			if val.Kind != yaml.ScalarNode || err != nil || r < 1 || r > 1000 {
				return nil, p.errAt(val, "%s: %q: write a number from 1 to 1000", kf, val.Value)
			}
			h.Retries = r
		default:
			d, err := time.ParseDuration(val.Value)
			if val.Kind != yaml.ScalarNode || err != nil || d < 0 || d > MaxReadyTimeout || (d == 0 && k != "start_period") {
				return nil, p.errAt(val, "%s: %q: write a duration above 0 and at most 24h, such as 500ms, 10s or 1m30s", kf, val.Value)
			}
			switch k {
			case "interval":
				h.Interval = d
			case "timeout":
				h.Timeout = d
			case "start_period":
				h.StartPeriod = d
			case "start_interval":
				h.StartInterval = d
			}
		}
	}
	if test == nil {
		return nil, p.errAt(v, "%s.test: missing; %s", f, healthHint)
	}
	if err := p.healthTest(f+".test", test, h); err != nil {
		return nil, err
	}
	h.StartInterval = min(h.StartInterval, h.Interval)
	return h, nil
}

// healthTest reads the check itself.
func (p *parser) healthTest(f string, v *yaml.Node, h *Health) error {
	if v.Kind == yaml.SequenceNode {
		list, err := p.stringList(f, v)
		if err != nil {
			return err
		}
		switch {
		case len(list) >= 2 && list[0] == "CMD":
			h.Kind, h.Argv = HealthCmd, list[1:]
			return nil
		case len(list) == 2 && list[0] == "CMD-SHELL":
			h.Kind, h.Argv = HealthCmd, []string{"/bin/sh", "-c", list[1]}
			return nil
		case len(list) == 1 && list[0] == "NONE":
			return p.errAt(v, "%s: [NONE] turns the check off; write disable: true, or remove healthcheck:", f)
		}
		return p.errAt(v, "%s: a list starts with CMD (then the program and its arguments) or CMD-SHELL (then one shell command); %s", f, healthHint)
	}
	if v.Kind != yaml.ScalarNode || strings.TrimSpace(v.Value) == "" {
		return p.errAt(v, "%s: %s", f, healthHint)
	}
	s := v.Value
	for _, kind := range []HealthKind{HealthTCP, HealthUDP} {
		if port, ok := strings.CutPrefix(s, string(kind)+":"); ok {
			pn, err := strconv.ParseUint(port, 10, 16)
			if err != nil || pn == 0 {
				return p.errAt(v, "%s: %q: write %s:PORT with a port from 1 to 65535, such as %s:53", f, s, kind, kind)
			}
			h.Kind, h.Port = kind, uint16(pn)
			return nil
		}
	}
	if strings.HasPrefix(s, "http://") {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return p.errAt(v, "%s: %q is not a URL such as http://localhost:8000/health", f, s)
		}
		h.Kind, h.URL = HealthHTTP, s
		return nil
	}
	if strings.Contains(s, "://") {
		return p.errAt(v, "%s: %q: only http:// URLs are checked (from inside the node); %s", f, s, healthHint)
	}
	// A string is a shell command, as compose's CMD-SHELL.
	h.Kind, h.Argv = HealthCmd, []string{"/bin/sh", "-c", s}
	return nil
}

// dependsOn reads `depends_on: [a, b]` or the long form
// `depends_on: {a: {condition: service_healthy}}`. Conditions other than
// service_started are returned by name.
func (p *parser) dependsOn(f string, v *yaml.Node) ([]string, map[string]Condition, error) {
	if v.Kind == yaml.SequenceNode {
		names, err := p.stringList(f, v)
		return names, nil, err
	}
	pairs, err := p.mapping(v, f)
	if err != nil {
		return nil, nil, p.errAt(v, "%s: write a list of nodes, [db, web], or {db: {condition: service_healthy}}", f)
	}
	var names []string
	conds := map[string]Condition{}
	for _, kv := range pairs {
		name := kv[0].Value
		names = append(names, name)
		df := f + "." + name
		if kv[1].Kind == yaml.ScalarNode && kv[1].Tag == "!!null" {
			continue
		}
		opts, err := p.mapping(kv[1], df, "condition", "required", "restart")
		if err != nil {
			return nil, nil, err
		}
		for _, o := range opts {
			switch o[0].Value {
			case "condition":
				if o[1].Kind != yaml.ScalarNode || !contains(conditions, o[1].Value) {
					return nil, nil, p.errAt(o[1], "%s.condition: %q: write one of %s", df, o[1].Value, strings.Join(conditions, ", "))
				}
				if c := Condition(o[1].Value); c != ServiceStarted {
					conds[name] = c
				}
			case "required":
				if on, err := p.boolean(df+".required", o[1]); err != nil || !on {
					if err == nil {
						err = p.errAt(o[1], "%s.required: false is not supported: a node always waits for what it depends on; remove the dependency instead", df)
					}
					return nil, nil, err
				}
			case "restart":
				return nil, nil, p.errAt(o[0], "%s.restart: not supported; remove it", df)
			}
		}
	}
	if len(conds) == 0 {
		conds = nil
	}
	return names, conds, nil
}

// RestartPolicy is when a node's command is started again after it
// exits, as compose's `restart:`.
type RestartPolicy string

// The restart policies.
const (
	RestartNo        RestartPolicy = "no"
	RestartOnFailure RestartPolicy = "on-failure"
	RestartAlways    RestartPolicy = "always"
)

// Restart is a node's `restart:`: Policy, and for on-failure at most Max
// restarts (0: no limit).
type Restart struct {
	Policy RestartPolicy `json:"policy"`
	Max    int           `json:"max,omitempty"`
}

// restart reads `restart: no | on-failure[:N] | always | unless-stopped`
// (the last as always: a node stopped with nsrun node stop stays
// stopped either way).
func (p *parser) restart(f string, v *yaml.Node) (Restart, error) {
	const hint = "write no, on-failure, on-failure:N (at most N restarts) or always"
	if v.Kind != yaml.ScalarNode {
		return Restart{}, p.errAt(v, "%s: %s", f, hint)
	}
	switch s := v.Value; {
	case s == "no" || s == "false":
		return Restart{Policy: RestartNo}, nil
	case s == "always" || s == "unless-stopped":
		return Restart{Policy: RestartAlways}, nil
	case s == "on-failure":
		return Restart{Policy: RestartOnFailure}, nil
	case strings.HasPrefix(s, "on-failure:"):
		n, err := strconv.Atoi(strings.TrimPrefix(s, "on-failure:"))
		if err != nil || n < 1 || n > 1000000 {
			return Restart{}, p.errAt(v, "%s: %q: N is a number of restarts from 1 up; %s", f, s, hint)
		}
		return Restart{Policy: RestartOnFailure, Max: n}, nil
	}
	return Restart{}, p.errAt(v, "%s: %q: %s", f, v.Value, hint)
}

// tmpfs reads `tmpfs: FOLDER` or a list of them: absolute, or relative
// to the file; each must exist, and may not hold the files nsrun mounts
// into every node (/etc, /proc and what is above them).
func (p *parser) tmpfs(f string, v *yaml.Node) ([]string, error) {
	var out []string
	for _, it := range oneOrList(v) {
		if it.Kind != yaml.ScalarNode || it.Value == "" {
			return nil, p.errAt(it, "%s: write a folder, or a list of them, absolute or relative to the file", f)
		}
		dir := filepath.Clean(p.path(it.Value))
		for _, kept := range []string{"/etc/hosts", "/proc/x"} {
			if kept == dir || strings.HasPrefix(kept, dir+"/") || strings.HasPrefix(dir, "/proc") {
				return nil, p.errAt(it, "%s: %s would cover %s, which nsrun mounts into every node; pick a folder of its own, such as /tmp or /var/lib/redis", f, dir, filepath.Dir(kept))
			}
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil, p.errAt(it, "%s: %s is not a folder; a tmpfs covers a folder that exists", f, dir)
		}
		if contains(out, dir) {
			return nil, p.errAt(it, "%s: %s appears twice", f, dir)
		}
		out = append(out, dir)
	}
	return out, nil
}
