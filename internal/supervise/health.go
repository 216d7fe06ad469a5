package supervise

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsrun/nsrun/internal/guest"
	"github.com/nsrun/nsrun/internal/nsfd"
	"github.com/nsrun/nsrun/internal/topology"
)

// health is a node's health as its checks found it: what depends_on's
// service_healthy waits for.
type health struct {
	mu        sync.Mutex
	healthy   chan struct{} // closed once the check first passes
	unhealthy chan struct{} // closed once it first fails Retries times in a row
	state     string        // "starting", "healthy" or "unhealthy"
}

func newHealth() *health {
	return &health{healthy: make(chan struct{}), unhealthy: make(chan struct{}), state: "starting"}
}

// set records a new state and says whether it changed.
func (h *health) set(state string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state == state {
		return false
	}
	h.state = state
	ch := h.unhealthy
	if state == "healthy" {
		ch = h.healthy
	}
	select {
	case <-ch:
	default:
		close(ch)
	}
	return true
}

// watchHealth runs node n's health check while the process whose end
// closes done runs, as docker compose does: every StartInterval until it
// first passes, then every Interval; failures within StartPeriod of the
// start do not count (until the check has passed once), and Retries
// failures in a row make the node unhealthy. Changes are printed.
func (s *supervisor) watchHealth(n *node, done <-chan struct{}) {
	h := n.cfg.Health
	start := time.Now()
	fails, passed := 0, false
	for {
		wait := h.Interval
		if !passed {
			wait = h.StartInterval
		}
		select {
		case <-done:
			return
		case <-s.abort:
			return
		case <-time.After(wait):
		}
		err := s.check(n, h)
		if err == nil {
			fails, passed = 0, true
			if n.health.set("healthy") {
				s.out.Event(n.cfg.Name, fmt.Sprintf("healthy (%s passes)", h))
			}
			continue
		}
		if !passed && time.Since(start) < h.StartPeriod {
			continue
		}
		select {
		case <-done:
			return // the check failed because the node ended
		default:
		}
		if fails++; fails >= h.Retries && n.health.set("unhealthy") {
			s.out.Event(n.cfg.Name, fmt.Sprintf("unhealthy: %s failed %d times in a row: %v", h, fails, err))
		}
	}
}

// check runs one health check of node n within h.Timeout.
func (s *supervisor) check(n *node, h *topology.Health) error {
	s.nsUse.RLock()
	defer s.nsUse.RUnlock()
	switch h.Kind {
	case topology.HealthCmd:
		return s.checkCommand(n, h)
	case topology.HealthHTTP:
		return s.checkHTTP(n, h)
	}
	addr := net.JoinHostPort(n.cfg.MainAddr().String(), strconv.Itoa(int(h.Port)))
	c, err := s.dialIn(n, string(h.Kind), addr, h.Timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if h.Kind == topology.HealthTCP {
		return nil
	}
	// UDP: healthy when anything comes back (a refusal comes back as
	// ECONNREFUSED on the read).
	_ = c.SetDeadline(time.Now().Add(h.Timeout))
	if _, err := c.Write([]byte("\n")); err != nil {
		return err
	}
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err != nil && !errors.Is(err, io.ErrShortBuffer) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("no reply within %s", h.Timeout)
		}
		return err
	}
	return nil
}

// dialIn connects to addr (HOST:PORT) from inside node n's network
// namespace, trying each address of HOST in turn on that one thread (no
// parallel dial, whose second socket would be made on another thread, in
// another namespace). HOST is an address, localhost, or a name of the
// run's /etc/hosts.
func (s *supervisor) dialIn(n *node, network, addr string, timeout time.Duration) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	addrs := s.resolve(host)
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s: no such node (the check resolves localhost and the run's /etc/hosts)", host)
	}
	var c net.Conn
	err = nsfd.Do(n.ns, func() error {
		var err error
		for _, a := range addrs {
			if c, err = net.DialTimeout(network, net.JoinHostPort(a.String(), port), timeout); err == nil {
				return nil
			}
		}
		return err
	})
	return c, err
}

