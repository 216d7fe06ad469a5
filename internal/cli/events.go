package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/nsrun/nsrun/internal/control"
)

// cmdEvents prints a run's events: those so far, and with --follow the
// ones to come until the run ends.
func cmdEvents(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nsrun events", flag.ContinueOnError)
	runID := fs.String("run", "", "")
	asJSON := fs.Bool("json", false, "")
	follow := fs.Bool("follow", false, "")
	if code, done := parseNoArgs(fs, args, stdout, stderr, "events"); done {
		return code
	}
	path, err := controlPath(*runID)
	if err != nil {
		return fail(stderr, fmt.Errorf("events: %w", err))
	}
	sub, err := control.NewClient(path).Events(control.EventsCall{Follow: *follow})
	if err != nil {
		return fail(stderr, fmt.Errorf("events: %w", err))
	}
	defer sub.Close()
	for {
		e, err := sub.Next()
		if errors.Is(err, control.ErrEventsEnded) {
			return 0
		}
		if err != nil {
			return fail(stderr, fmt.Errorf("events: %w", err))
		}
		if *asJSON {
			b, _ := json.Marshal(e)
			fmt.Fprintf(stdout, "%s\n", b)
		} else {
			fmt.Fprintln(stdout, eventLine(e))
		}
	}
}

// eventLine is an event in words: the time since the run started, the
// kind, the node and what there is to say.
func eventLine(e control.Event) string {
	var what []string
	if e.Node != "" {
		what = append(what, e.Node)
	}
	switch {
	case e.Pid != 0:
		what = append(what, fmt.Sprintf("pid %d", e.Pid))
	case e.Code != nil:
		what = append(what, fmt.Sprintf("code %d", *e.Code))
	}
	if e.Verb != "" {
		what = append(what, e.Verb)
	}
	if e.Text != "" {
		what = append(what, e.Text)
	}
	return fmt.Sprintf("%4d %10.3fs  %-13s %s", e.Seq, e.Mono.Seconds(), e.Kind, strings.Join(what, " "))
}
