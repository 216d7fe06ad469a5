package nstest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/exitcode"
	"github.com/nsrun/nsrun/internal/faults"
	"github.com/nsrun/nsrun/internal/runstate"
	"github.com/nsrun/nsrun/internal/topology"
	"github.com/nsrun/nsrun/internal/verbs"
	"github.com/nsrun/nsrun/userns/launch"
)

// Net is one running network: a run of nsrun of its own, started by Start
// and stopped when the test ends.
type Net struct {
	t       reporter
	tb      testing.TB // nil for New
	tmp     string     // New's own temporary folder
	id      string
	client  *control.Client // the run's control socket
	top     *topology.Topology
	nodes   map[string]*Node
	names   map[string]*Node // by node name and hostname
	opts    options
	cmd     *exec.Cmd
	exited  chan struct{} // closed once nsrun has exited
	code    int           // nsrun's exit code, once exited
	readers sync.WaitGroup
	out     *outLog

	mu       sync.Mutex
	closing  bool            // the test is over: exits are expected
	expected map[string]int  // exits asked for (Stop, Restart) not yet reported, by node
	running  map[string]bool // as far as the test's verbs and unasked exits tell
	crashes  map[string]int  // exits not asked for, by node
	events   []Event         // the run's events so far, as followed
	// cutUplink: partition verbs cut the uplink too (CutUplink).
	cutUplink bool
	seed      uint64 // of the last RunFaults, or of the file's schedule
	// fileFaults is the file's faults: section, run from when every node
	// is up until the run stops (faultsStop); faultsDone closes after.
	fileFaults *faults.Schedule
	faultsStop context.CancelFunc
	faultsDone chan struct{}
}

// Option changes how Start starts a network.
type Option func(*options)

type options struct {
	file        string
	stopTimeout time.Duration
	capture     string
	isolated    bool
	onExit      func(node string, code int)
	maxLogLines int
}

// File makes Start read the nsrun.yaml at path (the yaml argument must
// then be empty). Relative paths in the file are relative to its folder,
// as with `nsrun up -f`.
func File(path string) Option { return func(o *options) { o.file = path } }

// StopTimeout is how long nodes get between SIGTERM and SIGKILL when the
// test ends or a node is stopped (`nsrun up --timeout`); default 5s.
func StopTimeout(d time.Duration) Option { return func(o *options) { o.stopTimeout = d } }

// Capture writes a pcap file of every node's link into dir
// (`nsrun up --capture`): DIR/NODE.pcap, whole once the network is
// stopped. It needs nsrun-capture on PATH, which carries the pcap writer:
// `go install github.com/nsrun/nsrun/cmd/nsrun-capture` (Start says so).
func Capture(dir string) Option { return func(o *options) { o.capture = dir } }

// Isolated gives the network no uplink even when nsrun-helper is
// installed (`--isolated`); without the helper every network is isolated.
func Isolated() Option { return func(o *options) { o.isolated = true } }

// OnExit is called (from another goroutine) when a node's command exits
// while the test runs without the test asking for it (Stop, Restart),
// instead of the default: failing the test for a non-zero code
// (t.Errorf) and logging a zero one.
func OnExit(fn func(node string, code int)) Option { return func(o *options) { o.onExit = fn } }

// LogLines is how many lines of node output go to the test's log (t.Log);
// beyond that, output goes to a file whose path is printed when the test
// fails. Default 200 (with New: all of it, to stderr); 0 sends it all to
// the file.
func LogLines(n int) Option { return func(o *options) { o.maxLogLines = n } }

// Start starts the network described by yaml, the text of an nsrun.yaml
// (see nsrun's docs/file.md), as a run of its own, waits until every node is up
// (its `ready` check passed), and stops it when the test ends (t.Cleanup).
// A network that cannot start fails the test (t.Fatal) with nsrun's own
// message; an error in the YAML names its line and column.
//
// The text is written to a temporary folder as nsrun.yaml, which is what
// relative paths in it (working_dir) are relative to: give absolute ones,
// or use File or StartFile for a checked-in file.
func Start(t testing.TB, yaml string, opts ...Option) *Net {
	t.Helper()
	where := caller()
	n, err := start(t, t, t.TempDir, yaml, opts)
	if err != nil {
		t.Fatalf("nstest.Start (%s): %v", where, err)
	}
	return n
}

