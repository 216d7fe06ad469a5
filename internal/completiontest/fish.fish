# fish completion of "nsrun WORD..." (the last word under the cursor): the
# script of `nsrun completion fish` is sourced as its help says, and
# complete -C asks fish what it completes for that command line. Prints
# the candidates, one a line (descriptions after a tab).
command nsrun completion fish | source; or exit 2
complete -C (string join -- ' ' nsrun $argv)
