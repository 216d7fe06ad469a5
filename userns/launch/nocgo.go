//go:build !cgo

package launch

// The launcher is C that runs before the Go runtime; without cgo there is
// none. This undefined name makes the build say so first.
var _ = launcher_needs_cgo__build_with_CGO_ENABLED_1_and_a_C_compiler_gcc
