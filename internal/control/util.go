package control

import (
	"bytes"
	"io"
)

func cutLine(b []byte) (line, rest []byte, ok bool) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i], b[i+1:], true
	}
	return b, nil, false
}

// prepend reads rest, then r.
func prepend(rest []byte, r io.Reader) io.Reader {
	return io.MultiReader(bytes.NewReader(append([]byte(nil), rest...)), r)
}
