// Package helper is the privileged side of nsrun: what `sudo nsrun-helper
// install` does as root, once per user and boot, and what uninstall undoes.
//
// As root, for one unprivileged user, install:
//
//  1. creates /run/user/UID (owned by the user, 0700) if logind has not,
//     and /run/user/UID/nsrun, owned by root, 0755;
//  2. starts a process *as the user* that creates a user namespace (so the
//     user owns it: uid map "0 UID 1") with a network namespace inside —
//     the gateway — and bind-mounts both onto root-owned files
//     /run/user/UID/nsrun/{userns,netns};
//  3. creates the veth nsrunUID (host, e.g. 172.18.255.1/30) whose peer
//     "uplink" is created inside the gateway (172.18.255.2/30), and sets
//     the gateway's default route, IPv4 forwarding and masquerade;
//  4. sets route_localnet=1 on nsrunUID only, and net.ipv4.ip_forward=1
//     (the previous value is kept under /run/nsrun-helper and restored by
//     the last uninstall);
//  5. writes the host table "ip nsrun-UID" (package nft): DNS DNAT to the
//     host's resolver, anti-spoofing, loopback closed but for that DNS,
//     forward accept and masquerade;
//  6. writes the record /run/user/UID/nsrun/install.json.
//
// It parses no configuration file of the user's (it reads only the
// nameserver lines of the root-owned /etc/resolv.conf), runs no other
// program (only itself, re-executed as the user, to create the user
// namespace), and follows no symlink under /run/user/UID: every path there
// is opened with O_NOFOLLOW relative to directory fds it has verified, and
// mounts and writes go through those fds, so a user who swaps a folder for
// a symlink gets an error, never a mount or a file elsewhere.
//
// Every change is a Step: Describe says what it will do (the dry run
// prints exactly these), Done says whether it is already so (install twice
// changes nothing), Apply does it.
package helper
