#!/usr/bin/env bash
# End-to-end tests on a real local Kubernetes, as CI runs them (root, no stdin):
#
#   1. Debian packages (etcd-server containerd runc containernetworking-plugins docker.io
#      iptables conntrack debootstrap; chromium chromium-driver by hack/browser/install.sh),
#      installed only when missing
#   2. cluster binaries from Go modules (hack/cluster/build-tools.sh; cached by version) and
#      the test-only kstatus helper (hack/kstatus/build.sh)
#   3. the project image and the pause image (hack/image/build.sh; cached by inputs)
#   4. hack/cluster/cluster-up.sh, then pytest -m "e2e or kwok" tests/e2e
#   5. hack/cluster/cluster-down.sh on exit (trap), unless the cluster was already up
#      before this script started (a developer's) or RUNBOOK_E2E_KEEP=1
#
# Timings of each phase go to stderr and to $RUNBOOK_CACHE/logs/ci-e2e-timings.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"
export RUNBOOK_CACHE="${RUNBOOK_CACHE:-/var/cache/runbook-operator}"
export DEBIAN_FRONTEND=noninteractive

T0=$(date +%s)
PHASE_T=$T0
TIMINGS=()
phase() {  # phase NAME: close the previous phase's timer and announce the next
  local now; now=$(date +%s)
  [[ -n "${PHASE_NAME:-}" ]] && TIMINGS+=("$(printf '%-10s %4ss' "${PHASE_NAME}" $((now - PHASE_T)))")
  PHASE_NAME="$1"; PHASE_T=$now
  [[ "$1" == done ]] || echo "=== ci-e2e: $1 ($(date -u +%H:%M:%S))" >&2
}
report_timings() {
  phase done
  TIMINGS+=("$(printf '%-10s %4ss' total $(( $(date +%s) - T0 )))")
  mkdir -p "${RUNBOOK_CACHE}/logs"
  printf '%s\n' "${TIMINGS[@]}" | tee "${RUNBOOK_CACHE}/logs/ci-e2e-timings.txt" >&2
}

[[ "$(id -u)" == 0 ]] || { echo "ci-e2e: needs root (kubelet, containerd, iptables)" >&2; exit 1; }

# ------------------------------------------------------------------ 1. packages
phase packages
PKGS=(etcd-server containerd runc containernetworking-plugins docker.io iptables conntrack
      debootstrap openssl curl ca-certificates python3-venv)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "ci-e2e: installing ${missing[*]}" >&2
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# the console's browser tests (tests/e2e/test_console.py): Debian's chromium + chromium-driver
hack/browser/install.sh
command -v go >/dev/null || { echo "ci-e2e: Go (>= 1.24) is required to build the cluster binaries" >&2; exit 1; }

if [[ ! -x .venv/bin/pytest ]]; then
  python3 -m venv .venv
  .venv/bin/pip install -q -e '.[dev]'
fi

# ------------------------------------------------------------------ teardown on exit
CLUSTER_WAS_UP=""
hack/cluster/cluster-up.sh --status >/dev/null 2>&1 && CLUSTER_WAS_UP=1
cleanup() {
  local rc=$?
  if [[ -z "${CLUSTER_WAS_UP}" && "${RUNBOOK_E2E_KEEP:-}" != 1 ]]; then
    phase teardown
    hack/cluster/cluster-down.sh || true
  fi
  report_timings
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ 2-4
phase tools
nice hack/cluster/build-tools.sh
nice hack/cluster/build-tools.sh alertmanager   # test-only: tests/e2e/test_triggers.py
nice hack/kstatus/build.sh >/dev/null   # test-only: kstatus + gopher-lua (tests/e2e/test_gitops_health.py)

phase image
hack/image/build.sh   # starts dockerd only if none answers, and stops it again

phase cluster-up
out="$(hack/cluster/cluster-up.sh)"
last="$(tail -n1 <<<"${out}")"
[[ "${last}" == "export KUBECONFIG="* ]] || { echo "ci-e2e: cluster-up printed no KUBECONFIG" >&2; exit 1; }
eval "${last}"
# `make demo-cluster` reuses everything above and stops here (the cluster stays up).
[[ -n "${RUNBOOK_PREPARE_ONLY:-}" ]] && exit 0

phase pytest
set +e
.venv/bin/pytest -m "e2e or kwok" tests/e2e -v -p no:cacheprovider --durations=12
rc=$?
set -e
if [[ $rc == 5 ]]; then
  echo "ci-e2e: pytest collected no e2e tests (exit 5)" >&2
  rc=0
fi
exit "$rc"
