// Command gatecheck imports package nstest and does nothing else: it
// stands for any tool built with nstest linked in, as the e2e tests'
// setuid-root copy of it (TestSetuidNotALauncher). Run as itself, it
// prints "ran as itself".
package main

import (
	"fmt"

	_ "github.com/nsrun/nsrun/nstest"
)

func main() { fmt.Println("ran as itself") }
