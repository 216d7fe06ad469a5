package main

// Linked with cgo and statically, as nsrun is (its launcher is C), so that
// go-hello pays the same runtime start-up.

import "C"
