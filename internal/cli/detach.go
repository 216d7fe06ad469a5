package cli

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nsrun/nsrun/internal/start"
)

// upDetached is `nsrun up -d`: it starts `nsrun up` with the same
// command line but -d, in a session of its own (no terminal, stdin and
// stdout /dev/null), passes on its stderr until every node is up, then
// prints the run's id and returns 0. A run that fails to start has its
// errors printed and its exit code returned. SIGINT or SIGTERM while it
// starts stop it.
func upDetached(args []string, stdout, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		return fail(stderr, fmt.Errorf("up -d: find nsrun's own binary: %w", err))
	}
	var f upFlags
	child, err := stripDetach(f.flagSet(), args)
	if err != nil {
		return fail(stderr, fmt.Errorf("up -d: %w", err))
	}
	idR, idW, err := os.Pipe()
	if err != nil {
		return fail(stderr, fmt.Errorf("up -d: %w", err))
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		idR.Close()
		idW.Close()
		return fail(stderr, fmt.Errorf("up -d: %w", err))
	}
	cmd := exec.Command(exe, append([]string{"up"}, child...)...)
	cmd.Env = start.DetachedEnv(os.Environ())
	cmd.ExtraFiles = []*os.File{idW}
	cmd.Stderr = errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	err = cmd.Start()
	idW.Close()
	errW.Close()
	if err != nil {
		idR.Close()
		errR.Close()
		return fail(stderr, fmt.Errorf("up -d: start nsrun up: %w", err))
	}
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(stderr, errR); close(copied) }()
	ids := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(idR).ReadString('\n')
		idR.Close()
		ids <- strings.TrimSpace(line)
	}()
	for {
		select {
		case sig := <-sigs:
			_ = cmd.Process.Signal(sig) // the launcher passes it on: the start stops
		case id := <-ids:
			if id != "" {
				errR.Close() // the run's stderr goes to /dev/null from now on
				fmt.Fprintln(stdout, id)
				_ = cmd.Process.Release()
				return 0
			}
			// The run ended before it was up: its errors are printed.
			werr := cmd.Wait()
			<-copied
			errR.Close()
			var ee *exec.ExitError
			if errors.As(werr, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				if code := ee.ExitCode(); code != 0 {
					return code
				}
			}
			return fail(stderr, errors.New("up -d: the run ended before every node was up"))
		}
	}
}

// stripDetach returns args, the arguments of `nsrun up` that fs (up's
// flag set) reads, without -d or --detach (in any spelling, with or
// without =value); node names and flag values stay as they are.
func stripDetach(fs *flag.FlagSet, args []string) ([]string, error) {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...), nil
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			out = append(out, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if name == "d" || name == "detach" {
			continue
		}
		out = append(out, a)
		fl := fs.Lookup(name)
		if fl == nil {
			return nil, fmt.Errorf("unknown flag %s; see nsrun up --help", a)
		}
		if b, ok := fl.Value.(interface{ IsBoolFlag() bool }); hasValue || ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			out = append(out, args[i]) // the flag's value
		}
	}
	return out, nil
}
