#!/usr/bin/env bash
# make demo-cluster: from a fresh machine to the Rapid Attribution report, on a real cluster.
#
#   1. packages, tools, image and the local cluster (hack/ci-e2e.sh's phases, no tests); the
#      cluster stays up afterwards (`make cluster-down` stops it)
#   2. the operator, installed by the Helm chart (make deploy)
#   3. examples/rapid-attribution: its STIX bundle as the runbook's files ConfigMap, the Runbook,
#      the RunbookExecution
#   4. wait for it to finish, print the report and verify the ledger (status ↔ ledger ↔ signature)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
NS="${DEMO_NAMESPACE:-runbook-demo}"
EX=examples/rapid-attribution
NAME=rapid-attribution-case-2026-0042

RUNBOOK_E2E_KEEP=1 RUNBOOK_PREPARE_ONLY=1 bash hack/ci-e2e.sh
export KUBECONFIG="${KUBECONFIG:-${RUNBOOK_CACHE:-/var/cache/runbook-operator}/cluster/admin.kubeconfig}"
KUBECTL="$(hack/cluster/bin-path.sh kubectl)"

make -s deploy
"${KUBECTL}" create namespace "${NS}" --dry-run=client -o yaml | "${KUBECTL}" apply -f - >/dev/null
"${KUBECTL}" -n "${NS}" delete runbookexecution "${NAME}" --ignore-not-found --wait=true >/dev/null
"${KUBECTL}" -n "${NS}" create configmap rapid-attribution-files --from-file="${EX}/stix-bundle.json" \
  --dry-run=client -o yaml | "${KUBECTL}" apply -f - >/dev/null
"${KUBECTL}" -n "${NS}" apply -f "${EX}/runbook.yaml" -f "${EX}/execution.yaml"

echo "waiting for ${NAME} (kubectl -n ${NS} get rbx -w) ..." >&2
for _ in $(seq 1 300); do
  phase="$("${KUBECTL}" -n "${NS}" get rbx "${NAME}" -o jsonpath='{.status.phase}' 2>/dev/null || true)"
  case "${phase}" in COMPLETED|FAILED|CANCELLED) break ;; esac
  sleep 2
done
"${KUBECTL}" -n "${NS}" get rbx "${NAME}"
.venv/bin/runbookctl status "${NAME}" -n "${NS}"
.venv/bin/runbookctl output "${NAME}" generate_report -n "${NS}" -o json \
  | .venv/bin/python -c "import json,sys; print(json.load(sys.stdin).get('markdown','(no markdown)'))"
.venv/bin/runbookctl verify "${NAME}" -n "${NS}"
echo >&2
echo "the web console (docs/ui.md), as you, on 127.0.0.1 — it prints its URL:" >&2
echo "  KUBECONFIG=${KUBECONFIG} .venv/bin/runbookctl ui --open" >&2
echo "  then open /executions/${NS}/${NAME}" >&2
[[ "${phase}" == COMPLETED ]]
