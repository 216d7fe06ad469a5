# zsh completion of nsrun command lines, by zsh's own completion system:
# an interactive zsh -f on a pseudo-terminal (zsh/zpty), ZDOTDIR a fresh
# folder, loads compinit and the script of `nsrun completion zsh` (MODE
# source: sourced after compinit; MODE fpath: saved as _nsrun in a folder
# of $fpath before compinit); then for each LINE (the words after
# "nsrun ") "nsrun LINE" is typed and TAB pressed. compadd is wrapped to
# record what zsh matched of what it was given (compadd -A); after each
# completion the line is left as typed (nothing inserted or listed) and
# then killed. Prints each line's candidates, one a line, then END.
# Usage: zsh -f -c SCRIPT zsh MODE END LINE...
zmodload zsh/zpty zsh/zselect || exit 2
mode=$1 end=$2
shift 2
d=$(mktemp -d) || exit 2
export ZDOTDIR=$d NSRUN_COMP_DIR=$d NSRUN_COMP_MODE=$mode NSRUN_COMP_END=$end
if ! { mkdir "$d/functions" && : >"$d/out" && cat >"$d/setup.zsh"; } <<'SETUP'
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
	comppostfuncs=(__nsrun_comp_done) # _main_complete empties it
	compstate[insert]=
	compstate[list]=
	print -r -- $NSRUN_COMP_END >>$NSRUN_COMP_DIR/out
	print -r -- ${(U):-completion-done}
}
comppostfuncs=(__nsrun_comp_done)
bindkey -e
bindkey '^I' complete-word
print -r -- ${(U):-setup-done}
SETUP
then
	rm -rf -- "$d"
	exit 2
fi
zpty nsrun_comp zsh -f -i || { rm -rf -- "$d"; exit 2; }
# (Not before: the shell zpty forks would inherit the trap.)
trap 'zpty -d nsrun_comp 2>/dev/null; rm -rf -- "$d"' EXIT
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
zpty -w nsrun_comp "source ${(q)d}/setup.zsh"
await SETUP-DONE || exit 2
for line; do
	transcript=
	zpty -w -n nsrun_comp "nsrun $line"$'\t'
	await COMPLETION-DONE || exit 2
	zpty -w -n nsrun_comp $'\C-u'
done
cat -- "$d/out"
