# shellcheck shell=bash
# Shared helpers for hack/cluster/*.sh and hack/image/*.sh. Source it; it sets no traps.
set -euo pipefail

CLUSTER_HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${CLUSTER_HACK_DIR}/../.." && pwd)"
# shellcheck source=versions.env
. "${CLUSTER_HACK_DIR}/versions.env"

# ip, iptables, sysctl, dockerd, runc live in sbin; CI environments may not have it on PATH.
for d in /usr/local/sbin /usr/sbin /sbin; do
  case ":${PATH}:" in *":$d:"*) ;; *) PATH="${PATH}:$d" ;; esac
done
export PATH

RUNBOOK_CACHE="${RUNBOOK_CACHE:-/var/cache/runbook-operator}"
export RUNBOOK_CACHE
CLUSTER_DIR="${CLUSTER_DIR:-${RUNBOOK_CACHE}/cluster}"

# Go caches live outside the repository so that a warm run rebuilds nothing.
export GOMODCACHE="${RUNBOOK_CACHE}/go/mod"
export GOCACHE="${RUNBOOK_CACHE}/go/build"
export GOFLAGS="-mod=mod"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# tool_dir NAME VERSION -> directory holding the binaries of one tools/NAME build.
# The key is the pinned version, the Go toolchain and a hash of the tools module files
# (go.mod, go.sum and the module's own *.go files, e.g. tools/coredns/main.go).
tool_dir() {
  local name="$1" version="$2" gover sum dir="${CLUSTER_HACK_DIR}/tools/$1" src=()
  gover="$(go env GOVERSION)"
  mapfile -t src < <(find "${dir}" -maxdepth 1 -name '*.go' | LC_ALL=C sort)
  sum="$(cat "${dir}/go.mod" "${dir}/go.sum" "${src[@]}" | sha256sum | cut -c1-12)"
  echo "${RUNBOOK_CACHE}/bin/${name}-${version}-${gover}-${sum}"
}

# Paths of the built binaries (valid once build-tools.sh has run).
kube_bin()  { echo "$(tool_dir kubernetes "${KUBE_VERSION}")/$1"; }
kwok_bin()  { echo "$(tool_dir kwok "${KWOK_VERSION}")/kwok"; }
helm_bin()  { echo "$(tool_dir helm "${HELM_VERSION}")/helm"; }
coredns_bin() { echo "$(tool_dir coredns "${COREDNS_VERSION}")/coredns"; }

# ---------------------------------------------------------------- local cluster layout
# Addresses. The CNI bridge doubles as the node's address (this kernel has no dummy
# interfaces): the kubelet, the apiserver's advertise address and hence the `kubernetes`
# Service endpoint all use NODE_IP, which exists only on this machine.
NODE_NAME="${NODE_NAME:-runbook-node}"
CNI_BRIDGE="${CNI_BRIDGE:-rbk-cni0}"
POD_CIDR="${POD_CIDR:-10.244.0.0/24}"
NODE_IP="${NODE_IP:-10.244.0.1}"
SERVICE_CIDR="${SERVICE_CIDR:-10.96.0.0/24}"
KUBERNETES_SVC_IP="${KUBERNETES_SVC_IP:-10.96.0.1}"
# Cluster DNS: CoreDNS runs on this machine and listens on NODE_IP:53 only; pods use the
# `kube-dns` Service (DNS_SVC_IP), whose EndpointSlice cluster-up writes by hand.
DNS_SVC_IP="${DNS_SVC_IP:-10.96.0.10}"
CLUSTER_DOMAIN="${CLUSTER_DOMAIN:-cluster.local}"
DNS_HEALTH_PORT="${DNS_HEALTH_PORT:-10253}"
DNS_READY_PORT="${DNS_READY_PORT:-10254}"
API_PORT="${API_PORT:-6443}"
ETCD_CLIENT_PORT="${ETCD_CLIENT_PORT:-2379}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-2380}"
KWOK_NODES="${KWOK_NODES:-2}"
# Pods may talk to each other and to this node, never beyond it (see docs/cluster.md).
EGRESS_RULE=(FORWARD -s "${POD_CIDR}" ! -d "${POD_CIDR}" -m comment --comment runbook-operator-pod-egress -j DROP)

PKI="${CLUSTER_DIR}/pki"
PIDS="${CLUSTER_DIR}/pids"
LOGS="${CLUSTER_DIR}/logs"
ADMIN_KUBECONFIG="${CLUSTER_DIR}/admin.kubeconfig"
CONTAINERD_SOCK="${CLUSTER_DIR}/containerd/containerd.sock"

kctl() { "$(kube_bin kubectl)" --kubeconfig "${ADMIN_KUBECONFIG}" "$@"; }

# A PID file holds "PID STARTTIME" (field 22 of /proc/PID/stat), so that a PID reused by
# another process after a reboot or crash is never mistaken for ours.
proc_starttime() {
  local s
  s="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  s="${s##*) }"
  local -a f
  read -ra f <<<"$s"
  echo "${f[19]}"
}
record_pid() {  # NAME PID -> pids/NAME.pid
  echo "$2 $(proc_starttime "$2" || echo 0)" >"${PIDS}/$1.pid"
}
recorded_pid() {  # NAME -> the PID in pids/NAME.pid if that process is still the one recorded
  local f="${PIDS}/$1.pid" pid start
  [[ -f "$f" ]] || return 1
  read -r pid start <"$f" || true
  [[ -n "${pid:-}" ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ -z "${start:-}" || "$(proc_starttime "$pid")" == "$start" ]] || return 1
  echo "$pid"
}
pid_alive() { recorded_pid "$1" >/dev/null; }

# stop_pid NAME [TIMEOUT]: TERM, wait, KILL the process in pids/NAME.pid; remove the file.
stop_pid() {
  local name="$1" timeout="${2:-20}" f="${PIDS}/$1.pid" pid i
  [[ -f "$f" ]] || return 0
  if pid="$(recorded_pid "$name")"; then
    log "stopping ${name} (pid ${pid})"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 5; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "${name} (pid ${pid}) did not exit; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
    fi
  fi
  rm -f "$f"
}

# wait_until DESC TIMEOUT_SECONDS CMD...: poll CMD every second.
wait_until() {
  local desc="$1" timeout="$2" i; shift 2
  for ((i = 0; i < timeout; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  log "timed out after ${timeout}s waiting for ${desc}"
  return 1
}
