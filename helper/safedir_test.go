package helper

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/install"
)

// attacker is the user, uid nobody, who owns the folder root makes a
// folder in (as /run/user/UID is the user's): the moment root's new
// folder "nsrun" appears, it swaps it for its own entry "mine" (one
// atomic rename, RENAME_EXCHANGE) — what a user can do to a folder of
// root's inside a folder of their own.
//
// It runs on a thread of its own whose file system uid and gid are
// nobody's (setfsuid: every permission check of its renames is the
// user's), pinned to the CPU of the thread that calls mkdirAt, at a
// real-time priority: root's mkdirat queues the inotify event that wakes
// it, and it preempts root before root's next instruction, so the swap
// lands between root's mkdirat and its openat every time, not by chance.
type attacker struct {
	ifd, pfd int
	swaps    atomic.Int64 // events for "nsrun" handled
	done     chan struct{}
}

const nobody = 65534

// startAttacker watches the folder parent (open as pfd) from a thread
// pinned to cpu. It reports when it is ready or why it cannot run.
func startAttacker(parent string, pfd, cpu int) (*attacker, error) {
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if _, err := unix.InotifyAddWatch(ifd, parent, unix.IN_CREATE); err != nil {
		unix.Close(ifd)
		return nil, err
	}
	a := &attacker{ifd: ifd, pfd: pfd, done: make(chan struct{})}
	ready := make(chan error)
	go func() {
		// The thread is never unlocked: with its fsuid and priority it
		// must die with this goroutine, not run another.
		runtime.LockOSThread()
		defer close(a.done)
		if err := pin(cpu); err != nil {
			ready <- err
			return
		}
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: 1 /* SCHED_FIFO */, Priority: 1}
		if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
			ready <- err
			return
		}
		_ = unix.Setfsgid(nobody)
		_ = unix.Setfsuid(nobody)
		if prev, _ := unix.SetfsuidRetUid(nobody); prev != nobody {
			ready <- errors.New("setfsuid did not take")
			return
		}
		ready <- nil
		buf := make([]byte, 4096)
		for {
			n, err := unix.Read(a.ifd, buf)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name, _, _ := bytes.Cut(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)], []byte{0})
				off += unix.SizeofInotifyEvent + int(ev.Len)
				switch string(name) {
				case "nsrun":
					_ = unix.Renameat2(a.pfd, "mine", a.pfd, "nsrun", unix.RENAME_EXCHANGE)
					a.swaps.Add(1)
				case "stop":
					return
				}
			}
		}
	}()
	if err := <-ready; err != nil {
		<-a.done
		unix.Close(ifd)
		return nil, err
	}
	return a, nil
}

// stop ends the attacker (it reads the creation of "stop" in parent).
func (a *attacker) stop(parent string) {
	_ = os.Mkdir(filepath.Join(parent, "stop"), 0o700)
	<-a.done
	unix.Close(a.ifd)
}

// waitSwaps waits until the attacker has handled n events for "nsrun".
func (a *attacker) waitSwaps(n int64) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if a.swaps.Load() >= n {
			return true
		}
	}
	return false
}

// pin binds the calling thread to cpu.
func pin(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set)
}

// TestMkdirAtSwapped performs, for real, the attack mkdirAt guards
// against: install makes /run/user/UID/nsrun (root's) inside the user's
// own /run/user/UID, and between its mkdirat and its openat the user
// swaps the new folder for a folder of their own holding a planted file,
// or for a symlink to a folder of root's elsewhere. mkdirAt must refuse
// both (install.ErrUnsafe; a symlink is not even opened), and never
// chown or chmod what the user put there or what the symlink points at.
func TestMkdirAtSwapped(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: mkdirAt runs as root, against a user's folder")
	}
	var cpus unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cpus); err != nil {
		t.Fatal(err)
	}
	cpu := 0
	for !cpus.IsSet(cpu) {
		cpu++
	}
	// The attacker's thread must find a P at once when it wakes.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))

	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, parent, target string) // makes the user's "mine"
	}{
		{"folder", func(t *testing.T, parent, _ string) {
			mine := filepath.Join(parent, "mine")
			if err := os.Mkdir(mine, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(mine, "planted"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{mine, filepath.Join(mine, "planted")} {
				if err := os.Lchown(p, nobody, nobody); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"symlink", func(t *testing.T, parent, target string) {
			mine := filepath.Join(parent, "mine")
			if err := os.Symlink(target, mine); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(mine, nobody, nobody); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			if err := os.Chown(parent, nobody, nobody); err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(t.TempDir(), "roots") // root's, empty, 0700
			if err := os.Mkdir(target, 0o700); err != nil {
				t.Fatal(err)
			}
			pf, err := os.Open(parent)
			if err != nil {
				t.Fatal(err)
			}
			defer pf.Close()
			a, err := startAttacker(parent, int(pf.Fd()), cpu)
			if err != nil {
				t.Skipf("cannot run the attacker at a real-time priority here: %v", err)
			}
			defer a.stop(parent)

			type result struct {
				err  error
				made bool
			}
			const rounds = 20
			results, next := make(chan result), make(chan struct{})
			defer close(next)
			go func() {
				runtime.LockOSThread() // never unlocked: the thread dies pinned
				if err := pin(cpu); err != nil {
					results <- result{err: err}
					return
				}
				for i := 0; i < rounds; i++ {
					if _, ok := <-next; !ok {
						return
					}
					made, err := mkdirAt(pf, "nsrun", 0o755, 0, 0) // as stepNsDir calls it
					results <- result{err, made}
				}
			}()
			refused := 0
			for i := 0; i < rounds; i++ {
				tc.plant(t, parent, target)
				next <- struct{}{}
				r := <-results
				if !r.made && r.err != nil {
					t.Fatalf("round %d: %v", i, r.err)
				}
				if !a.waitSwaps(int64(i + 1)) {
					t.Fatalf("round %d: the attacker did not see the folder made", i)
				}
				// What root did to what the user planted.
				var st unix.Stat_t
				if err := unix.Stat(target, &st); err != nil || st.Uid != 0 || st.Mode&0o7777 != 0o700 {
					t.Fatalf("round %d: the folder the symlink points at was changed: uid %d mode %o (%v); mkdirAt: %v", i, st.Uid, st.Mode&0o7777, err, r.err)
				}
				for _, name := range []string{"nsrun", "mine"} {
					p := filepath.Join(parent, name)
					if _, err := os.Lstat(filepath.Join(p, "planted")); err != nil {
						continue // root's own folder, or the symlink
					}
					if err := unix.Lstat(p, &st); err != nil || st.Uid != nobody || st.Mode&0o7777 != 0o755 {
						t.Fatalf("round %d: root took the user's folder: uid %d mode %o (%v); mkdirAt: %v", i, st.Uid, st.Mode&0o7777, err, r.err)
					}
				}
				if r.err != nil {
					if tc.name == "folder" && !errors.Is(r.err, install.ErrUnsafe) {
						t.Errorf("round %d: a swapped folder refused with %v, not ErrUnsafe", i, r.err)
					}
					refused++
				}
				for _, name := range []string{"nsrun", "mine"} {
					if err := os.RemoveAll(filepath.Join(parent, name)); err != nil {
						t.Fatal(err)
					}
				}
			}
			t.Logf("%d of %d swaps landed between mkdirat and openat, each refused", refused, rounds)
			if refused == 0 {
				t.Errorf("no swap landed between mkdirat and openat in %d rounds: the test proved nothing", rounds)
			}
		})
	}
}
