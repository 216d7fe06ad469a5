package cli

import (
	"bytes"
	"strings"
	"testing"
)

// TestClientRefusesBeforeSending: bad values of attach and net exec are
// refused by the client, naming the flag, before any run is looked up
// (no --run is given, and no NSRUN_CONTROL is set).
func TestClientRefusesBeforeSending(t *testing.T) {
	t.Setenv(envControl, "")
	for _, c := range []struct {
		run  func(args []string, stdout, stderr *bytes.Buffer) int
		args []string
		want string
	}{
		{attach, []string{"--pid", "1", "--ip", "fd00::1"}, `attach: --ip: "fd00::1" is not an IPv4 address`},
		{attach, []string{"--pid", "1", "--ip6", "172.18.0.9"}, `attach: --ip6: "172.18.0.9" is not an IPv6 address`},
		{attach, []string{"--pid", "1", "--ip6", "fe80::1"}, "attach: --ip6: fe80::1 is link-local"},
		{attach, []string{"--pid", "1", "--ip", "172.18.0.9", "--name", "-x"}, "attach: --name: node name"},
		{attach, []string{"--pid", "1"}, "attach: write nsrun attach"},
		{netExec, []string{"exec", "a/b", "--", "true"}, "net exec: node name"},
		{netExec, []string{"exec", "db", "--"}, "net exec: no command"},
	} {
		var stdout, stderr bytes.Buffer
		if code := c.run(c.args, &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q; want an error with %q", c.args, code, stderr.String(), c.want)
		}
	}
}

func attach(args []string, stdout, stderr *bytes.Buffer) int  { return cmdAttach(args, stdout, stderr) }
func netExec(args []string, stdout, stderr *bytes.Buffer) int { return cmdNet(args, stdout, stderr) }
