#!/usr/bin/env bash
# make bench: nsrun side by side with the floor (unshare -Urn true) and with
# the shell-out approach (bench/shellout.sh: one `ip` per step, and
# `ip -batch`), medians and ratios written to BENCHMARKS.md.
# Run it as the user who uses nsrun (not root); nsrun-helper may be
# installed for that user, then joined runs are measured too.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "bench: needs hyperfine (apt-get install hyperfine)"; exit 1; }
NSRUN=$PWD/bin/nsrun
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
runs=${BENCH_RUNS:-30}
hf() { hyperfine -N --warmup 3 --runs "$runs" --style basic "$@"; }

echo "== start-up: nsrun -- true vs the floor and the shell-out script (1 guest)"
cmds=(-n floor "unshare -Urn true"
      -n nsrun-isolated "$NSRUN --isolated -- true")
if nsrun-helper status >/dev/null 2>&1 || bin/nsrun-helper status >/dev/null 2>&1; then
  cmds+=(-n nsrun-joined "$NSRUN -- true")
fi
cmds+=(-n shellout-ip "unshare -Urnm sh bench/shellout.sh 1"
       -n shellout-ip-batch "unshare -Urnm sh bench/shellout.sh 1 batch")
hf --export-json "$out/startup.json" "${cmds[@]}"

{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` on $(date -u +%Y-%m-%d) ($(nproc) cores, kernel $(uname -r)); hyperfine -N, $runs runs each."
  echo "Numbers from one machine, one run: compare the ratios, not the milliseconds."
  echo
  go run ./bench/report -title "Start-up: one guest, then exit" -base floor \
    -note "shellout-* build the same bridge + guest with \`ip\` (bench/shellout.sh), rootless in \`unshare -Urnm\`." \
    "$out/startup.json"
} > BENCHMARKS.md
cat BENCHMARKS.md
