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
# Reference rows: what any (static, like nsrun) Go program pays to start,
# and to start and stop N sleeps, on this machine.
FLOOR=$out/floor
go build -trimpath -tags netgo,osusergo -ldflags '-s -w -linkmode external -extldflags -static' -o "$FLOOR" ./bench/floor
# BENCH_BEFORE=REV (default: the first commit of this session's work, the
# last landing before the typed plan) builds nsrun at REV too, so start-up
# and up show before and after side by side in one run; BENCH_BEFORE=none
# leaves those rows out.
BEFORE_REV=${BENCH_BEFORE:-1d17bc6}
BEFORE=""
if [ "$BEFORE_REV" != none ] && git rev-parse -q --verify "$BEFORE_REV^{commit}" >/dev/null; then
  git worktree add -q --detach "$out/before-src" "$BEFORE_REV"
  trap 'git worktree remove --force "$out/before-src" 2>/dev/null; rm -rf "$out"' EXIT
  (cd "$out/before-src" && go build -trimpath -tags netgo,osusergo -ldflags '-s -w -linkmode external -extldflags -static' -o "$out/nsrun-before" ./cmd/nsrun)
  BEFORE=$out/nsrun-before
fi
hf() { hyperfine -N --warmup 3 --runs "$runs" --style basic "$@"; }
# hfb NAME -n N1 CMD1 -n N2 CMD2 ...: the commands in BENCH_BLOCKS blocks
# (default 3) of runs/blocks runs each, in reverse order every other
# block, exported to $out/NAME.B.json: on a shared machine the load
# drifts, and one command's runs all in a row would meet another load
# than the next command's (bench/report merges the blocks by name).
# HFB_PREPARE, if set, runs before every run (hyperfine --prepare).
blocks=${BENCH_BLOCKS:-3}
hfb() {
  local name=$1 b i; shift
  local fwd=("$@") rev=()
  for ((i = ${#fwd[@]} - 3; i >= 0; i -= 3)); do rev+=("${fwd[i]}" "${fwd[i + 1]}" "${fwd[i + 2]}"); done
  local prep=()
  [ -n "${HFB_PREPARE:-}" ] && prep=(--prepare "$HFB_PREPARE")
  for b in $(seq "$blocks"); do
    if ((b % 2)); then set -- "${fwd[@]}"; else set -- "${rev[@]}"; fi
    hyperfine -N --warmup 2 --runs $(((runs + blocks - 1) / blocks)) --style none "${prep[@]}" --export-json "$out/$name.$b.json" "$@" >/dev/null
  done
}
# BENCH_ONLY=startup|up|nstest|partitions|throughput|capture|latency|faults|scale runs one section (appending
# to BENCHMARKS.md); by default all run and BENCHMARKS.md is rewritten.
want() { [ -z "${BENCH_ONLY:-}" ] || [ "$BENCH_ONLY" = "$1" ]; }
# Joined rows need the helper installed; BENCH_JOINED=1 says it is where
# status (as the user) cannot see it: installed in another network
# namespace, such as a test's simulated host.
helper_installed() { [ "${BENCH_JOINED:-}" = 1 ] || nsrun-helper status >/dev/null 2>&1 || bin/nsrun-helper status >/dev/null 2>&1; }

if want startup; then
echo "== start-up: nsrun -- true vs the floor and the shell-out script (1 guest)"
cmds=(-n floor "unshare -Urn true"
      -n go-hello "$FLOOR hello"
      -n nsrun-isolated "$NSRUN --isolated -- true"
      -n nsrun-isolated-no-ipv6 "$NSRUN --isolated --ipv6=false -- true")
[ -n "$BEFORE" ] && cmds+=(-n "nsrun-isolated-before-$BEFORE_REV" "$BEFORE --isolated -- true")
if helper_installed; then
  # Joined runs with and without IPv6: the uplink's IPv6 (issue 13) is
  # set up only in joined runs.
  cmds+=(-n nsrun-joined "$NSRUN -- true"
         -n nsrun-joined-no-ipv6 "$NSRUN --ipv6=false -- true")
fi
cmds+=(-n shellout-ip "unshare -Urnm sh bench/shellout.sh 1"
       -n shellout-ip-batch "unshare -Urnm sh bench/shellout.sh 1 batch")
hfb startup "${cmds[@]}"

{
  echo "# Benchmarks"
  echo
  echo "What each section measures and how: [docs/speed.md](docs/speed.md)."
  echo
  echo "Written by \`make bench\` on $(date -u +%Y-%m-%d) ($(nproc) cores, kernel $(uname -r)); hyperfine -N, $runs runs each."
  echo "Numbers from one machine, one run: compare the ratios, not the milliseconds."
  echo
  go run ./bench/report -title "Start-up: one guest, then exit" -base floor \
    -note "shellout-* build the same bridge + guest with \`ip\` (bench/shellout.sh), rootless in \`unshare -Urnm\`. go-hello is a static Go program that only exits (bench/floor): what any Go program pays to start here." \
    "$out"/startup.*.json
} > "$out/startup.md"
if [ -n "${BENCH_ONLY:-}" ]; then cat "$out/startup.md" >> BENCHMARKS.md; else cp "$out/startup.md" BENCHMARKS.md; fi
fi

# ---- nsrun up: N nodes until all are up, against the shell-out script at N
if want up; then
echo "== nsrun up: 3 and 30 nodes"
gen() { # gen N: N sleeping nodes and a last one that depends on all
  echo "nodes:"
  i=1
  while [ "$i" -le "$1" ]; do
    echo "  n$i: {ip: 172.18.$((i / 250)).$((i % 250 + 1)), command: [sleep, '60']}"
    i=$((i + 1))
  done
  printf '  done: {ip: 172.18.3.1, command: [\x27true\x27], depends_on: ['
  i=1; while [ "$i" -le "$1" ]; do printf 'n%d' "$i"; [ "$i" -lt "$1" ] && printf ', '; i=$((i + 1)); done
  echo ']}'
}
for n in 3 30; do
  { echo "subnets: {s: 172.18.0.0/16}"; gen $n; } > "$out/up$n.yaml"
done
{ echo "ipv6: false"; echo "subnets: {s: 172.18.0.0/16}"; gen 30; } > "$out/up30-no-ipv6.yaml"
before_up=()
[ -n "$BEFORE" ] && before_up=(-n "nsrun-up-3-before-$BEFORE_REV" "$BEFORE up --isolated -f $out/up3.yaml --exit-code-from done --timeout 1"
                             -n "nsrun-up-30-before-$BEFORE_REV" "$BEFORE up --isolated -f $out/up30.yaml --exit-code-from done --timeout 1")
joined_up=()
if helper_installed; then
  # With the helper: the same nodes through the uplink (its IPv6 is what
  # dual-stack adds to a joined run); a /18, clear of the run uplinks' /19.
  { echo "subnets: {s: 172.18.0.0/18}"; gen 30; } > "$out/up30-joined.yaml"
  { echo "ipv6: false"; echo "subnets: {s: 172.18.0.0/18}"; gen 30; } > "$out/up30-joined-no-ipv6.yaml"
  joined_up=(-n "nsrun-up-30-joined" "$NSRUN up -f $out/up30-joined.yaml --exit-code-from done --timeout 1"
             -n "nsrun-up-30-joined-no-ipv6" "$NSRUN up -f $out/up30-joined-no-ipv6.yaml --exit-code-from done --timeout 1")
fi
hfb up "${before_up[@]}" "${joined_up[@]}" \
  -n "nsrun-up-3" "$NSRUN up --isolated -f $out/up3.yaml --exit-code-from done --timeout 1" \
  -n "nsrun-up-30" "$NSRUN up --isolated -f $out/up30.yaml --exit-code-from done --timeout 1" \
  -n "nsrun-up-30-no-ipv6" "$NSRUN up --isolated -f $out/up30-no-ipv6.yaml --exit-code-from done --timeout 1" \
  -n "shellout-ip-3" "unshare -Urnm sh bench/shellout.sh 3" \
  -n "shellout-ip-30" "unshare -Urnm sh bench/shellout.sh 30" \
  -n "shellout-ip-batch-3" "unshare -Urnm sh bench/shellout.sh 3 batch" \
  -n "shellout-ip-batch-30" "unshare -Urnm sh bench/shellout.sh 30 batch" \
  -n "spawn-30-sleeps" "$FLOOR spawn 30"
{
  echo
  go run ./bench/report -title "nsrun up: N nodes started until all are up, then stopped" -base shellout-ip-batch-30 \
    -note "nsrun-up-N runs N \`sleep\` nodes plus one that depends on all of them and exits. Per node at 30: see the ratio of nsrun-up-30 to nsrun-up-3. The shell-out scripts wire the namespaces and start no process in them; spawn-30-sleeps starts 30 \`sleep\`s from Go and stops them, no namespace made (bench/floor): the floor of nsrun-up-30." \
    "$out"/up.*.json
} >> BENCHMARKS.md
fi

# ---- nstest: a Go test's network (package nstest) against nsrun up of the
# same nodes: Start of 3 command-less nodes, one DialContext + round trip,
# and Close, in a test binary; and the Go benchmarks' own figures.
if want nstest; then
echo "== nstest: Start + DialContext + Close of 3 nodes vs nsrun up"
go test -c -o "$out/nstest.test" ./nstest
printf 'nodes:\n  a: {ip: 172.18.0.11}\n  b: {ip: 172.18.0.12}\n  c: {ip: 172.18.0.13}\n  done: {ip: 172.18.0.14, command: [\x27true\x27], depends_on: [a, b, c]}\n' > "$out/idle3.yaml"
nstest_cmds=(-n floor "unshare -Urn true" -n go-hello "$FLOOR hello"
  -n "nsrun-up-3-idle" "$NSRUN up --isolated -f $out/idle3.yaml --exit-code-from done --timeout 1"
  -n "nstest-3-idle" "$out/nstest.test -test.run ^\$ -test.bench ^BenchmarkStartDialClose\$ -test.benchtime 1x"
  -n "nstest-empty" "$out/nstest.test -test.run ^\$ -test.bench ^BenchmarkEmpty\$ -test.benchtime 1x")
hfb nstest "${nstest_cmds[@]}"
# The same, each run 0.2 s after the last: back to back, about every other
# run waits for the kernel's teardown of the one before (RTNL, held while
# it frees the last run's bridge), whichever program runs, and the medians
# then say more about that than about the programs.
HFB_PREPARE="sleep 0.2" hfb nstest-settled "${nstest_cmds[@]}"
gobench=$("$out/nstest.test" -test.run '^$' -test.bench . -test.benchtime "${runs}x" 2>/dev/null | awk '/^Benchmark/ && !/^BenchmarkEmpty/ { printf "| %s | %.3f ms |\n", $1, $3 / 1e6 }')
{
  echo
  go run ./bench/report -title "nstest: a Go test's network of 3 command-less nodes, started, dialled once, stopped" -base nsrun-up-3-idle \
    -diff nstest-3-idle,nstest-empty \
    -note "nstest-3-idle is the nstest test binary running BenchmarkStartDialClose once (Start, Listen in c, DialContext from a, one round trip, Close); nstest-empty is that test binary running BenchmarkEmpty once, the same benchmark with nothing in its loop: what the test binary, the benchmark framework (its garbage collections) and the tests' user-namespace check cost; the row between them is what the API itself costs, Start to Close, against nsrun-up-3-idle: nsrun up of the same three nodes and a fourth that exits at once (--exit-code-from)." \
    "$out"/nstest.*.json
  go run ./bench/report -title "nstest, each run 0.2 s after the last (hyperfine --prepare 'sleep 0.2')" -base nsrun-up-3-idle \
    -diff nstest-3-idle,nstest-empty "$out"/nstest-settled.*.json
  echo "Go benchmarks (\`go test -bench . ./nstest\`, $runs iterations; BenchmarkDial is DialContext from a node plus a 1-byte round trip in a running network):"
  echo
  echo "| benchmark | per op |"
  echo "|---|---:|"
  echo "$gobench"
} >> BENCHMARKS.md
fi

# ---- partitions: time to apply isolate, disjoint, fullmesh for N nodes
if want partitions; then
echo "== partitions: 10, 100, 250 (with and without IPv6) and 1000 nodes"
part_md=$out/partitions.md
# The floor rows of this section, measured in the same run: what any
# process start costs here, against which the command column reads.
median_ms() { # median_ms CMD...: hyperfine's median of CMD, in ms
  hyperfine -N --warmup 3 --runs "$runs" --style none --export-json "$out/m.json" "$*" >/dev/null
  awk -v c="$(grep -m1 '"median"' "$out/m.json" | tr -dc '0-9.')" 'BEGIN{printf "%.1f ms", c*1000}'
}
pfloor=$(median_ms unshare -Urn true)
phello=$(median_ms "$FLOOR" hello)
{
  echo "## Partitions: time to apply a verb to N nodes"
  echo
  echo "nsrun: the supervisor's own measure of the transaction that switches every rule (median of $runs),"
  echo "the netlink transactions the verb took in all (its sets filled in batches before the switch), and"
  echo "the whole \`nsrun net VERB --run ID\` command line (hyperfine median), beside the floor of this run:"
  echo "\`unshare -Urn true\` ${pfloor:-?}, a static Go hello ${phello:-?}. vagga's way: one \`iptables-restore\`"
  echo "per node namespace (bench/partition-shellout.sh, median of 5; not run at 1000 nodes)."
  echo
  echo "| nodes | verb | nsrun switch | transactions | nsrun command | per-node iptables-restore | × |"
  echo "|---:|---|---:|---:|---:|---:|---:|"
} > "$part_md"
# BENCH_PARTITION_SIZES narrows the sizes (e.g. "10 1000").
for size in ${BENCH_PARTITION_SIZES:-10 100 250 250-no-ipv6 1000}; do
  n=${size%-no-ipv6}
  { [ "$size" = "$n" ] || echo "ipv6: false"; echo "subnets: {s: 172.18.0.0/20}"; echo "nodes:"; i=1
    while [ "$i" -le "$n" ]; do echo "  n$i: {ip: 172.18.$(((i - 1) / 250)).$(((i - 1) % 250 + 1))}"; i=$((i + 1)); done; } > "$out/p$size.yaml"
  label=${size/-no-ipv6/ (no IPv6)}
  $NSRUN up --isolated -f "$out/p$size.yaml" > "$out/p$size.log" 2>&1 &
  uppid=$!
  trap 'kill -TERM "$uppid" 2>/dev/null; git worktree remove --force "$out/before-src" 2>/dev/null; rm -rf "$out"' EXIT
  id=""
  for _ in $(seq 600); do
    id=$($NSRUN ls --json | grep -B1 "\"file\": \"$out/p$size.yaml\"" | grep '"id"' | cut -d'"' -f4 || true)
    [ -n "$id" ] && break
    sleep 0.1
  done
  half=$(seq -s ' ' 1 $((n / 2)) | sed 's/\([0-9]*\)/n\1/g'); rest=$(seq -s ' ' $((n / 2 + 1)) $n | sed 's/\([0-9]*\)/n\1/g')
  for verb in isolate disjoint halves majorities-ring fullmesh; do
    case $verb in
      isolate) args="n1" ;;
      disjoint) args="$half -- $rest" ;;
      halves | majorities-ring) args="--seed 1" ;;
      fullmesh) args="" ;;
    esac
    # "VERB applied (1.2ms to switch, 6 transactions): ..."
    lines=$(for _ in $(seq "$runs"); do $NSRUN net $verb --run "$id" $args | sed -n 's/.* applied (\([0-9.]*\)\(m\?s\|µs\) to switch, \([0-9]*\) transactions).*/\1 \2 \3/p'; done)
    tx=$(echo "$lines" | awk '{v = $1; if ($2 == "µs") v /= 1000; else if ($2 == "s") v *= 1000; print v}' | sort -n | awk '{a[NR] = $1} END {printf "%.2f", a[int((NR + 1) / 2)]}')
    batches=$(echo "$lines" | awk '{print $3}' | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
    hyperfine -N --warmup 2 --runs "$runs" --style none --export-json "$out/cmd.json" "$NSRUN net $verb --run $id $args" >/dev/null
    cmd=$(grep -m1 '"median"' "$out/cmd.json" | tr -dc '0-9.')
    shell=""
    case $verb in isolate | disjoint | fullmesh) [ "$n" -le 250 ] &&
      shell=$(for _ in 1 2 3 4 5; do unshare -Urnm sh bench/partition-shellout.sh "$n" "$verb" 2>/dev/null; done | sort -n | sed -n 3p || true) ;; # "-" without iptables
    esac
    ratio=$(awk -v a="$shell" -v b="$tx" 'BEGIN { if (b > 0 && a != "") printf "%.0f", a / b; else print "-" }')
    printf '| %s | %s | %s ms | %s | %.1f ms | %s ms | %s |\n' "$label" "$verb" "$tx" "$batches" "$(awk -v c="$cmd" 'BEGIN{print c*1000}')" "${shell:--}" "$ratio" >> "$part_md"
  done
  kill -TERM "$uppid"; wait "$uppid" 2>/dev/null || true
