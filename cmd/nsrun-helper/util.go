package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os/user"
	"strconv"
)

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func lookupUID(name string) (int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, fmt.Errorf("--user: no user %q on this machine", name)
	}
	return strconv.Atoi(u.Uid)
}
