package netsetup

import (
	"errors"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Shaping is what a link's root qdisc enforces on what leaves it: a rate
// (a token bucket, tbf) and/or a delay with jitter (netem, which can take
// the rate too). The zero Shaping removes both.
type Shaping struct {
	Rate   uint64        // bits per second; 0: unlimited
	Delay  time.Duration // 0: none
	Jitter time.Duration // with Delay
}

// ErrNoNetem wraps the error of a delay the kernel cannot add: it lacks
// the netem qdisc.
var ErrNoNetem = errors.New("the netem qdisc, which delay and jitter need, is missing from this kernel (CONFIG_NET_SCH_NETEM, module sch_netem)")

// SetShaping replaces the root qdisc of link ifname in the namespace of h
// with the one sh asks for (none, for the zero Shaping).
func SetShaping(h *netlink.Handle, ifname string, sh Shaping) error {
	link, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("link %s: %w", ifname, err)
	}
	root := netlink.QdiscAttrs{LinkIndex: link.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT}
	// Nothing to delete (the link's default) is no error.
	_ = h.QdiscDel(&netlink.GenericQdisc{QdiscAttrs: root, QdiscType: "noqueue"})
	if sh.Delay > 0 {
		nq := netlink.NewNetem(root, netlink.NetemQdiscAttrs{Latency: uint32(sh.Delay.Microseconds()), Jitter: uint32(sh.Jitter.Microseconds())})
		if sh.Rate > 0 {
			nq.Rate64 = sh.Rate / 8
		}
		if err := h.QdiscAdd(nq); err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("%w: %w", ErrNoNetem, err)
			}
			return fmt.Errorf("netem on %s: %w", ifname, err)
		}
		return nil
	}
	if sh.Rate > 0 {
		bytesPerSec := sh.Rate / 8
		tbf := &netlink.Tbf{
			QdiscAttrs: root,
			Rate:       bytesPerSec,
			Limit:      uint32(max(bytesPerSec/4, 16*1500)), // queue about 250 ms
			// The burst, about 20 ms of the rate, in scheduler ticks.
			Buffer: netlink.Xmittime(bytesPerSec, uint32(max(bytesPerSec/50, 2*1514))),
		}
		if err := h.QdiscAdd(tbf); err != nil {
			return fmt.Errorf("tbf on %s (the rate needs it): %w", ifname, err)
		}
	}
	return nil
}
