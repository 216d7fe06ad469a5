package cli

import (
	"github.com/nsrun/nsrun/internal/verbs"

	"fmt"
	"strings"

	"github.com/nsrun/nsrun/internal/version"
)

// manPage is nsrun(1), made from the help texts: nsrun --help, then
// every command's help and every verb's, each as written (no fill), so
// that the page says exactly what the help says. `nsrun help --man`
// prints it; make build writes it to bin/nsrun.1.
func manPage() string {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH NSRUN 1 \"\" \"nsrun %s\" \"User Commands\"\n", roff(version.String()))
	b.WriteString(".SH NAME\nnsrun \\- run programs as hosts on private networks, without root\n")
	b.WriteString(".SH SYNOPSIS\n")
	section(&b, usage)
	b.WriteString(".SH COMMANDS\n")
	for _, name := range commandNames {
		h, ok := commandHelp[name]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, ".SS %s\n", roff("nsrun "+name))
		section(&b, h)
		for _, v := range verbs.Verbs {
			if v.Cmd == name {
				fmt.Fprintf(&b, ".SS %s\n", roff("nsrun "+v.Cmd+" "+v.Name))
				section(&b, verbHelp(v))
			}
		}
	}
	b.WriteString(".SH SEE ALSO\nnsrun-helper(8), README.md of nsrun\n")
	return b.String()
}

// section writes text as it is, lines unfilled.
func section(b *strings.Builder, text string) {
	b.WriteString(".nf\n")
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		b.WriteString(roffLine(line) + "\n")
	}
	b.WriteString(".fi\n")
}

// roff escapes text for a roff line: backslashes, and a leading dot or
// quote, which would make it a request.
func roff(s string) string { return strings.ReplaceAll(s, `\`, `\e`) }

func roffLine(s string) string {
	s = roff(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
