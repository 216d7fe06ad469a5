// Package helper is the privileged side of nsrun: what `sudo nsrun-helper
// install` does as root, once per user and boot, and what uninstall undoes.
// docs/helper.md ("What install does as root", "The helper's threat model")
// lists every change and what each rule defends.
//
// Trusted: root and the admin's root-owned config. Not trusted: the user
// and everything in their gateway and runs. So the helper verifies the
// gateway namespaces from descriptors it opened itself (VerifyGateway),
// reads no file of the user's (its records live in /run/nsrun-helper),
// keeps the gateway's mounts in root's /run/nsrun-helper/gw/UID with a
// read-only view of them at /run/user/UID/nsrun (view.go), reaches every
// path under /run/user/UID through verified folder fds without following
// symlinks, starts the user's processes with nothing of root's, bounds
// every wait on them, and serialises installs with one host-wide lock.
//
// Every change is a Step: Describe says what it will do (the dry run
// prints exactly these), Done only looks whether it is already so (install
// twice changes nothing), Apply does it. Signals are held during a step;
// an install stopped half-way is undone.
//
// It is not a stable API: it is importable only because the project keeps
// it at the top of the module, and it may change in any release. Go users
// import nstest (see docs/nstest.md).
package helper
