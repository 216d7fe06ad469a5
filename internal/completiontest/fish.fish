# fish completion of nsrun command lines: the script of `nsrun completion
# fish` is sourced as its help says, and for each LINE (the words after
# "nsrun ", the cursor at its end) complete -C asks fish what it completes.
# Prints each line's candidates, one a line (descriptions after a tab),
# then END.
# Usage: fish -c SCRIPT -- END LINE...
command nsrun completion fish | source; or exit 2
for line in $argv[2..-1]
	complete -C "nsrun $line"
	printf '%s\n' $argv[1]
end
