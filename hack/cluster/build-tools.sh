#!/usr/bin/env bash
# Builds the cluster tools from Go modules at the versions pinned in versions.env and
# caches them under $RUNBOOK_CACHE/bin/<tool>-<version>-<go>-<hash>/. A second run with
# the same inputs finds the ".complete" stamp and returns at once.
#
#   hack/cluster/build-tools.sh [kubernetes] [kwok] [helm] [coredns] [etcd] [kind] [argo] [alertmanager]
#   (default: kubernetes kwok helm coredns; etcd unless ETCD_SOURCE=debian, kind only for
#   `make kind-up` when no kind is on PATH, argo only for `make bench`: Argo Workflows'
#   workflow-controller, the benchmark's peer; alertmanager only for the RunbookTrigger e2e tests)
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v go >/dev/null || die "go is required (Go >= 1.24)"

# finish_build OUT NAME T0: stamp the build complete, move it into place, log its duration
# (hack/ci-e2e.sh's `tools` phase is the sum of these).
finish_build() {
  touch "$1.tmp/.complete"
  rm -rf "$1"; mv "$1.tmp" "$1"
  log "$2: built in $((SECONDS - $3))s"
}

build_kubernetes() {
  local out; out="$(tool_dir kubernetes "${KUBE_VERSION}")"
  [[ -f "${out}/.complete" ]] && { log "kubernetes ${KUBE_VERSION}: cached in ${out}"; return; }
  local v="${KUBE_VERSION#v}" major minor
  major="${v%%.*}"; minor="${v#*.}"; minor="${minor%%.*}"
  local ld=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X ${p}.gitVersion=${KUBE_VERSION} -X ${p}.gitMajor=${major} -X ${p}.gitMinor=${minor}"
    ld+=" -X ${p}.gitTreeState=clean -X ${p}.buildDate=1970-01-01T00:00:00Z"
  done
  log "kubernetes ${KUBE_VERSION}: building (cold, 2 cores: ~9 min quiet, ~27 min busy) into ${out}"
  local t0=${SECONDS}
  mkdir -p "${out}.tmp"
  (cd "${CLUSTER_HACK_DIR}/tools/kubernetes" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w ${ld}" \
      -o "${out}.tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
      k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl)
  finish_build "${out}" kubernetes "${t0}"
}

build_simple() {  # name version package binary
  local name="$1" version="$2" pkg="$3" bin="$4" out
  out="$(tool_dir "${name}" "${version}")"
  [[ -f "${out}/.complete" ]] && { log "${name} ${version}: cached in ${out}"; return; }
  log "${name} ${version}: building into ${out}"
  local t0=${SECONDS}
  mkdir -p "${out}.tmp"
  (cd "${CLUSTER_HACK_DIR}/tools/${name}" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w ${LDFLAGS_EXTRA:-}" \
      -o "${out}.tmp/${bin}" "${pkg}")
  finish_build "${out}" "${name}" "${t0}"
}

build_kwok() {
  LDFLAGS_EXTRA="-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION}" \
    build_simple kwok "${KWOK_VERSION}" sigs.k8s.io/kwok/cmd/kwok kwok
}
build_helm() {
  LDFLAGS_EXTRA="-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
    build_simple helm "${HELM_VERSION}" helm.sh/helm/v3/cmd/helm helm
}
build_kind() {
  build_simple kind "${KIND_VERSION}" sigs.k8s.io/kind kind
}
build_etcd() {
  build_simple etcd "${ETCD_VERSION}" go.etcd.io/etcd/server/v3 etcd
}
# tools/coredns/main.go: CoreDNS's coremain with only the plugins cluster-up's Corefile uses.
build_coredns() {
  LDFLAGS_EXTRA="-X github.com/coredns/coredns/coremain.GitCommit=${COREDNS_VERSION}" \
    build_simple coredns "${COREDNS_VERSION}" . coredns
}

build_argo() {
  LDFLAGS_EXTRA="-X github.com/argoproj/argo-workflows/v4.version=${ARGO_VERSION}" \
    build_simple argo "${ARGO_VERSION}" github.com/argoproj/argo-workflows/v4/cmd/workflow-controller \
    workflow-controller
}

# Alertmanager: a test-only peer of the RunbookTrigger e2e tests (tests/e2e/test_triggers.py).
# Its module ships the web UI's sources but not the built ui/app/dist that ui/web.go embeds (and
# go refuses overlays inside the module cache), so it builds from a copy of the module with a
# placeholder page there, through a `replace` in a copy of go.mod (the tests use only its API).
build_alertmanager() {
  local out; out="$(tool_dir alertmanager "${ALERTMANAGER_VERSION}")"
  [[ -f "${out}/.complete" ]] && { log "alertmanager ${ALERTMANAGER_VERSION}: cached in ${out}"; return; }
  log "alertmanager ${ALERTMANAGER_VERSION}: building into ${out}"
  local t0=${SECONDS} dir="${CLUSTER_HACK_DIR}/tools/alertmanager" mod src
  rm -rf "${out}.tmp"; mkdir -p "${out}.tmp"
  # `go list -m` names a module's directory only once it is in the module cache (a fresh
  # machine has none): download it first.
  (cd "${dir}" && go mod download github.com/prometheus/alertmanager) \
    || die "alertmanager: go mod download failed"
  mod="$(cd "${dir}" && go list -m -f '{{.Dir}}' github.com/prometheus/alertmanager)"
  [[ -d "${mod}" ]] || die "alertmanager: module directory not found"
  src="$(mktemp -d)"
  cp -r "${mod}/." "${src}/"; chmod -R u+w "${src}"
  for ui in elm mantine; do
    mkdir -p "${src}/ui/app/dist/${ui}"; cp "${dir}/ui-placeholder.html" "${src}/ui/app/dist/${ui}/index.html"
  done
  cp "${dir}/go.mod" "${out}.tmp/build.mod"; cp "${dir}/go.sum" "${out}.tmp/build.sum"
  echo "replace github.com/prometheus/alertmanager => ${src}" >> "${out}.tmp/build.mod"
  (cd "${dir}" && CGO_ENABLED=0 go build -trimpath -modfile "${out}.tmp/build.mod" \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${ALERTMANAGER_VERSION#v}" \
      -o "${out}.tmp/alertmanager" github.com/prometheus/alertmanager/cmd/alertmanager) \
    || { rm -rf "${src}"; die "alertmanager: build failed"; }
  rm -rf "${src}" "${out}.tmp/build.mod" "${out}.tmp/build.sum"
  finish_build "${out}" alertmanager "${t0}"
}

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(kubernetes kwok helm coredns $([[ "${ETCD_SOURCE:-go}" == go ]] && echo etcd))
for t in "${targets[@]}"; do
  case "$t" in
    kubernetes|kwok|helm|coredns|etcd|kind|argo|alertmanager) "build_${t}" ;;
    *) die "unknown tool: $t" ;;
  esac
done