// New is Start outside a test (in TestMain, to share one network between
// a package's tests, or in a program): node output and unexpected exits
// are written to stderr, and Close stops the network.
func New(yaml string, opts ...Option) (*Net, error) {
	r := &stderrReporter{w: os.Stderr}
	tmp, err := os.MkdirTemp("", "nstest-")
	if err != nil {
		return nil, fmt.Errorf("nstest.New: %w", err)
	}
	n, err := start(r, nil, func() string { return tmp }, yaml, opts)
	if n != nil {
		n.tmp = tmp
	}
	if err != nil {
		if n != nil {
			_ = n.Close()
		} else {
			_ = os.RemoveAll(tmp)
		}
		return nil, fmt.Errorf("nstest.New: %w", err)
	}
	return n, nil
}

// Close stops a network made by New: every node gets SIGTERM, then SIGKILL
// after the stop timeout. It returns the unexpected exits of nodes, if any.
func (n *Net) Close() error {
	n.stop()
	if n.tmp != "" {
		_ = os.RemoveAll(n.tmp)
	}
	if r, ok := n.t.(*stderrReporter); ok {
		return r.err()
	}
	return nil
}

// start starts a network, reporting to r; tb, when set, is the test.
func start(r reporter, tb testing.TB, tempDir func() string, yaml string, opts []Option) (*Net, error) {
	o := options{stopTimeout: 5 * time.Second, maxLogLines: -1}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxLogLines < 0 {
		o.maxLogLines = 200
		if tb == nil {
			o.maxLogLines = int(^uint(0) >> 1) // stderr takes it all
		}
	}
	if o.capture != "" {
		if _, err := exec.LookPath("nsrun-capture"); err != nil {
			return nil, errors.New("Capture needs nsrun-capture on PATH, which writes the pcap files: " +
				"go install github.com/nsrun/nsrun/cmd/nsrun-capture (or sudo make install in nsrun's repository)")
		}
	}
	top, file, dir, err := load(tempDir, yaml, o.file)
	if err != nil {
		return nil, err
	}
	n := &Net{
		t: r, tb: tb, top: top, opts: o, nodes: map[string]*Node{}, names: map[string]*Node{},
		exited: make(chan struct{}), expected: map[string]int{}, running: map[string]bool{}, crashes: map[string]int{},
		out: &outLog{t: r, max: o.maxLogLines},
	}
	for _, tn := range top.Nodes {
		nd := &Node{net: n, name: tn.Name, addr: tn.Addr, addr6: tn.Addr6}
		if tn.Ready != nil {
			nd.ready = tn.Ready.Port
		}
		n.nodes[tn.Name] = nd
		n.names[tn.Name] = nd
		n.names[tn.Hostname] = nd
		n.running[tn.Name] = len(tn.Argv) > 0
	}
	// The id is chosen here, so that the run's events can be followed
	// from its start (gate.go hands it to the run).
	rt, err := runstate.RuntimeDir(os.Getuid())
	if err != nil {
		return nil, err
	}
	n.id = runstate.NewID()
	n.client = control.ForRun(filepath.Join(runstate.RunsDir(rt), n.id))
	if top.Faults != nil {
		if n.fileFaults, err = faults.Compile(file, top.Faults, n.nodeNames(), verbs.ParseLine); err != nil {
			return nil, err
		}
	}
	if err := n.launch(file, dir); err != nil {
		return n, err
	}
	if n.fileFaults != nil {
		n.runFileFaults()
	}
	return n, nil
}

// StartFile is Start of the nsrun.yaml at path.
func StartFile(t testing.TB, path string, opts ...Option) *Net {
	t.Helper()
	return Start(t, "", append(opts, File(path))...)
}

// caller is the file:line of the test code that called Start.
func caller() string {
	for i := 2; i < 8; i++ {
		_, file, line, ok := runtime.Caller(i)
		if !ok {
			break
		}
		if !strings.HasSuffix(filepath.Dir(file), "/nstest") || strings.HasSuffix(file, "_test.go") {
			return fmt.Sprintf("%s:%d", filepath.Base(file), line)
		}
	}
	return "?"
}

// load reads and checks the topology as nsrun up will, and returns the
// file nsrun is to read and the folder to run it in.
func load(tempDir func() string, yaml, path string) (top *topology.Topology, file, dir string, err error) {
	switch {
	case path != "" && yaml != "":
		return nil, "", "", errors.New("give the YAML text or File(path), not both")
	case path != "":
		if top, err = topology.Load(path); err != nil {
			return nil, "", "", err
		}
		if file, err = filepath.Abs(path); err != nil {
			return nil, "", "", err
		}
		dir, _ = os.Getwd()
		return top, file, dir, nil
	}
	// The text becomes nsrun.yaml in a folder of the test's own.
	wd, err := os.Getwd()
	if err != nil {
		return nil, "", "", err
	}
	tmp := tempDir()
	if top, err = topology.Parse(topology.DefaultFile, tmp, []byte(yaml)); err != nil {
		return nil, "", "", err
	}
	file = filepath.Join(tmp, topology.DefaultFile)
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		return nil, "", "", err
	}
	return top, file, wd, nil
}

