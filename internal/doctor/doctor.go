// Package doctor checks what nsrun needs of the machine or container it
// runs in (user namespaces and what limits them, /proc, sethostname, the
// qdiscs, /dev/net/tun, the helper) and says what works and what to
// change: `nsrun doctor`.
package doctor

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Status is how a check came out.
type Status int

const (
	// OK: works as on a host.
	OK Status = iota
	// Note: runs work, with a difference the finding names.
	Note
	// Problem: runs cannot start until it is fixed.
	Problem
)

// String is the status as doctor prints it.
func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Note:
		return "note"
	}
	return "FAIL"
}

// Finding is the outcome of one check.
type Finding struct {
	Check  string
	Status Status
	Detail string
	Fix    string // what to change, or ""
}

// Probe is what a child in fresh user, mount, pid, UTS and network
// namespaces could do (Run); nil errors succeeded.
type Probe struct {
	Clone       error // creating the namespaces (and writing the id maps)
	MountProc   error // a fresh /proc of the new pid namespace
	Sethostname error
	Netem       error // a netem qdisc on the new namespace's lo
	Tbf         error // a tbf qdisc on lo
}

// Env is what the checks read; Host is the real one.
type Env struct {
	ReadFile func(path string) ([]byte, error)
	Getenv   func(key string) string
	// OpenTun opens /dev/net/tun for reading and writing.
	OpenTun func() error
	// Probe runs the namespace probe.
	Probe func() Probe
	// Helper says whether nsrun-helper is installed for this user, or
	// why not.
	Helper func() error
}

// Seccomp profile and AppArmor profile shipped in the repository.
const (
	SeccompProfile  = "contrib/seccomp/nsrun.json"
	AppArmorProfile = "contrib/apparmor/nsrun"
)

// Check runs every check.
func Check(env Env) []Finding {
	p := env.Probe()
	var out []Finding
	out = append(out, userNamespaces(env, p)...)
	if p.Clone == nil {
		out = append(out, proc(p), hostname(env, p), qdisc("netem", "sch_netem", p.Netem), qdisc("tbf", "sch_tbf", p.Tbf))
	}
	out = append(out, tun(env.OpenTun()), helper(env.Helper()))
	return out
}

// userNamespaces explains a refused user namespace by what refuses it.
func userNamespaces(env Env, p Probe) []Finding {
	max := strings.TrimSpace(readString(env, "/proc/sys/user/max_user_namespaces"))
	restricted := strings.TrimSpace(readString(env, "/proc/sys/kernel/apparmor_restrict_unprivileged_userns")) == "1"
	filtered := seccompMode(readString(env, "/proc/self/status")) == "2"
	if p.Clone == nil {
		f := Finding{Check: "user namespaces", Status: OK, Detail: "a user namespace with its own mount, pid, UTS and network namespaces can be made"}
		if filtered {
			f.Detail += " (under a seccomp filter: a container)"
		}
		return []Finding{f}
	}
	var out []Finding
	switch {
	case strings.TrimSpace(readString(env, "/proc/sys/kernel/unprivileged_userns_clone")) == "0":
		out = append(out, Finding{Check: "user namespaces", Status: Problem,
			Detail: "kernel.unprivileged_userns_clone is 0 (Debian's switch): unprivileged user namespaces are off",
			Fix:    "sudo sysctl -w kernel.unprivileged_userns_clone=1 (and put it in /etc/sysctl.d/ to keep it)"})
	case max == "0":
		out = append(out, Finding{Check: "user namespaces", Status: Problem,
			Detail: "user.max_user_namespaces is 0: no user namespace can be made",
			Fix:    "sudo sysctl -w user.max_user_namespaces=15000 (and put it in /etc/sysctl.d/ to keep it)"})
	case restricted:
		out = append(out, Finding{Check: "user namespaces", Status: Problem,
			Detail: "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1, Ubuntu 23.10 and later): " + p.Clone.Error(),
			Fix: "install nsrun's AppArmor profile (" + AppArmorProfile + ", its path line naming where nsrun is installed): " +
				"sudo install -m 0644 " + AppArmorProfile + " /etc/apparmor.d/nsrun && sudo apparmor_parser -r /etc/apparmor.d/nsrun; see docs/ci.md"})
	case kubernetes(env) && identityMapped(readString(env, "/proc/self/uid_map")):
		out = append(out, Finding{Check: "user namespaces", Status: Problem,
			Detail: "a Kubernetes pod without a user namespace of its own, whose seccomp and capabilities refuse nsrun one: " + p.Clone.Error(),
			Fix:    "run the pod with hostUsers: false (Kubernetes 1.30+, user namespaces on the nodes); the Job in docs/ci.md shows the securityContext"})
	case filtered && errors.Is(p.Clone, unix.EPERM):
		out = append(out, Finding{Check: "user namespaces", Status: Problem,
			Detail: "the container's seccomp profile refuses user namespaces (docker's default does, to containers without CAP_SYS_ADMIN): " + p.Clone.Error(),
			Fix:    "docker run --security-opt seccomp=" + SeccompProfile + " (nsrun's profile: docker's default plus what nsrun needs); see docs/ci.md"})
	default:
		out = append(out, Finding{Check: "user namespaces", Status: Problem,
			Detail: "no user namespace can be made: " + p.Clone.Error(),
			Fix:    "see docs/ci.md for what to allow"})
	}
	return out
}

