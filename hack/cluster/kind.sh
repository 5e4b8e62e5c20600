#!/usr/bin/env bash
# Optional kind path (needs a running Docker and access to the kind node image):
#
#   hack/cluster/kind.sh up     create the `runbook` kind cluster from hack/kind.yaml, start
#                               kwok (local process) with fake nodes for the kwok tests, and
#                               print `export KUBECONFIG=...` as the last line (idempotent)
#   hack/cluster/kind.sh load   load runbook-operator:dev (make image) into the kind node
#   hack/cluster/kind.sh down   stop kwok (by its PID file) and delete the kind cluster
#
# Uses `kind` from PATH, else builds the pinned version from its Go module.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KIND_NAME="${KIND_NAME:-runbook}"
KIND_DIR="${RUNBOOK_CACHE}/kind"
KIND_KUBECONFIG="${KIND_DIR}/kubeconfig"
PIDS="${KIND_DIR}"   # kwok's PID file (lib.sh record_pid/stop_pid)
IMAGE="${IMAGE:-runbook-operator:dev}"
mkdir -p "${KIND_DIR}"

if command -v kind >/dev/null; then
  KIND=kind
else
  "${CLUSTER_HACK_DIR}/build-tools.sh" kind
  KIND="$(tool_dir kind "${KIND_VERSION}")/kind"
fi

case "${1:-}" in
  up)
    if ! "${KIND}" get clusters 2>/dev/null | grep -qx "${KIND_NAME}"; then
      "${KIND}" create cluster --name "${KIND_NAME}" --config "${REPO_ROOT}/hack/kind.yaml" \
        --kubeconfig "${KIND_KUBECONFIG}" --wait 120s >&2
    fi
    "${KIND}" get kubeconfig --name "${KIND_NAME}" >"${KIND_KUBECONFIG}"
    # kwok as a local process against kind's API server, same stages and node shape as
    # the local cluster, so the kwok tests run here too.
    "${CLUSTER_HACK_DIR}/build-tools.sh" kubernetes kwok
    if ! pid_alive kwok; then
      setsid "$(kwok_bin)" --kubeconfig "${KIND_KUBECONFIG}" --config "${CLUSTER_HACK_DIR}/kwok/stages.yaml" \
        --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
        --node-lease-duration-seconds 40 --cidr 10.245.0.0/16 --node-ip 10.245.255.254 \
        --server-address 127.0.0.1:10248 >"${KIND_DIR}/kwok.log" 2>&1 </dev/null &
      record_pid kwok $!
    fi
    ADMIN_KUBECONFIG="${KIND_KUBECONFIG}" "${CLUSTER_HACK_DIR}/kwok-nodes.sh"
    echo "export KUBECONFIG=${KIND_KUBECONFIG}"
    ;;
  load)
    "${KIND}" load docker-image "${IMAGE}" --name "${KIND_NAME}"
    ;;
  down)
    stop_pid kwok
    "${KIND}" delete cluster --name "${KIND_NAME}"
    ;;
  *) die "usage: $0 up|load|down" ;;
esac
