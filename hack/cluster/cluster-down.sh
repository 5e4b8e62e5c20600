#!/usr/bin/env bash
# Stops exactly what cluster-up.sh started -- by the PID files in $RUNBOOK_CACHE/cluster/pids,
# never by process name -- and removes what it created: pod containers and their
# containerd shims, mounts under the state dir, pod network namespaces, kube-proxy's
# iptables rules, the CNI bridge, and the state dir itself (logs are kept in
# $RUNBOOK_CACHE/logs/last-cluster for a post-mortem).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ! -d "${CLUSTER_DIR}" ]]; then
  log "no cluster state in ${CLUSTER_DIR}; nothing to do"
  exit 0
fi
MODE="$(cat "${CLUSTER_DIR}/mode" 2>/dev/null || echo full)"
CTR=(ctr --address "${CONTAINERD_SOCK}" -n k8s.io)

# 1. Stop the controllers first so that nothing recreates the pods deleted below.
for c in kwok kube-scheduler kube-controller-manager; do stop_pid "$c"; done

# 2. Let the kubelet stop its pods properly (CNI DEL, netns removal) while it still can.
if pid_alive kubelet && pid_alive kube-apiserver && [[ -x "$(kube_bin kubectl)" ]]; then
  log "deleting all pods so the kubelet tears them down"
  kctl delete pods --all --all-namespaces --grace-period=0 --wait=false >/dev/null 2>&1 || true
  running() { [[ -n "$("${CTR[@]}" tasks ls 2>/dev/null | awk 'NR>1 && $3=="RUNNING"')" ]]; }
  for _ in $(seq 1 60); do running || break; sleep 1; done
fi
stop_pid kubelet
stop_pid kube-proxy
stop_pid coredns
if [[ "${MODE}" == full && -x "$(kube_bin kube-proxy)" ]]; then
  # Removes the KUBE-* chains and rules that kube-proxy installed.
  "$(kube_bin kube-proxy)" --cleanup >/dev/null 2>&1 || true
fi

# The kubelet's own chains (KUBE-FIREWALL, canaries, hint); kube-proxy --cleanup leaves them.
for ipt in iptables ip6tables; do
  command -v "$ipt" >/dev/null || continue
  if [[ "${MODE}" == full ]]; then
    while "$ipt" -t filter -D INPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    while "$ipt" -t filter -D OUTPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    for tc in filter:KUBE-FIREWALL filter:KUBE-KUBELET-CANARY nat:KUBE-KUBELET-CANARY \
              mangle:KUBE-KUBELET-CANARY mangle:KUBE-IPTABLES-HINT; do
      "$ipt" -t "${tc%%:*}" -F "${tc#*:}" 2>/dev/null && "$ipt" -t "${tc%%:*}" -X "${tc#*:}" 2>/dev/null || true
    done
  fi
done

