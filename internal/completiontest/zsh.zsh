# zsh completion of "nsrun WORD..." (the last word under the cursor), by
# zsh's own completion system: an interactive zsh -f on a pseudo-terminal
# (zsh/zpty), ZDOTDIR a fresh folder, loads compinit and the script of
# `nsrun completion zsh` (MODE source: sourced after compinit; MODE fpath:
# saved as _nsrun in a folder of $fpath before compinit), the line is
# typed and TAB pressed. compadd is wrapped to record what zsh matched of
# what it was given (compadd -A). Prints the candidates, one a line.
# Usage: zsh -f -c SCRIPT zsh MODE WORD...
zmodload zsh/zpty zsh/zselect || exit 2
mode=$1
shift
d=$(mktemp -d) || exit 2
mkdir "$d/functions"
export ZDOTDIR=$d NSRUN_COMP_DIR=$d NSRUN_COMP_MODE=$mode
: >"$d/out"
cat >"$d/setup.zsh" <<'SETUP'
PS1= PROMPT= RPROMPT= PS2=
d=$NSRUN_COMP_DIR
case $NSRUN_COMP_MODE in
fpath)
	command nsrun completion zsh >$d/functions/_nsrun || exit 3
	fpath=($d/functions $fpath)
	autoload -Uz compinit && compinit -u -D || exit 3
	;;
source)
	autoload -Uz compinit && compinit -u -D || exit 3
	source <(command nsrun completion zsh) || exit 3
	;;
*) exit 3 ;;
esac
compadd() {
	# Calls that only compute (-O, -A, -D): as they are.
	if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then
		builtin compadd "$@"
		return
	fi
	local -a __nsrun_hits
	builtin compadd -A __nsrun_hits "$@"
	(( ${#__nsrun_hits} )) && print -rl -- $__nsrun_hits >>$NSRUN_COMP_DIR/out
	builtin compadd "$@"
}
__nsrun_comp_done() {
	print -r -- ${(U):-end-of-completion}
	exit
}
comppostfuncs=(__nsrun_comp_done)
bindkey '^I' complete-word
print -r -- ${(U):-setup-done}
SETUP
zpty nsrun_comp zsh -f -i || { rm -rf -- "$d"; exit 2; }
# (Not before: the shell zpty forks would inherit the trap.)
trap 'zpty -d nsrun_comp 2>/dev/null; rm -rf -- "$d"' EXIT
zpty -w nsrun_comp "source ${(q)d}/setup.zsh"
# await: read the pty until a line matches $1, for at most 30 s.
await() {
	local line
	integer i
	for (( i = 0; i < 1500; i++ )); do
		if zpty -r -t nsrun_comp line; then
			transcript+=$line
			[[ $line == *$1* ]] && return 0
		else
			zselect -t 2
		fi
	done
	print -r -- "zsh: no $1 in 30 s; the terminal showed: ${(q+)transcript}" >&2
	return 1
}
transcript=
await SETUP-DONE || exit 2
zpty -w -n nsrun_comp "nsrun ${(j: :)@}"$'\t'
await END-OF-COMPLETION || exit 2
cat -- "$d/out"