done
echo "(× is per-node iptables-restore time over the nsrun switch.)" >> "$part_md"
{ echo; cat "$part_md"; } >> BENCHMARKS.md
fi

# ---- throughput: guest to host through the nsrun uplink vs slirp4netns and pasta
if want throughput; then
echo "== throughput: guest -> host (iperf3)"
st=$(bin/nsrun-helper status --json 2>/dev/null || true)
host=$(echo "$st" | sed -n 's/.*"host_addr": "\([0-9.]*\)\/.*/\1/p')
{
  echo "## Throughput: guest to host, TCP (iperf3, median of 3 runs of 5 s)"
  echo
  if [ -z "$host" ]; then
    echo "Not measured: nsrun-helper is not installed for $(id -un) (sudo nsrun-helper install)."
  elif [ ! -w /dev/net/tun ] || ! command -v rootlesskit >/dev/null || ! command -v pasta >/dev/null; then
    echo "Not measured: needs rootlesskit, slirp4netns and passt (pasta), and /dev/net/tun writable (mode 0666, as most distributions ship it)."
  else
    port=$((20000 + RANDOM % 10000))
    iperf3 -s -B "$host" -p "$port" -D --pidfile "$out/iperf.pid"
    sleep 0.3
    bps() { # median bits/s of 3 runs of the command, which ends with iperf3 -J output
      for _ in 1 2 3; do "$@" 2>/dev/null | sed -n 's/.*"bits_per_second":[[:space:]]*\([0-9.e+]*\).*/\1/p' | tail -1; done |
        sort -g | sed -n 2p
    }
    client="iperf3 -c $host -p $port -t 5 -J"
    nsrun=$(bps $NSRUN -- $client)
    slirp=$(bps rootlesskit --net=slirp4netns --disable-host-loopback --copy-up=/etc $client)
    pasta=$(bps pasta --config-net -- $client)
    kill "$(cat "$out/iperf.pid")" 2>/dev/null || true
    echo "| path | Gbit/s | × nsrun |"
    echo "|---|---:|---:|"
    for row in "nsrun uplink (veth, bridge, gateway, NAT):$nsrun" "rootlesskit --net=slirp4netns:$slirp" "pasta:$pasta"; do
      name=${row%:*} v=${row##*:}
      awk -v n="$name" -v v="$v" -v b="$nsrun" 'BEGIN { if (v == "") printf "| %s | failed | - |\n", n; else printf "| %s | %.2f | %.2f |\n", n, v / 1e9, (b > 0 ? v / b : 0) }'
    done
  fi
  echo
} >> BENCHMARKS.md
fi

# ---- capture: throughput between two nodes with and without capture, and
# the floor under it: the kernel's ring copies alone (pcap files that are
# /dev/null) and writing the bytes of a 30%-cost capture to this disk alone
# (bench/floor write), then both; and the shell-out way with dumpcap.
if want capture; then
echo "== capture: iperf3 between two nodes, capture off and on, the floor, dumpcap"
cat > "$out/cap.yaml" <<'YAML'
nodes:
  server: {ip: 172.18.0.10, command: iperf3 -s -p 5201, ready: tcp:5201}
  client: {ip: 172.18.0.20, command: iperf3 -c server -p 5201 -t 5 -J, depends_on: [server]}
YAML
bits() { sed -n 's/^\(client *|\)\{0,1\}[[:space:]]*"bits_per_second":[[:space:]]*\([0-9.e+]*\).*/\2/p' | tail -1; }
median_gbps() { sort -g | sed -n 2p | awk '{ printf "%.2f", $1 / 1e9 }'; }
# capgbps ERRFILE [nsrun up flags]: median of 3 runs; with $CAP_BG set,
# that command runs beside each run (started first, waited for after).
capgbps() {
  local err=$1; shift
  for _ in 1 2 3; do
    if [ -n "${CAP_BG:-}" ]; then $CAP_BG >>"$err.bg" & fi
    $NSRUN up --isolated -f "$out/cap.yaml" --exit-code-from client --timeout 1 "$@" 2>>"$err" | bits
    wait
    rm -rf "$out/cap"
  done | median_gbps
}
shellgbps() { # shellgbps ERRFILE MODE: the shell-out way, median of 3 runs
  local err=$1; shift
  for _ in 1 2 3; do
    mkdir -p "$out/dc"
    unshare -Urnm sh bench/capture-shellout.sh "$@" "$out/dc" 2>>"$err" | bits
    rm -rf "$out/dc"
  done | median_gbps
}
# "N of M frames" summed over the runs of a row, as "N of M (P%)".
drops() {
  sed -n -e 's/^nsrun-capture: .*: \([0-9]*\) of \([0-9]*\) frames were not captured.*/\1 \2/p' \
         -e 's/^dumpcap: captured \([0-9]*\), dropped \([0-9]*\)$/\2 \1+\2/p' "$1" |
    awk '{ split($2, t, "+"); d += $1; n += (t[2] == "" ? t[1] : t[1] + t[2]) }
         END { if (n == 0) print "0"; else printf "%d of %d (%.1f%%)", d, n, 100 * d / n }'
}
off=$(capgbps "$out/off.err")
on=$(capgbps "$out/on.err" --capture "$out/cap")
mkdir -p "$out/null" && ln -s /dev/null "$out/null/server.pcap" && ln -s /dev/null "$out/null/client.pcap"
null=$(capgbps "$out/null.err" --capture "$out/null")
# The bytes per second each file gets when capture costs exactly 30%.
mbps=$(awk -v g="$off" 'BEGIN { printf "%.0f", g * 0.7 / 8 * 1000 }')
CAP_BG="$FLOOR write 6 $mbps $out/w1 $out/w2"
wr=$(capgbps "$out/wr.err")
nullwr=$(capgbps "$out/nullwr.err" --capture "$out/null")
CAP_BG=
sh_off=$(shellgbps "$out/sh.err" off)
sh_dc=$(shellgbps "$out/dc.err" dumpcap)
cost() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.0f%%", (1 - b / a) * 100 }'; }
{
  echo "## Capture: TCP throughput between two nodes (iperf3, median of 3 runs of 5 s)"
  echo
  echo "| setup | Gbit/s | cost | frames not captured (3 runs) |"
  echo "|---|---:|---:|---|"
  echo "| nsrun, capture off | $off | | |"
  echo "| nsrun --capture (two pcap files on disk) | $on | $(cost "$off" "$on") | $(drops "$out/on.err") |"
  echo "| floor: nsrun --capture with both files /dev/null (kernel ring copies, no file) | $null | $(cost "$off" "$null") | $(drops "$out/null.err") |"
  echo "| floor: capture off, bench/floor writing two files at $mbps MB/s each beside it | $wr | $(cost "$off" "$wr") | |"
  echo "| floor: both of the above together | $nullwr | $(cost "$off" "$nullwr") | |"
  echo "| shell-out (ip, bench/capture-shellout.sh), no capture | $sh_off | | |"
  echo "| shell-out with Wireshark's dumpcap on both ports (-B 32 -P) | $sh_dc | $(cost "$sh_off" "$sh_dc") | $(drops "$out/dc.err") |"
  echo
  echo "$mbps MB/s a file is what each of the two pcap files takes in when capture costs 30% (70% of the capture-off rate, 8 bits a byte); bench/floor writes it as nsrun-capture does (4 MiB writes, streamed to disk). Rates it reached: $(sort -u "$out/wr.err.bg" "$out/nullwr.err.bg" 2>/dev/null | awk '{ print $2, $3 }' | sort -g | sed -n '1p;$p' | paste -sd- -)."
  echo
} >> BENCHMARKS.md
fi
# ---- scale: nsrun up of 1,000 and 2,000 sleeping nodes (issue #24): time
# until every node is up, the first and the last 100 nodes' share of it
# (linear: the last 100 take no longer than 1.3× the first), the stop
# (SIGTERM to exit) and the supervisor's memory, with the floor rows of the
# same run (unshare -Urn true, a static Go hello, Go starting and stopping
# N sleeps with no namespace).
if want scale; then
echo "== scale: nsrun up of ${BENCH_SCALE_SIZES:-1000 2000} nodes"
sruns=${BENCH_SCALE_RUNS:-3}
# secs FILE: the step log's timestamps of every node started, in seconds.
secs() { sed -n 's/^time=[^T]*T\([0-9:.]*\)Z.*msg="start node… done".*/\1/p' "$1" | awk -F: '{ printf "%.3f\n", $1 * 3600 + $2 * 60 + $3 }' | sort -n; }
med() { sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'; }
now() { date +%s.%N; }
hyperfine -N --warmup 2 --runs 10 --style none --export-json "$out/scale-floor.json" -n floor "unshare -Urn true" -n go-hello "$FLOOR hello" >/dev/null
floors=$(grep -o '"median": [0-9.e-]*' "$out/scale-floor.json" | awk '{ printf "%.1f ms ", $2 * 1000 }')
scale_md=$out/scale.md
{
  echo "## nsrun up at 1,000 and 2,000 nodes (issue #24)"
  echo
  echo "\`BENCH_ONLY=scale\`, $(date -u '+%Y-%m-%d %H:%M') UTC, $sruns runs a size (medians), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start."
  echo "Nodes run \`sleep\`, \`--isolated\`, 1,000 to a /22 subnet (a Linux bridge takes at most 1,023 ports). \"up\" is from nsrun's start to its line \"every node is up\";"
  echo "the first and last 100 are the spans in which the first and the last 100 nodes started (nsrun's step log);"
  echo "stop is SIGTERM to nsrun's exit; RSS is the supervisor's once every node is up. Floor rows of this run:"
  echo "\`unshare -Urn true\` and a static Go hello $floors(medians of 10); spawn-N is Go starting N \`sleep\`s and stopping them (bench/floor), no namespace."
  echo
  echo "| nodes | up | first 100 | last 100 | last / first | stop | supervisor RSS | per node | spawn-N floor |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} > "$scale_md"
for n in ${BENCH_SCALE_SIZES:-1000 2000}; do
  # A Linux bridge takes at most 1,023 ports: a subnet (/22) every
  # 1,000 nodes.
  {
    echo "subnets:"
    for k in $(seq 0 $(((n - 1) / 1000))); do echo "  s$k: 172.18.$((4 * k)).0/22"; done
    echo "nodes:"
    for i in $(seq 0 $((n - 1))); do
      j=$((i % 1000))
      echo "  n$((i + 1)): {ip: 172.18.$((4 * (i / 1000) + j / 250)).$((j % 250 + 1)), command: [sleep, '3600']}"
    done
  } > "$out/scale$n.yaml"
  rm -f "$out"/scale-$n-*.row
  for r in $(seq "$sruns"); do
    log=$out/scale-$n-$r.log
    # nsrun's output comes through a FIFO, read line by line until the
    # up line (then drained in the background): a blocking read, where
    # polling the output with grep every 10 ms took 3-5% of the machine's
    # CPU from the run it measured.
    rm -f "$out/scale.fifo"
    mkfifo "$out/scale.fifo"
    t0=$(now)
    $NSRUN up --isolated -f "$out/scale$n.yaml" --timeout 2 --log-level info >"$out/scale.fifo" 2>"$log" &
    pid=$!
    exec 3<"$out/scale.fifo"
    while IFS= read -r line <&3; do
      case $line in *"every node is up"*) break ;; esac
    done
    t1=$(now)
    cat <&3 >/dev/null &
    drain=$!
    exec 3<&-
    sup=$(cat /proc/"$pid"/task/*/children 2>/dev/null | awk '{ print $1; exit }')
    rss=$(awk '/^VmRSS/ { print $2 }' /proc/"$sup"/status 2>/dev/null)
    kill -TERM "$pid"
    wait "$pid" || true
    t2=$(now)
    wait "$drain" || true
    secs "$log" > "$out/starts"
    first=$(awk 'NR == 1 { a = $1 } NR == 100 { print $1 - a }' "$out/starts")
    last=$(awk -v n="$n" 'NR == n - 99 { a = $1 } NR == n { print $1 - a }' "$out/starts")
    echo "$t0 $t1 $t2 ${rss:-0} $first $last" | awk '{ print $2 - $1, $3 - $2, $4, $5, $6 }' > "$out/scale-$n-$r.row"
  done
  spawn=$(hyperfine -N --runs 3 --style none --export-json "$out/spawn.json" "$FLOOR spawn $n" >/dev/null && grep -m1 '"median"' "$out/spawn.json" | tr -dc '0-9.')
  col() { cat "$out"/scale-$n-*.row | awk -v c="$1" '{ print $c }' | med; }
  up=$(col 1) stop=$(col 2) rss=$(col 3) first=$(col 4) last=$(col 5)
  awk -v n="$n" -v up="$up" -v stop="$stop" -v rss="$rss" -v f="$first" -v l="$last" -v sp="$spawn" 'BEGIN {
    printf "| %d | %.2f s | %.2f s | %.2f s | %.2f | %.2f s | %.0f MiB | %.0f KiB | %.2f s |\n", n, up, f, l, (f > 0 ? l / f : 0), stop, rss / 1024, rss / n, sp }' >> "$scale_md"
done
{ echo; cat "$scale_md"; echo; } >> BENCHMARKS.md
fi

# ---- latency: nsrun's link engine (delay without netem), side by side with
# the same nodes without delay: round trips (ICMP echo, probe ping, timed to
# the kernel's receive stamp), jitter, TCP throughput and its CPU, start-up
# of 30 nodes with and without a 3-region matrix.
if want latency; then
echo "== latency: the link engine against the same nodes without delay"
go build -o "$out/bin/probe" ./test/probe
export PATH="$out/bin:$PATH"
lat_yaml() { # lat_yaml LATENCY CLIENT_COMMAND: two nodes in two regions
  printf 'nodes:\n  server: {ip: 172.18.0.10, command: iperf3 -s -p 5201, ready: tcp:5201}\n'
  printf '  client: {ip: 172.18.0.20, command: %s, depends_on: [server]}\n' "$2"
  if [ -n "$1" ]; then printf 'regions:\n  a: [server]\n  b: [client]\nlatency:\n  a <-> b: %s\n' "$1"; fi
}
# rtt_row NAME LATENCY N: median, p99, mean and standard deviation (ms) of N echoes
rtt_row() {
  lat_yaml "$2" "probe ping server $(($3 + 3))" > "$out/lat.yaml"
  $NSRUN up --isolated -f "$out/lat.yaml" --exit-code-from client --timeout 1 2>/dev/null |
    sed -n 's/^client *| rtt_us //p' | tr ' ' '\n' | tail -n +4 | sort -g |
    awk -v name="$1" '$1 < 0 { lost++; next } { n++; v[n] = $1 / 1000; s += v[n] } END {
      m = s / n; for (i = 1; i <= n; i++) q += (v[i] - m) ^ 2
      p99 = int(n * 0.99); if (p99 < 1) p99 = 1
      printf "| %s | %.3f | %.3f | %.3f | %.3f | %d |\n", name, v[int(n / 2) + 1], v[p99], m, sqrt(q / (n - 1)), lost }'
}
tp_row() { # tp_row NAME LATENCY: Gbit/s of iperf3 -t 5, and the run's CPU seconds
  lat_yaml "$2" "iperf3 -c server -p 5201 -t 5 -w 8M -J" > "$out/lat.yaml"
  local t0 t1 g
  t0=$(awk '{ print $14 + $15 + $16 + $17 }' /proc/self/stat)
  g=$( { /usr/bin/time -f "cpu %U %S" $NSRUN up --isolated -f "$out/lat.yaml" --exit-code-from client --timeout 1 2>"$out/tp.err"; } |
    sed -n 's/^client *|[[:space:]]*"bits_per_second":[[:space:]]*\([0-9.e+]*\).*/\1/p' | tail -1)
  local cpu
  cpu=$(sed -n 's/^cpu \([0-9.]*\) \([0-9.]*\)$/\1 \2/p' "$out/tp.err" | awk '{ print $1 + $2 }')
  awk -v n="$1" -v g="$g" -v c="$cpu" 'BEGIN { if (g == "") printf "| %s | failed | | |\n", n; else printf "| %s | %.2f | %.1f | %.2f |\n", n, g / 1e9, c, (g > 0 ? c / (g / 1e9 * 5) : 0) }'
}
many_yaml() { # many_yaml N WITH_MATRIX: N nodes that exit at once, in 3 regions
  echo "nodes:"
  for i in $(seq 1 "$1"); do echo "  n$i: {ip: 172.18.0.$i, command: 'true'}"; done
  if [ "$2" = 1 ]; then
    echo "regions:"
    for r in 0 1 2; do printf '  r%d: [%s]\n' "$r" "$(seq -s ', n' $((r + 1)) 3 "$1" | sed 's/^/n/')"; done
    printf 'latency:\n  r0 <-> r1: 10ms\n  r0 <-> r2: 20ms\n  r1 <-> r2: 30ms\n'
  fi
}
many_yaml 30 0 > "$out/many0.yaml"
many_yaml 30 1 > "$out/many1.yaml"
hfb lat-up -n "30 nodes" "$NSRUN up --isolated -f $out/many0.yaml" -n "30 nodes, 3-region matrix" "$NSRUN up --isolated -f $out/many1.yaml"
{
  echo "## Latency: the link engine (user space, no netem) against the same nodes without delay"
  echo
  echo "Round trips of ICMP echoes between two nodes in two regions (probe ping, 10 ms apart, timed to the kernel's receive timestamp); D is the one-way delay each way, so a round trip should be 2D."
  echo
  echo "| matrix | median ms | p99 ms | mean ms | sd ms | lost |"
  echo "|---|---:|---:|---:|---:|---:|"
  rtt_row "none (kernel path)" "" 200
  rtt_row "D = 1ms" 1ms 200
  rtt_row "D = 10ms" 10ms 200
  rtt_row "D = 100ms" 100ms 50
  rtt_row "D = 10ms ±2ms (round-trip sd should be 2.83ms)" "10ms ±2ms" 300
  echo
  echo "TCP between the two nodes (iperf3 -t 5 -w 8M); CPU is the whole run's (nsrun, its nodes, iperf3 at both ends)."
  echo
  echo "| matrix | Gbit/s | CPU s | CPU s per Gbit |"
  echo "|---|---:|---:|---:|"
  tp_row "none (kernel path)" ""
  tp_row "D = 10ms" 10ms
  echo
  echo "Start-up: nsrun up of 30 nodes that exit at once, without and with a 3-region matrix (applied before any node starts)."
  echo
  go run ./bench/report -title "Start-up: 30 nodes, without and with a 3-region latency matrix" -base "30 nodes" "$out"/lat-up.*.json
  echo
} >> BENCHMARKS.md
fi

if want faults; then
echo "== faults: a fault schedule's own overhead per step at 100 nodes"
fb=$(go test -run '^$' -bench '^BenchmarkScheduleStep$' -benchtime "${runs}x" ./internal/faults | awk '/^BenchmarkScheduleStep/ {for (i = 1; i < NF; i++) if ($(i+1) == "ns/step") print $i}')
{
  echo "## Fault schedules: overhead per step"
  echo
  echo "The schedule's own work per step at 100 nodes (\`go test -bench BenchmarkScheduleStep ./faults\`, $runs schedules of 1,000 random steps: draw the step, resolve random, parse the verb line with the command line's parser, its heal, the timer and the event), with a client that does nothing; the verb itself is measured under Partitions. The issue's bound is 5 ms."
  echo
  echo "| per step |"
  echo "|---:|"
  echo "| $(awk -v ns="$fb" 'BEGIN { printf "%.1f µs", ns / 1000 }') |"
  echo
} >> BENCHMARKS.md
fi

cat BENCHMARKS.md
