# shellcheck shell=bash
# Shared helpers for hack/cluster/*.sh and hack/image/*.sh. Source it; it sets no traps.
set -euo pipefail

CLUSTER_HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${CLUSTER_HACK_DIR}/../.." && pwd)"
# shellcheck source=versions.env
. "${CLUSTER_HACK_DIR}/versions.env"

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
# The key is the pinned version, the Go toolchain and a hash of the tools module files.
tool_dir() {
  local name="$1" version="$2" gover sum
  gover="$(go env GOVERSION)"
  sum="$(cat "${CLUSTER_HACK_DIR}/tools/${name}/go.mod" "${CLUSTER_HACK_DIR}/tools/${name}/go.sum" \
    | sha256sum | cut -c1-12)"
  echo "${RUNBOOK_CACHE}/bin/${name}-${version}-${gover}-${sum}"
}

# Paths of the built binaries (valid once build-tools.sh has run).
kube_bin()  { echo "$(tool_dir kubernetes "${KUBE_VERSION}")/$1"; }
kwok_bin()  { echo "$(tool_dir kwok "${KWOK_VERSION}")/kwok"; }
helm_bin()  { echo "$(tool_dir helm "${HELM_VERSION}")/helm"; }