// resolve looks host up as the run's /etc/hosts would.
func (s *supervisor) resolve(host string) []netip.Addr {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}
	}
	if host == "localhost" {
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
	}
	var out []netip.Addr
	for _, e := range s.hostEntries() {
		if slices.Contains(e.Names, host) {
			out = append(out, e.Addr)
		}
	}
	return out
}

// checkHTTP gets h.URL from inside node n: 2xx and 3xx are healthy.
func (s *supervisor) checkHTTP(n *node, h *topology.Health) error {
	client := &http.Client{
		Timeout: h.Timeout,
		Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return s.dialIn(n, network, addr, h.Timeout)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get(h.URL)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 400 {
		return fmt.Errorf("%s: %s", h.URL, resp.Status)
	}
	return nil
}

// checkOutput is how much of a failed check command's output is quoted.
const checkOutput = 200

// checkCommand runs h.Argv in node n (its namespaces, environment and
// folder, as net exec does): exit code 0 is healthy; past h.Timeout it
// is killed.
func (s *supervisor) checkCommand(n *node, h *topology.Health) error {
	pid := n.initPid()
	if pid == 0 {
		return errors.New("the node does not run")
	}
	j, err := guest.JoinInit(pid)
	if err != nil {
		return fmt.Errorf("join node %q: %w", n.cfg.Name, err)
	}
	defer j.Close()
	sp := s.spec(n, h.Argv, s.nodeEnv(n), n.cfg.Dir)
	sp.Join = j
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	sp.Stdin, sp.Stdout, sp.Stderr = devnull, w, w
	proc, err := guest.Start(sp)
	w.Close()
	if err != nil {
		return err
	}
	var out bytes.Buffer
	read := make(chan struct{})
	go func() {
		_, _ = io.Copy(&out, io.LimitReader(r, 64<<10))
		close(read)
	}()
	waited := make(chan int, 1)
	go func() { waited <- guest.ExitCode(proc.Wait()) }()
	var code int
	select {
	case code = <-waited:
	case <-time.After(h.Timeout):
		_ = unix.Kill(proc.Pid, unix.SIGKILL)
		<-waited
		return fmt.Errorf("still running after %s (timeout)", h.Timeout)
	}
	if code != 0 {
		msg := ""
		select {
		case <-read:
			msg = strings.TrimSpace(out.String())
		case <-time.After(100 * time.Millisecond): // a child of the check holds the pipe
		}
		if len(msg) > checkOutput {
			msg = msg[:checkOutput] + "..."
		}
		if msg != "" {
			return fmt.Errorf("exit code %d: %s", code, msg)
		}
		return fmt.Errorf("exit code %d", code)
	}
	return nil
}

// waitCondition waits, once dep is up, for what n's depends_on asks of
// it beyond that: a passed health check (service_healthy) or an exit
// with code 0 (service_completed_successfully). A dependency that cannot
// meet it (unhealthy, or exited) fails the start, as in compose; a stop
// of the run ends the wait with nil.
func (s *supervisor) waitCondition(n, dep *node) error {
	cond := n.cfg.Conditions[dep.cfg.Name]
	if cond == "" || cond == topology.ServiceStarted {
		return nil
	}
	_, done := dep.process()
	switch cond {
	case topology.ServiceHealthy:
		select {
		case <-dep.health.healthy:
			return nil
		case <-dep.health.unhealthy:
			return fmt.Errorf("node %q depends on %s being healthy, but %s is unhealthy (its health check %s failed %d times in a row)", n.cfg.Name, dep.cfg.Name, dep.cfg.Name, dep.cfg.Health, dep.cfg.Health.Retries)
		case <-done:
			return fmt.Errorf("node %q depends on %s being healthy, but %s exited with code %d before its health check passed", n.cfg.Name, dep.cfg.Name, dep.cfg.Name, dep.exitCode())
		case <-s.abort:
			return nil
		}
	case topology.ServiceCompletedSuccessfully:
		s.out.Event(n.cfg.Name, fmt.Sprintf("waiting for %s to complete", dep.cfg.Name))
		select {
		case <-done:
		case <-s.abort:
			return nil
		}
		if code := dep.exitCode(); code != 0 {
			return fmt.Errorf("node %q depends on %s completing successfully, but %s exited with code %d", n.cfg.Name, dep.cfg.Name, dep.cfg.Name, code)
		}
	}
	return nil
}
