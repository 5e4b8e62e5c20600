#!/usr/bin/env bash
# Builds the test-only kstatus helper (main.go: kstatus's Compute and Argo CD's Lua runtime
# on one object) from the Go modules pinned in go.mod/go.sum, caches it like
# hack/cluster/build-tools.sh does, and prints the binary's path:
#
#   KSTATUS="$(hack/kstatus/build.sh)"; kubectl get rbx x -o json | "$KSTATUS"
#
# Cache: $RUNBOOK_CACHE/bin/kstatus-<cli-utils version>-<go>-<hash of go.mod, go.sum,
# main.go>/kstatus; a second run finds the ".complete" stamp and returns at once. The e2e
# fixture (tests/e2e/test_gitops_health.py) calls it; a cold build took ~70 s of CPU.
. "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"

command -v go >/dev/null || die "go is required (Go >= 1.24) to build the kstatus test helper"
src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(awk '$1 == "sigs.k8s.io/cli-utils" {print $2}' "${src}/go.mod")"
[[ -n "${version}" ]] || die "no sigs.k8s.io/cli-utils requirement in ${src}/go.mod"
sum="$(cat "${src}/go.mod" "${src}/go.sum" "${src}/main.go" | sha256sum | cut -c1-12)"
out="${RUNBOOK_CACHE}/bin/kstatus-${version}-$(go env GOVERSION)-${sum}"
if [[ ! -f "${out}/.complete" ]]; then
  log "kstatus (cli-utils ${version}): building into ${out}"
  t0=${SECONDS}
  rm -rf "${out}.tmp"; mkdir -p "${out}.tmp"
  (cd "${src}" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "${out}.tmp/kstatus" .)
  touch "${out}.tmp/.complete"
  rm -rf "${out}"; mv "${out}.tmp" "${out}"
  log "kstatus: built in $((SECONDS - t0))s"
fi
echo "${out}/kstatus"
