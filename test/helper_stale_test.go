package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nsrun/nsrun/internal/install"
)

// nsInode is the inode of the network namespace at path.
func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatalf("inode of %s: %v", path, err)
	}
	return st.Ino
}

// TestHelperRecordOfDeadNamespace: a user whose install's network
// namespace died without an uninstall (a killed test, a removed
// container) leaves a record naming that namespace's inode, and the
// kernel gives the lowest free inode to the next new namespace. That
// namespace is not where the user installed: an install there must not
// take the user into its guard, put back their table, or read forwarding
// as on. (TestHelperRulesetFlushed and others failed so, in a simulated
// host that got a dead one's inode.)
func TestHelperRecordOfDeadNamespace(t *testing.T) {
	ua, ub := unprivileged(t), secondUser(t)
	requireRoot(t)
	// B installs into a namespace that then dies without B's uninstall.
	dead := fmt.Sprintf("nsrd-%d", os.Getpid())
	shOK(t, "ip netns add "+dead)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", dead).Run() })
	deadIno := nsInode(t, "/run/netns/"+dead)
	d := &simHost{Name: dead, installed: map[string]bool{}}
	if r := d.helper(t, "install", "--user", ub.Name, "--resolver", "127.0.0.1:15399", "--runs-cidr", "10.98.0.0/19"); r.Code != 0 {
		t.Fatalf("install for %s: exit %d\n%s\n%s", ub.Name, r.Code, r.Stdout, r.Stderr)
	}
	// B's record goes at the end, by an uninstall in a namespace of its
	// own (after every other clean-up: they run last in, first out).
	t.Cleanup(func() {
		w := fmt.Sprintf("nsrw-%d", os.Getpid())
		shOK(t, "ip netns add "+w)
		defer func() { _ = exec.Command("ip", "netns", "del", w).Run() }()
		if r := (&simHost{Name: w}).helper(t, "uninstall", "--user", ub.Name); r.Code != 0 {
			t.Errorf("cleanup: uninstall %s: %s %s", ub.Name, r.Stdout, r.Stderr)
		}
	})
	// The saved host state of the dead namespace is a leftover of another
	// kind (TestHelperLeftoverHostState); removed while the namespace
	// lives, so that no later namespace's file of the same name is.
	_ = os.Remove(fmt.Sprintf("/run/nsrun-helper/host-%d.json", deadIno))
	shOK(t, "ip netns del "+dead)

	h := newSimHost(t, false)
	ino := nsInode(t, "/run/netns/"+h.Name)
	recPath := fmt.Sprintf("/run/nsrun-helper/users/%d.json", ub.UID)
	if ino == deadIno {
		t.Logf("the simulated host got the dead namespace's inode %d", ino)
	} else {
		// Another namespace got it first: B's record names the inode
		// this one got, as it would have.
		b, err := os.ReadFile(recPath)
		if err != nil {
			t.Fatal(err)
		}
		var rec map[string]any
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		if rec["netns"] != float64(deadIno) {
			t.Fatalf("B's record names namespace %v, not the one B installed into (%d)", rec["netns"], deadIno)
		}
		rec["netns"] = ino
		b, _ = json.MarshalIndent(rec, "", "  ")
		if err := os.WriteFile(recPath, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("B's record now names inode %d, the simulated host's (the dead namespace's was %d)", ino, deadIno)
	}

	a, _ := h.wire(t, "a", 1)
	b, bAddr := h.wire(t, "b", 2)
	b.start(t, "listen", bAddr+":7020")
	ra := h.install(t, ua)
	if got := h.sh(t, "nft list tables"); strings.Contains(got, install.TableName(ub.UID)) {
		t.Errorf("A's install put B's table into a namespace B never installed into:\n%s", got)
	}
	if got := h.sh(t, "nft list set inet nsrun-guard gateways"); strings.Contains(got, fmt.Sprintf(`"nsrun%d"`, ub.UID)) || !strings.Contains(got, `"`+ra.Interface+`"`) {
		t.Errorf("guard set: %s; want A's interface only", got)
	}
	if out := probeIn(t, a.Name, "dial", bAddr+":7020", "1s"); !strings.HasPrefix(out, "unreachable") {
		t.Errorf("a -> b through the host (forwarding was off): %q, want it dropped", out)
	}
	if r := h.helper(t, "uninstall", "--user", ua.Name); r.Code != 0 {
		t.Fatalf("uninstall: %s %s", r.Stdout, r.Stderr)
	}
	delete(h.installed, ua.Name)
	if got := h.sysctl(t, "net.ipv4.ip_forward", ""); got != "0" {
		t.Errorf("ip_forward after A's uninstall, the last here = %s, want 0 as before", got)
	}
	if got := h.sh(t, "nft list tables"); strings.Contains(got, "nsrun") {
		t.Errorf("tables left after the last uninstall: %s", got)
	}
	if _, err := os.Stat(filepath.Join("/run/nsrun-helper", fmt.Sprintf("host-%d.json", ino))); err == nil {
		t.Errorf("the saved host state outlives the last uninstall here")
	}
}
