package topology

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// Lookup finds a variable for interpolation, as os.LookupEnv does.
type Lookup func(name string) (string, bool)

// DotEnv is the file beside nsrun.yaml whose variables fill ${VAR} in
// it, below those of the environment (as docker compose's .env).
const DotEnv = ".env"

// interpolate replaces ${VAR}, ${VAR:-default}, ${VAR-default},
// ${VAR:?message}, ${VAR?message}, ${VAR:+other}, ${VAR+other} and $VAR
// in every scalar value under n (keys are left as written), as docker
// compose does; $$ is a literal $. Unlike compose, a variable without a
// value (and without a default) is an error, not an empty string. An
// error names the value's position.
func (p *parser) interpolate(n *yaml.Node) error {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			if err := p.interpolate(c); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			if err := p.interpolate(n.Content[i]); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "$") {
			return nil
		}
		v, err := Interpolate(n.Value, p.lookup)
		if err != nil {
			return p.errAt(n, "%v", err)
		}
		n.Value = v
	}
	return nil
}

// Interpolate expands s with variables from lookup, as docker compose
// does with a value of its file (see parser.interpolate). The error says
// which variable and how to give it.
func Interpolate(s string, lookup Lookup) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(s) {
			b.WriteByte('$')
			continue
		}
		switch next := s[i+1]; {
		case next == '$':
			b.WriteByte('$')
			i++
		case next == '{':
			end := closing(s, i+2)
			if end < 0 {
				return "", fmt.Errorf("%q: unterminated ${ (write ${VAR}, or $$ for a literal $)", s)
			}
			v, err := expand(s[i+2:end], lookup)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i = end
		case isNameStart(next):
			j := i + 1
			for j < len(s) && isName(s[j]) {
				j++
			}
			v, set := lookup(s[i+1 : j])
			if !set {
				return "", unset(s[i+1 : j])
			}
			b.WriteString(v)
			i = j - 1
		default:
			b.WriteByte('$')
		}
	}
	return b.String(), nil
}

// closing finds the } that ends a ${ whose body starts at from, past any
// nested ${...} in a default.
func closing(s string, from int) int {
	depth := 0
	for j := from; j < len(s); j++ {
		switch {
		case s[j] == '$' && j+1 < len(s) && s[j+1] == '{':
			depth++
			j++
		case s[j] == '}':
			if depth == 0 {
				return j
			}
			depth--
		}
	}
	return -1
}

// expand resolves the body of one ${...}.
func expand(body string, lookup Lookup) (string, error) {
	j := 0
	for j < len(body) && isName(body[j]) {
		j++
	}
	name, op := body[:j], body[j:]
	if name == "" || !isNameStart(name[0]) {
		return "", fmt.Errorf("${%s}: %q is not a variable name (letters, digits and _, not starting with a digit)", body, name)
	}
	val, set := lookup(name)
	if op == "" {
		if !set {
			return "", unset(name)
		}
		return val, nil
	}
	colon := strings.HasPrefix(op, ":")
	if colon {
		op = op[1:]
	}
	if op == "" {
		return "", fmt.Errorf("${%s}: write ${%s}, ${%s:-default}, ${%s:?message} or ${%s:+other}", body, name, name, name, name)
	}
	// With a colon, an empty value counts as unset.
	given := set && (!colon || val != "")
	arg := op[1:]
	switch op[0] {
	case '-':
		if given {
			return val, nil
		}
		return Interpolate(arg, lookup)
	case '?':
		if given {
			return val, nil
		}
		msg, err := Interpolate(arg, lookup)
		if err != nil {
			return "", err
		}
		if msg == "" {
			msg = "needs a value"
		}
		return "", fmt.Errorf("${%s}: %s is required: %s (set it in the environment or in %s beside the file)", body, name, msg, DotEnv)
	case '+':
		if given {
			return Interpolate(arg, lookup)
		}
		return "", nil
	}
	return "", fmt.Errorf("${%s}: unknown operator %q; write ${%s}, ${%s:-default}, ${%s:?message} or ${%s:+other}", body, op[:1], name, name, name, name)
}

// unset is the error for $NAME or ${NAME} when NAME has no value.
// Docker compose substitutes an empty string and warns; nsrun refuses,
// because a file written before interpolation existed (a shell's
// "for i in 1 2; do echo $i; done" in a command) would otherwise change
// its meaning without a word.
func unset(name string) error {
	return fmt.Errorf("$%s is not set: the file expands $VAR and ${VAR} as docker compose does; write $$%s for a $ that the node's shell reads, ${%s:-} for an empty default, or set %s in the environment or in %s beside the file", name, name, name, name, DotEnv)
}

func isNameStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isName(c byte) bool { return isNameStart(c) || (c >= '0' && c <= '9') }

// ParseEnvFile reads KEY=VALUE lines, the format of docker compose's
// env_file and .env: blank lines and lines starting with # are skipped,
// `export ` before a key is allowed, and a value in single quotes is
// taken as written, one in double quotes with \n, \" and \\ escapes; an
// unquoted value ends at " #". name is for errors (NAME:LINE:COL).
func ParseEnvFile(name string, data []byte) ([][2]string, error) {
	var out [][2]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		raw := sc.Text()
		text := strings.TrimLeft(raw, " \t")
		col := len(raw) - len(text) + 1
		if text == "" || text[0] == '#' {
			continue
		}
		if rest, ok := strings.CutPrefix(text, "export "); ok {
			col += len(text) - len(rest)
			text = strings.TrimLeft(rest, " \t")
		}
		k, v, ok := strings.Cut(text, "=")
		k = strings.TrimRight(k, " \t")
		if !ok || k == "" || !isNameStart(k[0]) || strings.IndexFunc(k, func(r rune) bool { return r > 127 || !isName(byte(r)) }) >= 0 {
			return nil, &Error{File: name, Line: line, Column: col, Msg: fmt.Sprintf("%q: write KEY=VALUE, with a key of letters, digits and _", text)}
		}
		v = strings.TrimLeft(v, " \t")
		val, err := envValue(v)
		if err != nil {
			return nil, &Error{File: name, Line: line, Column: col, Msg: fmt.Sprintf("%s: %v", k, err)}
		}
		out = append(out, [2]string{k, val})
	}
	return out, sc.Err()
}

func envValue(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	switch v[0] {
	case '\'':
		end := strings.IndexByte(v[1:], '\'')
		if end < 0 {
			return "", errors.New("unterminated ' quote")
		}
		return v[1 : 1+end], nil
	case '"':
		var b strings.Builder
		for i := 1; i < len(v); i++ {
			switch {
			case v[i] == '"':
				return b.String(), nil
			case v[i] == '\\' && i+1 < len(v):
				i++
				switch v[i] {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				default:
					b.WriteByte(v[i])
				}
			default:
				b.WriteByte(v[i])
			}
		}
		return "", errors.New("unterminated \" quote")
	}
	if i := strings.Index(v, " #"); i >= 0 {
		v = v[:i]
	}
	return strings.TrimRight(v, " \t"), nil
}

// readDotEnv reads dir's .env, if there is one, into a lookup that the
// environment env overrides.
func readDotEnv(dir string, env Lookup) (Lookup, error) {
	path := filepath.Join(dir, DotEnv)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return env, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	pairs, err := ParseEnvFile(path, b)
	if err != nil {
		return nil, err
	}
	vars := map[string]string{}
	for _, kv := range pairs {
		vars[kv[0]] = kv[1]
	}
	return func(name string) (string, bool) {
		if v, ok := env(name); ok {
			return v, true
		}
		v, ok := vars[name]
		return v, ok
	}, nil
}

// envFiles reads `env_file: FILE` or `env_file: [FILE, ...]` (relative
// to the file): their KEY=VALUE lines, later files overriding earlier
// ones. Their values are taken as written, without ${VAR}.
func (p *parser) envFiles(f string, v *yaml.Node) ([]string, error) {
	if v.Kind != yaml.ScalarNode && v.Kind != yaml.SequenceNode {
		return nil, p.errAt(v, "%s: write a file name, or a list of them, relative to the file", f)
	}
	var out []string
	for _, it := range oneOrList(v) {
		if it.Kind != yaml.ScalarNode || it.Value == "" {
			return nil, p.errAt(it, "%s: write a file name, relative to the file", f)
		}
		path := p.path(it.Value)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, p.errAt(it, "%s: %s: %v; create it or fix the name", f, path, unwrapPath(err))
		}
		pairs, err := ParseEnvFile(path, b)
		if err != nil {
			return nil, p.errAt(it, "%s: %v", f, err)
		}
		for _, kv := range pairs {
			out = append(out, kv[0]+"="+kv[1])
		}
	}
	return mergeEnv(out), nil
}

// unwrapPath drops the path os.ReadFile's error repeats.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// mergeEnv joins KEY=VALUE lists, a later list's (or entry's) value of a
// key replacing an earlier one in its place.
func mergeEnv(lists ...[]string) []string {
	var out []string
	at := map[string]int{}
	for _, l := range lists {
		for _, kv := range l {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := at[k]; ok {
				out[i] = kv
				continue
			}
			at[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}
