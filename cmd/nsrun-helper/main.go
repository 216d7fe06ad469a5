// Command nsrun-helper is nsrun's one-time privileged setup: run
// `sudo nsrun-helper install` once per user and boot, and every nsrun run
// after it reaches the host and, through NAT, the outside, rootless.
// See package helper for exactly what it does as root.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/nsrun/nsrun/helper"
	"github.com/nsrun/nsrun/internal/jsonout"
	"github.com/nsrun/nsrun/internal/version"
)

// adminConfig is the admin's root-owned config. It is fixed at build time:
// the tests build a helper with `-ldflags -X main.adminConfig=PATH`, which
// no user of an installed helper can do (no flag or variable changes it).
var adminConfig = "/etc/nsrun/helper.conf"

const usage = `nsrun-helper: the one-time privileged setup of nsrun.

Usage:
  sudo nsrun-helper install [--dry-run] [--user NAME] [--host-cidr CIDR]
                            [--runs-cidr CIDR] [--resolver ADDR[:PORT]]
  nsrun-helper status [--json] [--user NAME]   (no root needed)
  sudo nsrun-helper uninstall [--dry-run] [--user NAME]

install   creates your gateway (a user namespace you own, with a network
          namespace inside), the host veth nsrunUID, the host table
          inet nsrun-UID (NAT, DNS, anti-spoofing), the shared table
          inet nsrun-guard, and enables IPv4 forwarding. It prints every
          change; --dry-run only prints them. Running it twice changes
          nothing.
uninstall removes exactly what install made.

Flags:
  --user NAME        the user to set up, when run by root without sudo
                     (under sudo it is always the user who ran sudo)
  --host-cidr CIDR   pool of host /30s, one per user (default 172.18.255.0/24)
  --runs-cidr CIDR   pool of run uplink /30s, 2048 in a /19 (default 172.18.192.0/19)
  --resolver ADDR    where guests' DNS goes (default: the first nameserver
                     of /etc/resolv.conf, port 53)

The admin's root-owned /etc/nsrun/helper.conf may set host-cidr, runs-cidr
and resolver (KEY = VALUE lines). Under sudo, --host-cidr and --runs-cidr
must lie inside the admin's ranges and --resolver must be the admin's;
without the config they are refused.
`

func main() {
	switch os.Args[0] {
	case helper.GatewayArg0:
		os.Exit(helper.GatewayMain())
	case helper.HoldArg0:
		os.Exit(helper.HoldMain())
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("nsrun-helper "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dryRun := fs.Bool("dry-run", false, "")
	asJSON := fs.Bool("json", false, "")
	var f helper.Flags
	fs.StringVar(&f.User, "user", "", "")
	fs.StringVar(&f.HostCIDR, "host-cidr", "", "")
	fs.StringVar(&f.RunsCIDR, "runs-cidr", "", "")
	fs.StringVar(&f.Resolver, "resolver", "", "")
	switch cmd {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "--version", "version":
		fmt.Fprintln(stdout, "nsrun-helper", version.String())
		return 0
	case "install", "uninstall", "status":
	default:
		return fail(stderr, fmt.Errorf("unknown command %q; see nsrun-helper --help", cmd))
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		return fail(stderr, fmt.Errorf("%s: %w; see nsrun-helper --help", cmd, err))
	}
	if fs.NArg() > 0 {
		return fail(stderr, fmt.Errorf("%s: unexpected argument %q; see nsrun-helper --help", cmd, fs.Arg(0)))
	}
	only := func(allowed ...string) error {
		set := map[string]bool{}
		for _, a := range allowed {
			set[a] = true
		}
		var bad error
		fs.Visit(func(fl *flag.Flag) {
			if !set[fl.Name] && bad == nil {
				bad = fmt.Errorf("%s: --%s does not apply; see nsrun-helper --help", cmd, fl.Name)
			}
		})
		return bad
	}
	switch cmd {
	case "status":
		if err := only("json", "user"); err != nil {
			return fail(stderr, err)
		}
		uid := os.Getuid()
		sudoUID := os.Getenv("SUDO_UID")
		if sudoUID != "" && os.Getuid() == 0 {
			u, err := strconv.Atoi(sudoUID)
			if err != nil {
				return fail(stderr, fmt.Errorf("SUDO_UID=%q is not a uid", sudoUID))
			}
			uid = u
		}
		if f.User != "" {
			u, err := lookupUID(f.User)
			if err != nil {
				return fail(stderr, err)
			}
			if sudoUID != "" && os.Getuid() == 0 && u != uid {
				// Root would read another user's record for whoever may sudo it.
				return fail(stderr, fmt.Errorf("--user %s: under sudo, status shows only your own install (uid %d); others need root itself (SUDO_UID unset)", f.User, uid))
			}
			uid = u
		}
		s := helper.GetStatus(uid)
		if *asJSON {
			if err := jsonout.Write(stdout, s); err != nil {
				return fail(stderr, err)
			}
		} else {
			s.Print(stdout)
		}
		if !s.Installed {
			return 1
		}
		return 0
	case "install":
		if err := only("dry-run", "user", "host-cidr", "runs-cidr", "resolver"); err != nil {
			return fail(stderr, err)
		}
		name, uid, gid, err := helper.ResolveUser(f.User)
		if err != nil {
			return fail(stderr, err)
		}
		cfg, err := helper.LoadAdminConfig(adminConfig)
		if err != nil {
			return fail(stderr, err)
		}
		o, err := helper.ParseOptions(f, name, uid, gid, cfg, adminConfig, os.Getenv("SUDO_UID") != "")
		if err != nil {
			return fail(stderr, err)
		}
		fmt.Fprintf(stdout, "installing nsrun-helper for %s (uid %d)\n", name, uid)
		if err := helper.Install(o, stdout, *dryRun); err != nil {
			return fail(stderr, err)
		}
		return 0
	default: // uninstall
		if err := only("dry-run", "user"); err != nil {
			return fail(stderr, err)
		}
		name, uid, _, err := helper.ResolveUser(f.User)
		if err != nil {
			return fail(stderr, err)
		}
		if err := helper.Uninstall(name, uid, stdout, *dryRun); err != nil {
			return fail(stderr, err)
		}
		return 0
	}
}

func fail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "nsrun-helper:", err)
	return 1
}
