#!/bin/bash
# One node of the test cluster, as PID 1 of its own PID, mount and UTS namespaces inside the
# sandbox (sandbox.sh), in the network namespace the harness made for it (`ip netns exec NODE`).
# Every configuration file and argument list is written by tests/support/cluster.py into
# $STATE/nodes/$NAME/config; this script only sets up the namespaces and runs the components,
# each with its log in $STATE/nodes/$NAME/logs/<component>.log.
set -euo pipefail
STATE=$1 NAME=$2 BIN=$3
N=$STATE/nodes/$NAME
C=$N/config
L=$N/logs
mkdir -p "$L"
export PATH=$BIN:/usr/sbin:/usr/bin:/sbin:/bin
hostname "$NAME"

# Mounts: private from the sandbox (and so from the host), shared within the node, as kubelet
# needs for mount propagation. /run and /var/log are the node's own; /etc/hosts names
# registry.local, the node's only image source.
mount --make-rshared /
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=0755 tmpfs /var/log
mkdir -p /run/containerd /run/netns /var/log/pods /var/log/containers
mount --bind "$C/hosts" /etc/hosts

# Kernel tunables kubelet sets are host-wide (not per network namespace): the node reads the
# values kubelet wants from read-only files, so the host's own are never changed.
while read -r key value; do
  f=$N/sysctl/$key
  mkdir -p "${f%/*}"
  echo "$value" >"$f"
  mount --bind -o ro "$f" "/proc/sys/$key"
done <"$C/sysctls"

# cgroup v1: every controller gets this node's root (kubelet's cgroupRoot), made here because
# kubelet wants it to exist; cpuset children start empty, so each level copies its parent's.
CG=$(cat "$C/cgroup-root")
for ctl in /sys/fs/cgroup/*/; do
  [ -e "$ctl/cgroup.procs" ] || continue
  d=$ctl
  for part in ${CG//\// }; do
    parent=$d
    d=$d/$part
    mkdir -p "$d"
    if [ -e "$d/cpuset.cpus" ]; then
      [ -n "$(cat "$d/cpuset.cpus")" ] || cat "$parent/cpuset.cpus" >"$d/cpuset.cpus"
      [ -n "$(cat "$d/cpuset.mems")" ] || cat "$parent/cpuset.mems" >"$d/cpuset.mems"
    fi
  done
done

start() {
  local name=$1
  shift
  mapfile -t args <"$C/$name.args"
  (
    set +e
    "$BIN/$name" "${args[@]}" >>"$L/$name.log" 2>&1
    echo "$name exited with status $? at $(date -u +%FT%TZ)" >>"$L/exits"
  ) &
}

mapfile -t components <"$C/components"
for component in "${components[@]}"; do
  if [ "$component" = kube-apiserver ]; then
    start "$component"
    # the rest of the control plane and the node agents talk to it: wait until it answers
    for _ in $(seq 1 240); do
      "$BIN/kubectl" --kubeconfig "$STATE/kubeconfigs/admin.conf" get --raw /readyz >/dev/null 2>&1 && break
      sleep 0.5
    done
  elif [ "$component" = containerd ]; then
    start "$component"
    for _ in $(seq 1 120); do
      [ -S /run/containerd/containerd.sock ] && break
      sleep 0.25
    done
  elif [ "$component" = kube-router ]; then
    # it identifies its node by name: wait until kubelet has registered it
    for _ in $(seq 1 240); do
      "$BIN/kubectl" --kubeconfig "$STATE/kubeconfigs/admin.conf" get node "$NAME" >/dev/null 2>&1 && break
      sleep 0.5
    done
    start "$component"
  else
    start "$component"
  fi
done

# The pod network (what kind's kindnetd does): this node's CNI configuration from the podCIDR the
# controller-manager gives it, and a route to every other node's pods through that node.
pod_network() {
  local out name cidr ip
  while :; do
    out=$("$BIN/kubectl" --kubeconfig "$STATE/kubeconfigs/admin.conf" get nodes -o \
      jsonpath='{range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}' 2>/dev/null) || {
      sleep 1
      continue
    }
    while read -r name cidr ip; do
      if [ -z "$cidr" ] || [ -z "$ip" ]; then continue; fi
      if [ "$name" = "$NAME" ]; then
        if [ ! -f "$C/cni/10-releaser.conflist" ]; then
          sed "s|@SUBNET@|$cidr|; s|@IPAM@|$N/cni-ipam|" "$C/cni.conflist.in" >"$C/cni/.tmp"
          mv "$C/cni/.tmp" "$C/cni/10-releaser.conflist"
          echo "pod network: $cidr"
        fi
      else
        ip route replace "$cidr" via "$ip" || true
      fi
    done <<<"$out"
    sleep 2
  done
}
pod_network >>"$L/pod-network.log" 2>&1 &

wait