// proc says whether a run gets a /proc of its own.
func proc(p Probe) Finding {
	if p.MountProc == nil {
		return Finding{Check: "/proc", Status: OK, Detail: "a fresh /proc of a run's pid namespace can be mounted"}
	}
	return Finding{Check: "/proc", Status: Note,
		Detail: "no fresh /proc can be mounted (" + p.MountProc.Error() + "; the container masks paths under /proc): runs keep the container's /proc and its read-only /proc/sys, so ps in a node shows the container's processes and nodes keep the kernel's IPv6 defaults; processes still end with their run",
		Fix:    "podman run --security-opt unmask=ALL, or docker run --security-opt systempaths=unconfined, gives runs their own /proc"}
}

// hostname says whether nodes get their names as hostnames.
func hostname(env Env, p Probe) Finding {
	if p.Sethostname == nil {
		return Finding{Check: "hostname", Status: OK, Detail: "nodes get their names as hostnames"}
	}
	f := Finding{Check: "hostname", Status: Note,
		Detail: "sethostname is refused (" + p.Sethostname.Error() + "): nodes keep the container's hostname; their names still resolve through the run's /etc/hosts"}
	if seccompMode(readString(env, "/proc/self/status")) == "2" {
		f.Fix = "the container's seccomp profile allows sethostname only with CAP_SYS_ADMIN: run it with --security-opt seccomp=" + SeccompProfile
	}
	return f
}

// qdisc says whether link faults and shaping that need the qdisc work.
func qdisc(name, module string, err error) Finding {
	if err == nil {
		return Finding{Check: "qdisc " + name, Status: OK, Detail: name + " works: link faults and shaping (net flaky, net latency, link options)"}
	}
	return Finding{Check: "qdisc " + name, Status: Note,
		Detail: name + " cannot be added (" + err.Error() + "): net flaky, net latency and link shaping fail; everything else works",
		Fix:    "sudo modprobe " + module + " on the host (a container cannot load it)"}
}

// tun says whether tap links (VM nodes) work.
func tun(err error) Finding {
	switch {
	case err == nil:
		return Finding{Check: "/dev/net/tun", Status: OK, Detail: "tap links (VM nodes) work"}
	case errors.Is(err, unix.ENOENT):
		return Finding{Check: "/dev/net/tun", Status: Note, Detail: "there is no /dev/net/tun: tap links (VM nodes) fail; everything else works",
			Fix: "docker/podman run --device /dev/net/tun; on a host: sudo modprobe tun"}
	}
	return Finding{Check: "/dev/net/tun", Status: Note, Detail: "/dev/net/tun cannot be opened (" + err.Error() + "): tap links (VM nodes) fail; everything else works",
		Fix: "sudo chmod 0666 /dev/net/tun (most distributions ship it so)"}
}

// helper says whether runs get an uplink.
func helper(err error) Finding {
	if err == nil {
		return Finding{Check: "helper", Status: OK, Detail: "nsrun-helper is installed for you: runs get an uplink (--isolated: none)"}
	}
	return Finding{Check: "helper", Status: Note, Detail: "nsrun-helper is not installed for you (" + err.Error() + "): every run is isolated, with no uplink (what CI jobs usually want)",
		Fix: "for an uplink on a host: sudo nsrun-helper install"}
}

// Print writes the findings and a verdict; it returns the exit code:
// 0 when runs work here, 1 when something stops them.
func Print(w io.Writer, fs []Finding) int {
	code := 0
	for _, f := range fs {
		fmt.Fprintf(w, "%-5s %s: %s\n", f.Status, f.Check, f.Detail)
		if f.Fix != "" && f.Status != OK {
			fmt.Fprintf(w, "      fix: %s\n", f.Fix)
		}
		if f.Status == Problem {
			code = 1
		}
	}
	if code == 0 {
		fmt.Fprintln(w, "runs work here (the notes say what differs)")
	} else {
		fmt.Fprintln(w, "runs cannot start here: fix the FAIL lines")
	}
	return code
}

func readString(env Env, path string) string {
	b, err := env.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

// seccompMode is the Seccomp: field of /proc/self/status (2: a filter).
func seccompMode(status string) string {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "Seccomp:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// kubernetes says whether this runs in a Kubernetes pod.
func kubernetes(env Env) bool { return env.Getenv("KUBERNETES_SERVICE_HOST") != "" }

// identityMapped says whether a uid_map is the initial user namespace's
// (no user namespace of the pod's own).
func identityMapped(uidMap string) bool {
	f := strings.Fields(uidMap)
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == strconv.FormatUint(1<<32-1, 10)
}
