package helper

import (
	"testing"

	"github.com/nsrun/nsrun/install"
)

// TestInNS: a record with a cookie is in the namespace of that cookie
// only, whatever its inode (the kernel gives a dead namespace's inode to
// the next new one); one of an older helper, without a cookie, is matched
// by its inode.
func TestInNS(t *testing.T) {
	here := nsID{Ino: 4026532178, Cookie: 9}
	for _, c := range []struct {
		r    install.Record
		want bool
	}{
		{install.Record{NetNS: 4026532178, NetNSCookie: 9}, true},
		{install.Record{NetNS: 4026532178, NetNSCookie: 8}, false}, // a dead namespace of the same inode
		{install.Record{NetNS: 4026532100, NetNSCookie: 9}, true},
		{install.Record{NetNS: 4026532178}, true}, // an older helper's
		{install.Record{NetNS: 4026532100}, false},
	} {
		if got := inNS(c.r, here); got != c.want {
			t.Errorf("inNS(netns %d cookie %d) = %v, want %v", c.r.NetNS, c.r.NetNSCookie, got, c.want)
		}
	}
	ns, err := netNS()
	if err != nil || ns.Ino == 0 || ns.Cookie == 0 {
		t.Errorf("netNS() = %+v, %v; want an inode and a cookie", ns, err)
	}
}
