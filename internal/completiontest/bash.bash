# bash completion of nsrun command lines, as bash runs it on a TAB: the
# script of `nsrun completion bash` is sourced, and for each LINE (the
# words after "nsrun ", separated by single spaces, the cursor at its end)
# the function its compspec names is called with COMP_WORDS, COMP_CWORD,
# COMP_LINE and COMP_POINT set and nsrun, the word and the one before it
# as arguments; when it leaves COMPREPLY empty and the compspec has
# -o default, readline's file name completion follows (compgen -f).
# Prints each line's candidates, one a line, then END.
# Usage: bash -c SCRIPT bash END LINE...
source <(command nsrun completion bash) || exit 2
spec=$(complete -p nsrun) || { echo "no compspec for nsrun" >&2; exit 2; }
[[ $spec =~ -F\ ([^ ]+) ]] || { echo "compspec without -F: $spec" >&2; exit 2; }
fn=${BASH_REMATCH[1]}
end=$1
shift
for line; do
	COMP_WORDS=(nsrun)
	rest=$line
	while [[ $rest == *' '* ]]; do
		COMP_WORDS+=("${rest%% *}")
		rest=${rest#* }
	done
	COMP_WORDS+=("$rest")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMP_LINE="nsrun $line"
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	cur=$rest
	"$fn" nsrun "$cur" "${COMP_WORDS[COMP_CWORD - 1]}"
	if ((${#COMPREPLY[@]} == 0)) && [[ $spec == *"-o default"* ]]; then
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
	fi
	((${#COMPREPLY[@]} == 0)) || printf '%s\n' "${COMPREPLY[@]}"
	printf '%s\n' "$end"
done
