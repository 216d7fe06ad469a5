// Command nsrun runs programs as hosts on networks of their own, rootless.
// See README.md for the user's guide; the command line is package cli.
package main

import (
	"os"

	"github.com/nsrun/nsrun/internal/cli"
)

// main runs the command line. A node's init (package guest) never gets
// here: it is C that runs before the Go runtime (package launch).
func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
