#!/bin/sh
# vagga's way of partitioning, re-created: N node namespaces, and for a
# partition one `iptables-restore` per node namespace with that node's
# DROP rules. Prints the milliseconds the rule changes took (namespace
# creation is not counted). Run it rootless inside unshare -Urnm (bench/run.sh
# does), so that `ip netns` may use a /run of its own.
#   partition-shellout.sh N isolate|disjoint|fullmesh
set -e
N=$1 VERB=$2
mount -t tmpfs tmpfs /run
i=1
while [ "$i" -le "$N" ]; do ip netns add "g$i"; i=$((i + 1)); done
addr() { echo "172.18.$(($1 / 250)).$(($1 % 250 + 1))"; }
rules() { # rules for node $1
  echo "*filter"
  echo ":INPUT ACCEPT [0:0]"
  echo ":OUTPUT ACCEPT [0:0]"
  j=1
  while [ "$j" -le "$N" ]; do
    cut=0
    case $VERB in
      isolate) { [ "$1" = 1 ] || [ "$j" = 1 ]; } && [ "$1" != "$j" ] && cut=1 ;;
      disjoint) [ $(($1 * 2 > N)) != $(($j * 2 > N)) ] && cut=1 ;;
    esac
    if [ "$cut" = 1 ]; then
      echo "-A INPUT -s $(addr $j) -j DROP"
      echo "-A OUTPUT -d $(addr $j) -j DROP"
    fi
    j=$((j + 1))
  done
  echo "COMMIT"
}
i=1
while [ "$i" -le "$N" ]; do rules "$i" > "/run/rules$i"; i=$((i + 1)); done
start=$(date +%s%N)
i=1
while [ "$i" -le "$N" ]; do ip netns exec "g$i" iptables-restore < "/run/rules$i"; i=$((i + 1)); done
end=$(date +%s%N)
echo $(((end - start) / 1000000))
