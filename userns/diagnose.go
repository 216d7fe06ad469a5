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
		b.WriteString("unprivileged user namespaces seem unavailable here (a container or seccomp policy may forbid them); run nsrun on the host or allow CLONE_NEWUSER")
	}
	return strings.TrimSpace(b.String())
}
