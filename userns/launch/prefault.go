package launch

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// heapPrefault is how much of the Go heap, from its first objects upward,
// the supervisor maps at start: about what a run of a few nodes touches.
const heapPrefault = 2 << 20

func init() {
	if Get().Launched {
		prefaultHeap(heapPrefault)
	}
}

// prefaultHeap maps size bytes of the Go heap, from the page of a fresh
// object upward, with one madvise(MADV_POPULATE_WRITE). On a paravirtual
// machine a page fault costs 10–30 µs, and a run touches a few hundred fresh
// heap pages (netlink allocates a 64 KiB buffer per request); one call maps
// them for under a microsecond each. The pages are zero, as fresh heap
// pages are. Where the mapping is shorter, a smaller size is tried; a
// failure changes nothing.
func prefaultHeap(size uintptr) {
	p := new([64]byte)
	start := uintptr(unsafe.Pointer(p)) &^ uintptr(unix.Getpagesize()-1)
	for ; size >= 64<<10; size /= 2 {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, start, size, unix.MADV_POPULATE_WRITE); errno == 0 {
			break
		}
	}
	runtime.KeepAlive(p)
}
