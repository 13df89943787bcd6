#!/bin/bash
# PID 1 of the test cluster's sandbox: its own PID, network and mount namespaces, made by
# tests/support/cluster.py with `unshare --pid --net --mount --fork --kill-child`.
#
# Everything the cluster starts (the registry, every node's containerd, kubelet and containers)
# lives in this PID namespace, so when this process ends the kernel ends all of them, and with
# the last of them go their network namespaces (bridges, veths, iptables/nftables rules) and
# mount namespaces (overlay, tmpfs, bind mounts). It ends when its standard input closes: the
# harness holds the other end, so a harness that dies, however it dies, takes the cluster with it.
set -euo pipefail
ready=$1

# ip netns pins and runtime sockets live on a /run of the sandbox's own, never the host's.
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run
ip link set lo up
ip link add br0 type bridge
ip link set br0 up
: >"$ready"

# Reap adopted children (bash does, on SIGCHLD) until the harness lets go.
while read -r line; do
  [ "$line" = stop ] && break
done
exit 0
