package test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// icmpTooBig is a python3 program that sends to TO an ICMP "fragmentation
// needed" (MTU 552), or with -6 an ICMPv6 "packet too big" (MTU 1280),
// quoting a packet from SRC to DST: an echo reply for IPv4 and an echo
// request for IPv6, whose error handlers lower the path MTU without any
// socket to find. Usage: python3 -c PROGRAM [-6] SRC DST TO.
const icmpTooBig = `import socket, struct, sys
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
args = sys.argv[1:]
if args[0] == "-6":
    src, dst, to = args[1:]
    inner = struct.pack("!IHBB16s16s", 0x60000000, 1460, 58, 64, socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)) + struct.pack("!BBHHH", 128, 0, 0, 7, 1)
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 58)  # the kernel sums ICMPv6
    s.sendto(struct.pack("!BBHI", 2, 0, 0, 1280) + inner, (to, 0))
else:
    src, dst, to = args
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 1500, 7, 0, 64, 1, 0, socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    inner = ip + struct.pack("!BBHHH", 0, 0, 0, 7, 1)
    msg = struct.pack("!BBHHH", 3, 4, 0, 0, 552) + inner
    msg = msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]
    socket.socket(socket.AF_INET, socket.SOCK_RAW, 1).sendto(msg, (to, 0))
`

// TestHelperPMTUPoison: the attack of issue 20 item 5. From the gateway
// (where the user is root) an ICMP "fragmentation needed" with MTU 552
// and an ICMPv6 "packet too big" with MTU 1280, sent to the host's
// address and quoting a packet of the host's to some destination, must
// not change the host's path MTU to that destination (`ip route get` in
// the simulated host, never the real one). The same errors from a
// namespace wired to the host do change it: the attack is real.
func TestHelperPMTUPoison(t *testing.T) {
	u := unprivileged(t)
	h := newSimHost(t, false)
	rec := h.install(t, u)
	if !rec.HostAddr6.IsValid() {
		t.Fatalf("the install in the simulated host has no IPv6 uplink: %+v", rec)
	}
	a, _ := h.wire(t, "a", 1)
	b, _ := h.wire(t, "b", 2)
	shOK(t, fmt.Sprintf(`ip -n %[1]s addr add fd99:1::1/64 dev hv-a nodad
ip -n %[2]s addr add fd99:1::2/64 dev eth0 nodad
ip -n %[1]s addr add fd99:2::1/64 dev hv-b nodad
ip -n %[3]s addr add fd99:2::2/64 dev eth0 nodad`, h.Name, a.Name, b.Name))
	mtu := func(dst string) string {
		t.Helper()
		out := h.sh(t, "ip route get "+dst)
		if i := strings.Index(out, " mtu "); i >= 0 {
			return strings.Fields(out[i:])[1]
		}
		return ""
	}
	send := func(where string, args ...string) {
		t.Helper()
		var out []byte
		var err error
		argv := append([]string{"python3", "-c", icmpTooBig}, args...)
		if where == "gateway" {
			r := inGateway(t, u, strings.Join(shQuote(argv), " "))
			out, err = []byte(r.Stdout+r.Stderr), map[bool]error{true: nil, false: fmt.Errorf("exit %d", r.Code)}[r.Code == 0]
		} else {
			out, err = exec.Command("ip", append([]string{"netns", "exec", where}, argv...)...).CombinedOutput()
		}
		if err != nil {
			t.Fatalf("send %v from %s: %v %s", args, where, err, out)
		}
	}
	hostAddr, hostAddr6 := rec.HostAddr.Addr().String(), rec.HostAddr6.Addr().String()
	for _, c := range []struct {
		v6                   bool
		src, ctlDst, dst, to string
		ctlSrc, ctlTo, want  string
	}{
		{false, hostAddr, "10.99.2.2", "10.99.2.7", hostAddr, "10.99.1.1", "10.99.1.1", "552"},
		{true, hostAddr6, "fd99:2::2", "fd99:2::7", hostAddr6, "fd99:1::1", "fd99:1::1", "1280"},
	} {
		flag := []string{}
		if c.v6 {
			flag = []string{"-6"}
		}
		// Control: from a namespace wired to the host, the error works.
		send(a.Name, append(flag, c.ctlSrc, c.ctlDst, c.ctlTo)...)
		if got := mtu(c.ctlDst); got != c.want {
			t.Fatalf("control: the error from %s left the path MTU to %s at %q, not %s; the test proves nothing\n%s", a.Name, c.ctlDst, got, c.want, h.sh(t, "ip route get "+c.ctlDst))
		}
		before := mtu(c.dst)
		send("gateway", append(flag, c.src, c.dst, c.to)...)
		// The packet would have been handled by now (the control was).
		if got := mtu(c.dst); got != before {
			t.Errorf("an error sent from the gateway set the host's path MTU to %s to %s (was %q)\n%s", c.dst, got, before, h.sh(t, "ip route get "+c.dst))
		}
	}
}

// shQuote quotes each word for sh.
func shQuote(words []string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return out
}
