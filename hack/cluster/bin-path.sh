#!/usr/bin/env bash
# Prints the path of a binary built by build-tools.sh, building it first if needed:
#   hack/cluster/bin-path.sh kubectl|kube-apiserver|...|helm|kwok|coredns|etcd|kind
# e.g. HELM="$(hack/cluster/bin-path.sh helm)"; "$HELM" lint charts/...
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

name="${1:?usage: $0 BINARY}"
case "$name" in
  kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl)
    tool=kubernetes; path="$(kube_bin "$name")" ;;
  helm) tool=helm; path="$(helm_bin)" ;;
  kwok) tool=kwok; path="$(kwok_bin)" ;;
  coredns) tool=coredns; path="$(coredns_bin)" ;;
  etcd) tool=etcd; path="$(tool_dir etcd "${ETCD_VERSION}")/etcd" ;;
  kind) tool=kind; path="$(tool_dir kind "${KIND_VERSION}")/kind" ;;
  *) die "unknown binary: $name" ;;
esac
[[ -x "$path" ]] || "${CLUSTER_HACK_DIR}/build-tools.sh" "$tool" >&2
echo "$path"
