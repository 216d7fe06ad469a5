#!/bin/sh
# The shell-out way to capture two links: a bridge namespace and two guest
# namespaces wired with `ip`, iperf3 from guest 1 to guest 2 for 5 s, and,
# unless MODE is off, Wireshark's dumpcap on each guest's bridge port
# writing one pcap file per link into DIR, as one would by hand. Run it
# rootless (bench/run.sh does: unshare -Urnm sh capture-shellout.sh ...).
# Prints iperf3's JSON; dumpcap's drop counts go to stderr.
#   capture-shellout.sh off
#   capture-shellout.sh dumpcap DIR
set -e
MODE=${1:-off}
DIR=$2
mount -t tmpfs tmpfs /run
ip netns add br
ip -n br link add br0 type bridge
ip -n br link set br0 up
for i in 1 2; do
  ip netns add "g$i"
  ip -n br link add "v$i" type veth peer name eth0 netns "g$i"
  ip -n br link set "v$i" master br0 up
  ip -n "g$i" addr add "172.18.0.$i/24" dev eth0
  ip -n "g$i" link set eth0 up
  ip -n "g$i" link set lo up
done
pids=
if [ "$MODE" = dumpcap ]; then
  for i in 1 2; do
    # -B 32: a 32 MiB kernel buffer, as nsrun's ring; -P: pcap, not pcapng.
    ip netns exec br dumpcap -q -B 32 -P -i "v$i" -w "$DIR/g$i.pcap" 2>"$DIR/g$i.err" &
    pids="$pids $!"
  done
  # dumpcap says "File: ..." once it captures.
  for i in 1 2; do
    n=0
    until grep -q '^File:' "$DIR/g$i.err" 2>/dev/null; do
      n=$((n + 1)); [ "$n" -lt 500 ] || { echo "dumpcap did not start" >&2; exit 1; }
      sleep 0.01
    done
  done
fi
ip netns exec g2 iperf3 -s -1 -p 5201 >/dev/null &
server=$!
n=0
until ip netns exec g2 ss -Hltn 'sport = :5201' | grep -q . || [ "$n" -ge 100 ]; do
  n=$((n + 1)); sleep 0.02
done
ip netns exec g1 iperf3 -c 172.18.0.2 -p 5201 -t 5 -J
wait "$server" || true
if [ -n "$pids" ]; then
  kill -TERM $pids
  wait $pids || true
  sed -n "s/^Packets received\/dropped on interface '[^']*': \([0-9]*\)\/\([0-9]*\).*/dumpcap: captured \1, dropped \2/p" "$DIR"/g*.err >&2
fi
