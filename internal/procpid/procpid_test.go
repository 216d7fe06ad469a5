package procpid

import (
	"os"
	"testing"
)

func TestInProcOwnNamespace(t *testing.T) {
	got, err := InProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got != os.Getpid() {
		t.Fatalf("InProc(%d) = %d, want the same pid", os.Getpid(), got)
	}
	p, err := Path(os.Getpid(), "ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
}

func TestFdinfoPid(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nPid:\t4321\nNSpid:\t4321\t7\n", 4321, true},
		{"pos:\t0\nPid:\t-1\n", -1, false},
		{"pos:\t0\nPid:\t0\n", 0, false},
		{"pos:\t0\n", 0, false},
	} {
		got, ok := fdinfoPid([]byte(c.in))
		if got != c.want || ok != c.ok {
			t.Errorf("fdinfoPid(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
