# bash completion of "nsrun WORD..." (the last word under the cursor), as
# bash runs it on a TAB: the script of `nsrun completion bash` is sourced,
# the function its compspec names is called with COMP_WORDS, COMP_CWORD,
# COMP_LINE and COMP_POINT set and nsrun, the word and the one before it
# as arguments; when it leaves COMPREPLY empty and the compspec has
# -o default, readline's file name completion follows (compgen -f).
# Prints the candidates, one a line.
source <(command nsrun completion bash) || exit 2
spec=$(complete -p nsrun) || { echo "no compspec for nsrun" >&2; exit 2; }
[[ $spec =~ -F\ ([^ ]+) ]] || { echo "compspec without -F: $spec" >&2; exit 2; }
fn=${BASH_REMATCH[1]}
COMP_WORDS=(nsrun "$@")
COMP_CWORD=$#
COMP_LINE="nsrun $*"
COMP_POINT=${#COMP_LINE}
COMPREPLY=()
cur=${COMP_WORDS[COMP_CWORD]}
"$fn" nsrun "$cur" "${COMP_WORDS[COMP_CWORD-1]}"
if ((${#COMPREPLY[@]} == 0)) && [[ $spec == *"-o default"* ]]; then
	mapfile -t COMPREPLY < <(compgen -f -- "$cur")
fi
((${#COMPREPLY[@]} == 0)) || printf '%s\n' "${COMPREPLY[@]}"
