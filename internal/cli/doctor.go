package cli

import (
	"flag"
	"io"
	"os"

	"github.com/nsrun/nsrun/internal/doctor"
)

func cmdDoctor(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == doctor.ProbeArg {
		// The probe's child, in namespaces of its own (package doctor).
		if err := doctor.ProbeChild(stdout); err != nil {
			return fail(stderr, err)
		}
		return 0
	}
	fs := flag.NewFlagSet("nsrun doctor", flag.ContinueOnError)
	if code, done := parseNoArgs(fs, args, stdout, stderr, "doctor"); done {
		return code
	}
	self, err := os.Executable()
	if err != nil {
		self = "/proc/self/exe"
	}
	return doctor.Print(stdout, doctor.Check(doctor.Host(self)))
}