// launch starts this test binary as `nsrun up` of file, and returns once
// every node is up (the run's EventRunUp).
func (n *Net) launch(file, dir string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the test binary, which runs the network: %w", err)
	}
	args := []string{exe, "up", "-f", file, "--timeout", strconv.FormatFloat(n.opts.stopTimeout.Seconds(), 'f', -1, 64)}
	if n.opts.capture != "" {
		abs, err := filepath.Abs(n.opts.capture)
		if err != nil {
			return err
		}
		args = append(args, "--capture", abs)
	}
	if n.opts.isolated {
		args = append(args, "--isolated")
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	n.cmd = &exec.Cmd{
		Path: exe, Args: args, Dir: dir, Stdout: outW, Stderr: errW,
		Env: append(os.Environ(), launch.EnvAsNsrun+"=1", envRunID+"="+n.id),
		// The run ends with the test binary, even when it is killed:
		// the launcher dies with it, and the run with the launcher.
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
	started := make(chan error, 1)
	// The parent-death signal follows the thread that started the child:
	// that thread stays locked until the child has exited.
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := n.cmd.Start()
		started <- err
		if err != nil {
			close(n.exited)
			return
		}
		_ = n.cmd.Wait()
		n.code = exitCode(n.cmd.ProcessState)
		close(n.exited)
	}()
	err = <-started
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return fmt.Errorf("start the test binary as nsrun: %w", err)
	}
	up := make(chan struct{})
	var stderr bytes.Buffer
	n.readers.Add(3)
	go n.readOutput(outR)
	go n.follow(up)
	go func() {
		defer n.readers.Done()
		defer errR.Close()
		sc := bufio.NewScanner(errR)
		for sc.Scan() {
			line := sc.Text()
			stderr.WriteString(line + "\n") // read after the reader is done
			n.out.log("%s", line)
		}
	}()
	if n.tb != nil {
		n.tb.Cleanup(n.stop)
	}
	select {
	case <-up:
		return nil
	case <-n.exited:
		n.readers.Wait()
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = fmt.Sprintf("nsrun up exited with code %d before every node was up", n.code)
		}
		return errors.New(msg)
	}
}

func exitCode(st *os.ProcessState) int { return exitcode.Of(st) }

// readOutput reads nsrun up's output: node output goes to the test's log,
// nsrun's own lines report the run's and nodes' life-cycle.
func (n *Net) readOutput(r io.ReadCloser) {
	defer n.readers.Done()
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		name, text, ok := strings.Cut(line, "|")
		if !ok {
			n.out.log("%s", line)
			continue
		}
		name = strings.TrimSpace(name)
		text = strings.TrimPrefix(text, " ")
		if name != "nsrun" {
			n.out.log("%s | %s", name, text)
			continue
		}
		n.out.log("nsrun | %s", text)
	}
}

// follow follows the run's events from its start until it ends: it
// closes up when every node is up (EventRunUp) and reports node exits
// (exit). It waits for the run's control socket while the run starts.
func (n *Net) follow(up chan<- struct{}) {
	defer n.readers.Done()
	var sub *control.Subscription
	for sub == nil {
		s, err := n.client.Events(control.EventsCall{Follow: true})
		switch {
		case err == nil:
			sub = s
		case errors.Is(err, control.ErrRunGone):
			select {
			case <-n.exited:
				return
			case <-time.After(5 * time.Millisecond):
			}
		default:
			n.t.Errorf("nstest: follow the run's events: %v", err)
			return
		}
	}
	defer sub.Close()
	for {
		e, err := sub.Next()
		if err != nil {
			return // the run ended
		}
		n.mu.Lock()
		n.events = append(n.events, eventOf(e))
		n.mu.Unlock()
		switch e.Kind {
		case control.EventRunUp:
			close(up)
		case control.EventNodeExited:
			if e.Code != nil {
				n.exit(e.Node, *e.Code)
			}
		}
	}
}

