// Command floor measures what any Go program pays on this machine, as
// reference rows for make bench:
//
//	floor hello      start the Go runtime and exit
//	floor spawn N    start N `sleep 60` processes at once, then stop them
//	                 (SIGTERM) and wait: what `nsrun up` of N sleep nodes
//	                 costs before any namespace is made
//	floor write SECONDS MB/S FILE...
//	                 write each FILE at MB/S for SECONDS as nsrun-capture
//	                 streams a pcap file, then remove it: what writing a
//	                 capture's bytes to this disk costs, with no capture
package main

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: floor hello | floor spawn N | floor write SECONDS MB/S FILE...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "hello":
		return
	case "spawn":
		n, err := strconv.Atoi(os.Args[len(os.Args)-1])
		if err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "floor spawn N: N must be a positive number")
			os.Exit(2)
		}
		if err := spawn(n); err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
	case "write":
		secs, err1 := strconv.ParseFloat(arg(2), 64)
		mbps, err2 := strconv.ParseFloat(arg(3), 64)
		if err1 != nil || err2 != nil || secs <= 0 || mbps <= 0 || len(os.Args) < 5 {
			fmt.Fprintln(os.Stderr, "floor write SECONDS MB/S FILE...: SECONDS and MB/S must be positive numbers, and name at least one file")
			os.Exit(2)
		}
		if err := writeFloor(time.Duration(secs*float64(time.Second)), mbps, os.Args[4:]); err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "floor: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}

// arg returns os.Args[i], or "" when there are fewer arguments.
func arg(i int) string {
	if i < len(os.Args) {
		return os.Args[i]
	}
	return ""
}

// spawn starts n sleeps concurrently, as nsrun starts nodes, then stops
// them and waits for every one.
func spawn(n int) error {
	cmds := make([]*exec.Cmd, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := exec.Command("sleep", "60")
			c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
			errs[i] = c.Start()
			cmds[i] = c
		}()
	}
	wg.Wait()
	var first error
	for i, c := range cmds {
		if errs[i] != nil {
			first = cmp.Or(first, errs[i])
			continue
		}
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for i, c := range cmds {
		if errs[i] == nil {
			_ = c.Wait()
		}
	}
	return first
}
