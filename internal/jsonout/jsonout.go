// Package jsonout writes the JSON that nsrun and nsrun-helper print for
// scripts (--json), in one format: indented by two spaces, one value, a
// newline at its end. It imports nothing of nsrun's, so that the helper
// may use it and stay small.
package jsonout

import (
	"encoding/json"
	"fmt"
	"io"
)

// Write prints v to w as indented JSON followed by a newline.
func Write(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}