// exit follows a node's exit (EventNodeExited) and reports exits the
// test did not ask for.
func (n *Net) exit(node string, code int) {
	if _, ok := n.nodes[node]; !ok {
		return
	}
	// An exit the test asked for may be reported after the node was
	// started again: it is counted off, and changes nothing else.
	n.mu.Lock()
	asked := n.closing || n.expected[node] > 0
	if n.expected[node] > 0 {
		n.expected[node]--
	} else {
		n.running[node] = false
		n.crashes[node]++
	}
	n.mu.Unlock()
	switch {
	case asked:
	case n.opts.onExit != nil:
		n.opts.onExit(node, code)
	case code != 0:
		n.t.Errorf("nstest: node %s exited with code %d", node, code)
	}
}

// stop ends the run when the test ends: SIGTERM to nsrun, which stops every
// node (SIGKILL after the stop timeout).
func (n *Net) stop() {
	n.mu.Lock()
	if n.closing || n.cmd == nil || n.cmd.Process == nil {
		n.mu.Unlock()
		return
	}
	n.closing = true
	n.mu.Unlock()
	if n.faultsStop != nil {
		n.faultsStop()
		<-n.faultsDone
	}
	if n.cmd.Process != nil {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-n.exited:
	case <-time.After(n.opts.stopTimeout + 10*time.Second):
		n.t.Errorf("nstest: the run %s did not stop within %s of SIGTERM; killed", n.id, n.opts.stopTimeout+10*time.Second)
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
	n.readers.Wait()
	n.out.end()
}

// RunID is the run's id, for `nsrun net --run ID` and `nsrun ls`.
func (n *Net) RunID() string { return n.id }

// Node returns the node of that name. An unknown name fails the test (in
// a network made by New, every method of the node returned fails).
func (n *Net) Node(name string) *Node {
	nd, ok := n.nodes[name]
	if !ok {
		err := fmt.Errorf("nstest: no node %q in this network; its nodes: %s", name, strings.Join(n.nodeNames(), ", "))
		if n.tb != nil {
			n.tb.Helper()
			n.tb.Fatal(err)
		}
		return &Node{net: n, name: name, err: err}
	}
	return nd
}

// Nodes returns every node, in start order.
func (n *Net) Nodes() []*Node {
	var out []*Node
	for _, tn := range n.top.Nodes {
		out = append(out, n.nodes[tn.Name])
	}
	return out
}

func (n *Net) nodeNames() []string {
	var names []string
	for _, tn := range n.top.Nodes {
		names = append(names, tn.Name)
	}
	return names
}

// reporter is where a network reports: the test (testing.TB), or stderr.
type reporter interface {
	Log(args ...any)
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Failed() bool
	Name() string
}

// stderrReporter reports a network made by New on w.
type stderrReporter struct {
	w    io.Writer
	mu   sync.Mutex
	errs []error
}

func (r *stderrReporter) Log(args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintln(r.w, args...)
}

func (r *stderrReporter) Logf(format string, args ...any) { r.Log(fmt.Sprintf(format, args...)) }

func (r *stderrReporter) Errorf(format string, args ...any) {
	err := fmt.Errorf(format, args...)
	r.Log(err)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func (r *stderrReporter) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errs) > 0
}

func (r *stderrReporter) Name() string { return "nstest" }

func (r *stderrReporter) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(r.errs...)
}

// outLog sends node output to the test's log, and once it has sent max
// lines, everything to a file whose path is printed if the test fails.
type outLog struct {
	t     reporter
	max   int
	mu    sync.Mutex
	lines []string
	file  *os.File
	ended bool
}

func (l *outLog) log(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return
	}
	if l.file == nil && len(l.lines) < l.max {
		l.lines = append(l.lines, line)
		l.t.Log(line)
		return
	}
	if l.file == nil {
		f, err := os.CreateTemp("", "nstest-"+strings.ReplaceAll(l.t.Name(), "/", "_")+"-*.log")
		if err != nil {
			return
		}
		l.file = f
		for _, s := range l.lines {
			fmt.Fprintln(f, s)
		}
		l.lines = nil
		if l.max > 0 {
			l.t.Logf("nstest: more node output than %d lines; all of it goes to %s", l.max, f.Name())
		}
	}
	fmt.Fprintln(l.file, line)
}

// end closes the output file: kept, and named, if the test failed.
func (l *outLog) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ended = true
	if l.file == nil {
		return
	}
	l.file.Close()
	if l.t.Failed() {
		l.t.Logf("nstest: the nodes' whole output is in %s", l.file.Name())
		return
	}
	_ = os.Remove(l.file.Name())
}
