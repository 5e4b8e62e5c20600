#!/usr/bin/env bash
# Prints the path of a binary built by build-tools.sh, building it first if needed:
#   hack/cluster/bin-path.sh kubectl|kube-apiserver|...|helm|kwok|coredns|etcd|kind|workflow-controller|alertmanager
#   hack/cluster/bin-path.sh argo-crds   (the directory of Argo Workflows' CRDs, for make bench)
# e.g. HELM="$(hack/cluster/bin-path.sh helm)"; "$HELM" lint charts/...
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

name="${1:?usage: $0 BINARY}"
if [[ "$name" == argo-crds ]]; then  # not a binary: the CRDs of the pinned Argo module
  dir="$(cd "${CLUSTER_HACK_DIR}/tools/argo" && go list -m -f '{{.Dir}}' github.com/argoproj/argo-workflows/v4)"
  echo "${dir}/manifests/base/crds/minimal"; exit 0
fi
case "$name" in
  kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl)
    tool=kubernetes; path="$(kube_bin "$name")" ;;
  helm) tool=helm; path="$(helm_bin)" ;;
  kwok) tool=kwok; path="$(kwok_bin)" ;;
  coredns) tool=coredns; path="$(coredns_bin)" ;;
  etcd) tool=etcd; path="$(tool_dir etcd "${ETCD_VERSION}")/etcd" ;;
  kind) tool=kind; path="$(tool_dir kind "${KIND_VERSION}")/kind" ;;
  workflow-controller) tool=argo; path="$(tool_dir argo "${ARGO_VERSION}")/workflow-controller" ;;
  alertmanager) tool=alertmanager; path="$(tool_dir alertmanager "${ALERTMANAGER_VERSION}")/alertmanager" ;;
  *) die "unknown binary: $name" ;;
esac
[[ -x "$path" ]] || "${CLUSTER_HACK_DIR}/build-tools.sh" "$tool" >&2
echo "$path"
