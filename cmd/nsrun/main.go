// Command nsrun runs programs as hosts on networks of their own, rootless.
// See README.md for the user's guide; the command line is package cli.
package main

import (
	"os"

	"github.com/nsrun/nsrun/internal/cli"
	"github.com/nsrun/nsrun/internal/guest"
)

func main() {
	guest.InitMain() // a node's init never returns from it
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
