#!/bin/sh
# The shell-out way (as vagga does it): a bridge namespace and N guest
# namespaces wired with one `ip` command per step, then `true` in guest 1,
# then everything removed. Run it rootless inside a private user, network
# and mount namespace (bench/run.sh does: unshare -Urnm sh shellout.sh N),
# so that `ip netns` may use a /run of its own.
#   shellout.sh N          one ip command per step
#   shellout.sh N batch    the same steps through one `ip -batch`
set -e
N=${1:-1}
mount -t tmpfs tmpfs /run
steps() {
  echo "netns add br"
  echo "-n br link add br0 type bridge"
  echo "-n br addr add 172.18.0.254/24 dev br0"
  echo "-n br link set br0 up"
  i=1
  while [ "$i" -le "$N" ]; do
    echo "netns add g$i"
    echo "-n br link add v$i type veth peer name eth0 netns g$i"
    echo "-n br link set v$i master br0 up"
    echo "-n g$i addr add $(addr $i) dev eth0"
    echo "-n g$i link set eth0 up"
    echo "-n g$i link set lo up"
    echo "-n g$i route add default via 172.18.0.254"
    i=$((i + 1))
  done
}
addr() { echo "172.18.$(($1 / 250)).$(($1 % 250 + 1))/16"; }
if [ "$2" = batch ]; then
  # As few ip processes as batches allow: one per namespace.
  { echo "netns add br"; i=1; while [ "$i" -le "$N" ]; do echo "netns add g$i"; i=$((i + 1)); done; } | ip -batch -
  {
    echo "link add br0 type bridge"
    echo "addr add 172.18.0.254/24 dev br0"
    echo "link set br0 up"
    i=1
    while [ "$i" -le "$N" ]; do
      echo "link add v$i type veth peer name eth0 netns g$i"
      echo "link set v$i master br0 up"
      i=$((i + 1))
    done
  } | ip -n br -batch -
  i=1
  while [ "$i" -le "$N" ]; do
    printf 'addr add %s dev eth0\nlink set eth0 up\nlink set lo up\nroute add default via 172.18.0.254\n' "$(addr $i)" | ip -n "g$i" -batch -
    i=$((i + 1))
  done
else
  steps | while read -r line; do ip $line; done
fi
ip netns exec g1 true
