package main

import (
	"fmt"
	"os/user"
	"strconv"
)

func lookupUID(name string) (int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, fmt.Errorf("--user: no user %q on this machine", name)
	}
	return strconv.Atoi(u.Uid)
}