# 3. Remove whatever containers are left, so their shims exit; then stop containerd.
# Network namespaces of the pods whose tasks still exist (their OCI specs are in
# containerd's state dir); removed after the containers are gone.
netns=()
if [[ -d "${CLUSTER_DIR}/containerd/state" ]]; then
  while IFS= read -r ns; do [[ -n "$ns" ]] && netns+=("$ns"); done < <(
    find "${CLUSTER_DIR}/containerd/state" -maxdepth 4 -name config.json -print0 2>/dev/null \
      | xargs -0 -r python3 -c '
import json, sys
for f in sys.argv[1:]:
    try:
        for n in json.load(open(f)).get("linux", {}).get("namespaces", []):
            if n.get("type") == "network" and n.get("path", "").startswith("/var/run/netns/cni-"):
                print(n["path"])
    except Exception:
        pass' | sort -u)
fi
if pid_alive containerd; then
  for id in $("${CTR[@]}" containers ls -q 2>/dev/null); do
    "${CTR[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  sleep 1
  for id in $("${CTR[@]}" containers ls -q 2>/dev/null); do
    "${CTR[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true
    "${CTR[@]}" containers delete "$id" >/dev/null 2>&1 || true
  done
fi
# Containers still alive (e.g. containerd was killed first) are found through the init.pid
# files in containerd's state dir; their parent is the shim, which is stopped too after
# checking that it is a shim of *this* containerd (its -address is our socket).
if [[ -d "${CLUSTER_DIR}/containerd/state" ]]; then
  procs=() shims=()
  while IFS= read -r f; do
    pid="$(cat "$f" 2>/dev/null || true)"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || continue
    ppid="$(awk '/^PPid:/ {print $2}' "/proc/${pid}/status" 2>/dev/null || true)"
    [[ -n "$ppid" ]] || continue
    cmdline="$(tr '\0' ' ' <"/proc/${ppid}/cmdline" 2>/dev/null || true)"
    if [[ "${cmdline}" == *"-address ${CONTAINERD_SOCK} "* ]]; then
      procs+=("$pid"); shims+=("$ppid")
    fi
  done < <(find "${CLUSTER_DIR}/containerd/state" -maxdepth 4 -name init.pid 2>/dev/null)
  if ((${#procs[@]})); then
    log "stopping leftover container processes ${procs[*]} and their shims $(printf '%s\n' "${shims[@]}" | sort -u | xargs)"
    kill -KILL "${procs[@]}" 2>/dev/null || true
    kill -KILL "${shims[@]}" 2>/dev/null || true
  fi
fi
stop_pid containerd 30

# 4. Control plane.
stop_pid kube-apiserver
stop_pid etcd 30

# Anything else with a pid file (should be nothing).
for f in "${PIDS}"/*.pid; do [[ -e "$f" ]] && stop_pid "$(basename "$f" .pid)"; done

# 5. Mounts under the state dir (overlay rootfs, projected volumes, ...), deepest first,
#    and the network namespaces of pods that were not torn down by the kubelet.
for ns in "${netns[@]}"; do
  [[ -e "$ns" ]] || continue
  umount "$ns" 2>/dev/null || true
  rm -f "$ns" 2>/dev/null || true
done
awk -v d="${CLUSTER_DIR}/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
  umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
done

# The kubelet links container logs from /var/log/containers (not configurable); remove
# the links that point into this cluster's podLogsDir.
for l in /var/log/containers/*.log; do
  [[ -L "$l" ]] || continue
  case "$(readlink "$l")" in "${CLUSTER_DIR}/"*) rm -f "$l" ;; esac
done

# Directories containerd and the kubelet create outside the state dir, if now empty.
for d in /run/containerd /var/log/containers; do
  [[ -d "$d" ]] && find "$d" -depth -type d -empty -delete 2>/dev/null || true
done

# 6. Network: the egress guard and the bridge that cluster-up created.
while iptables -D "${EGRESS_RULE[@]}" 2>/dev/null; do :; done
if [[ -f "${CLUSTER_DIR}/ip_forward.orig" ]]; then
  sysctl -qw "net.ipv4.ip_forward=$(cat "${CLUSTER_DIR}/ip_forward.orig")" 2>/dev/null || true
fi
if [[ -f "${CLUSTER_DIR}/created-bridge" ]] && ip link show "${CNI_BRIDGE}" >/dev/null 2>&1; then
  log "deleting bridge ${CNI_BRIDGE}"
  ip link delete "${CNI_BRIDGE}" 2>/dev/null || true
fi

# 7. State: keep the logs, remove the rest.
if [[ -d "${LOGS}" ]]; then
  rm -rf "${RUNBOOK_CACHE}/logs/last-cluster"
  mkdir -p "${RUNBOOK_CACHE}/logs"
  cp -r "${LOGS}" "${RUNBOOK_CACHE}/logs/last-cluster" 2>/dev/null || true
fi
rm -rf "${CLUSTER_DIR}" 2>/dev/null || {
  log "warning: could not remove all of ${CLUSTER_DIR} (busy mounts?)"
}
log "cluster down"
