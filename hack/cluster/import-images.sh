#!/usr/bin/env bash
# Imports the images saved by hack/image/build.sh into the local cluster's containerd
# (namespace k8s.io), so pods use them with imagePullPolicy IfNotPresent/Never.
# Skips a tarball whose image id was already imported into this containerd.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SOCK="${CLUSTER_DIR}/containerd/containerd.sock"
IMG_DIR="${RUNBOOK_CACHE}/image"
for name in pause app; do
  tar="${IMG_DIR}/${name}.tar"
  [[ -s "${tar}" ]] || { log "no ${tar} (run: make image)"; continue; }
  stamp="${CLUSTER_DIR}/containerd/imported-${name}.id"
  if [[ -f "${stamp}" && "$(cat "${stamp}")" == "$(cat "${tar}.id" 2>/dev/null)" ]]; then
    continue
  fi
  log "ctr -n k8s.io images import ${tar}"
  ctr --address "${SOCK}" -n k8s.io images import "${tar}" >/dev/null
  cp "${tar}.id" "${stamp}" 2>/dev/null || true
done
