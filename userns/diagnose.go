package userns

import (
	"fmt"
	"os"
	"strings"
)

// DiagnoseUserNS explains why unprivileged user namespaces may be
// unavailable on this machine, naming the sysctl and how to change it.
func DiagnoseUserNS() string {
	var b strings.Builder
	check := func(path, bad, fix string) {
		v, err := os.ReadFile(path)
		if err == nil && strings.TrimSpace(string(v)) == bad {
			fmt.Fprintf(&b, "%s is %s: %s\n", path, bad, fix)
		}
	}
	check("/proc/sys/kernel/unprivileged_userns_clone", "0",
		"unprivileged user namespaces are disabled; enable them with `sudo sysctl -w kernel.unprivileged_userns_clone=1`")
	check("/proc/sys/user/max_user_namespaces", "0",
		"user namespaces are disabled; enable them with `sudo sysctl -w user.max_user_namespaces=15000`")
	check("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1",
		"AppArmor restricts unprivileged user namespaces; allow them with `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` or an AppArmor profile for nsrun")
	if b.Len() == 0 {
		status, _ := os.ReadFile("/proc/self/status")
		if strings.Contains(string(status), "\nSeccomp:\t2") {
			b.WriteString("this container's seccomp profile refuses user namespaces (docker's default does, to containers without CAP_SYS_ADMIN): run it with --security-opt seccomp=contrib/seccomp/nsrun.json from nsrun's repository (see docs/ci.md)")
		} else {
			b.WriteString("unprivileged user namespaces seem unavailable here (a container or seccomp policy may forbid them); run nsrun on the host or allow CLONE_NEWUSER")
		}
	}
	b.WriteString("\n`nsrun doctor` checks what nsrun needs here and says what to change")
	return strings.TrimSpace(b.String())
}
