package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/install"
)

// mountsOf lists the mounts (mount point, root, type) whose mount point
// is under /run/user/UID/ or in the helper's /run/nsrun-helper/gw/UID.
func mountsOf(t *testing.T, u testUser) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	userDir, gw := fmt.Sprintf("/run/user/%d/", u.UID), fmt.Sprintf("/run/nsrun-helper/gw/%d", u.UID)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if strings.HasPrefix(f[4], userDir) || strings.HasPrefix(f[4], gw) || strings.HasSuffix(f[3], gw) {
			out = append(out, f[4]+" ("+f[3]+")")
		}
	}
	return out
}

// TestHelperRenameLoopLeavesNothing: the attack of issue 20 item 4. The
// user moves the helper's folder aside and has install run again, over
// and over: each install made a new gateway, whose namespace mounts
// stayed (in the renamed folder) after uninstall, usable by the user
// until reboot. In the host's mount namespace the folder is now a mount
// point, which cannot be renamed; so the user renames it from a mount
// namespace of their own made before the install, where it is none (the
// rename moves the mount in the host's namespace too). However often the
// user does so, install keeps one gateway and one view, and uninstall
// leaves no mount behind.
func TestHelperRenameLoopLeavesNothing(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	h := newSimHost(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The user's shell, in a user and mount namespace of their own.
	sh := u.command(ctx, "unshare", "-Urm", "--propagation", "private", "sh", "-c", `while read -r line; do sh -c "$line" 2>&1; echo "rc $?"; done`)
	in, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sh.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); _ = sh.Wait() })
	lines := bufio.NewScanner(out)
	asUser := func(cmd string) string {
		t.Helper()
		if _, err := io.WriteString(in, cmd+"\n"); err != nil {
			t.Fatal(err)
		}
		var said []string
		for lines.Scan() {
			if rc, ok := strings.CutPrefix(lines.Text(), "rc "); ok {
				return rc + " " + strings.Join(said, "\n")
			}
			said = append(said, lines.Text())
		}
		t.Fatalf("the user's shell ended: %v", lines.Err())
		return ""
	}
	dir := fmt.Sprintf("/run/user/%d", u.UID)
	t.Cleanup(func() { shOK(t, "rm -rf "+dir+"/leak*") })
	// (A folder made before the install is seen from the user's
	// namespace as well: the folder is the same, only mounts differ.)
	h.install(t, u)
	want := len(mountsOf(t, u)) // the view, and the gateway's namespaces in it and in gw/UID
	t.Logf("after install: %s", strings.Join(mountsOf(t, u), ", "))
	const rounds = 8
	for i := range rounds {
		// (A space in the name: the mount table escapes it.)
		if got := asUser(fmt.Sprintf("mv %[1]s/nsrun '%[1]s/leak %[2]d'", dir, i)); got != "0 " {
			t.Fatalf("round %d: the user could not rename the folder in their own mount namespace: %q; the test proves nothing", i, got)
		}
		// In the host's namespace, what was mounted moved with the folder.
		if got := strings.Join(mountsOf(t, u), "\n"); !strings.Contains(got, fmt.Sprintf(`%s/leak\040%d`, dir, i)) {
			t.Fatalf("round %d: after the rename, no mount is in 'leak %d':\n%s", i, i, got)
		}
		if r := h.helper(t, "install", "--user", u.Name, "--resolver", "127.0.0.1:15399"); r.Code != 0 {
			t.Fatalf("round %d: install after the rename: exit %d\n%s\n%s", i, r.Code, r.Stdout, r.Stderr)
		}
		if got := mountsOf(t, u); len(got) != want {
			t.Errorf("round %d: %d mounts of the user's gateway, want %d:\n%s", i, len(got), want, strings.Join(got, "\n"))
		}
	}
	if r := h.helper(t, "uninstall", "--user", u.Name); r.Code != 0 {
		t.Fatalf("uninstall: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	delete(h.installed, u.Name)
	if got := mountsOf(t, u); len(got) != 0 {
		t.Errorf("after %d renames and uninstall, mounts are left:\n%s", rounds, strings.Join(got, "\n"))
	}
	if _, err := os.Stat(fmt.Sprintf("/run/nsrun-helper/gw/%d", u.UID)); !os.IsNotExist(err) {
		t.Errorf("the gateway folder is left: %v", err)
	}
}

// TestHelperUpgradeKeepsGateway: a gateway that a helper before issue 20
// mounted in /run/user/UID/nsrun itself (made here as it did: namespaces
// the user created, bind-mounted there by root) is kept by the first
// install of this helper, moved into /run/nsrun-helper/gw/UID: the
// user's live runs keep their uplink. The old mounts go, and uninstall
// leaves none.
func TestHelperUpgradeKeepsGateway(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	h := newSimHost(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	holder := u.command(ctx, "unshare", "--user", "--map-root-user", "--net", "sh", "-c", "echo $$; exec sleep 60")
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	var pid int
	if _, err := fmt.Fscan(out, &pid); err != nil {
		t.Fatal(err)
	}
	dir := fmt.Sprintf("/run/user/%d", u.UID)
	t.Cleanup(func() {
		_ = exec.Command("umount", "-l", dir+"/nsrun/userns").Run()
		_ = exec.Command("umount", "-l", dir+"/nsrun/netns").Run()
	})
	shOK(t, fmt.Sprintf(`test -d %[1]s || { mkdir -m 700 %[1]s; chown %[2]d:%[3]d %[1]s; }
mkdir -m 755 %[1]s/nsrun
touch %[1]s/nsrun/userns %[1]s/nsrun/netns
mount --bind /proc/%[4]d/ns/user %[1]s/nsrun/userns
mount --bind /proc/%[4]d/ns/net %[1]s/nsrun/netns`, dir, u.UID, u.GID, pid))
	oldNet := nsInode(t, fmt.Sprintf("/proc/%d/ns/net", pid))
	h.install(t, u)
	if got := nsInode(t, fmt.Sprintf("/run/nsrun-helper/gw/%d/netns", u.UID)); got != oldNet {
		t.Errorf("install made a new gateway (netns %d) instead of keeping the old one (%d)", got, oldNet)
	}
	if got := nsInode(t, install.NetNSPath(u.UID)); got != oldNet {
		t.Errorf("the user's view shows netns %d, not the kept gateway %d", got, oldNet)
	}
	mounts := mountsOf(t, u)
	if len(mounts) != 5 {
		t.Errorf("%d mounts of the user's gateway after the upgrade, want 5 (2 in gw, the view and its 2):\n%s", len(mounts), strings.Join(mounts, "\n"))
	}
	if r := h.helper(t, "uninstall", "--user", u.Name); r.Code != 0 {
		t.Fatalf("uninstall: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	delete(h.installed, u.Name)
	if got := mountsOf(t, u); len(got) != 0 {
		t.Errorf("after uninstall, mounts are left:\n%s", strings.Join(got, "\n"))
	}
}
