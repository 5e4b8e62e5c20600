#!/usr/bin/env bash
# Builds the project's container image and the local pause image without any container
# registry, saves both as tarballs under $RUNBOOK_CACHE/image and, when the local
# cluster's containerd is running, imports them into its k8s.io namespace.
#
#   1. base:  debootstrap (Debian bookworm minbase + python3, python3-venv) -> cached
#             tarball -> `docker import` as runbook-base:bookworm-<hash>
#   2. pause: static Go binary in a FROM-scratch image, localhost/runbook-pause:1.0
#   3. app:   Dockerfile FROM the base, project + PyPI dependencies, runbook-operator:dev
#
# Each step is skipped when its inputs are unchanged. dockerd is started here when no
# Docker daemon answers, and stopped again on exit (KEEP_DOCKERD=1 keeps it).
. "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"

IMAGE="${IMAGE:-runbook-operator:dev}"
PAUSE_IMAGE="${PAUSE_IMAGE:-localhost/runbook-pause:1.0}"
BASE_PACKAGES="python3,python3-venv,ca-certificates"
IMG_DIR="${RUNBOOK_CACHE}/image"
DOCKER_DIR="${RUNBOOK_CACHE}/docker"
HERE="${REPO_ROOT}/hack/image"
mkdir -p "${IMG_DIR}" "${DOCKER_DIR}"

# ---------------------------------------------------------------- docker daemon
STARTED_DOCKERD=""
stop_dockerd() {
  [[ -n "${STARTED_DOCKERD}" && -f "${DOCKER_DIR}/dockerd.pid" ]] || return 0
  local pid; pid="$(cat "${DOCKER_DIR}/dockerd.pid")"
  log "stopping dockerd (pid ${pid})"
  kill "${pid}" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.5; done
  kill -9 "${pid}" 2>/dev/null || true
  rm -f "${DOCKER_DIR}/dockerd.pid"
}
ensure_docker() {
  command -v docker >/dev/null || die "docker not installed (apt-get install docker.io)"
  if docker info >/dev/null 2>&1; then return; fi
  log "starting dockerd (log: ${DOCKER_DIR}/dockerd.log)"
  # No iptables rules and no default bridge: builds use --network host, and Docker's
  # FORWARD policy must not interfere with the cluster's pod network.
  setsid dockerd --iptables=false --ip-masq=false --ip-forward=false --bridge=none \
    --pidfile "${DOCKER_DIR}/dockerd.pid" >"${DOCKER_DIR}/dockerd.log" 2>&1 < /dev/null &
  STARTED_DOCKERD=1
  [[ -n "${KEEP_DOCKERD:-}" ]] || trap stop_dockerd EXIT
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return; sleep 0.5; done
  tail -20 "${DOCKER_DIR}/dockerd.log" >&2
  die "dockerd did not come up"
}

# ---------------------------------------------------------------- base rootfs
debian_mirror() {
  # The mirror apt on this machine already uses for bookworm (override: DEBIAN_MIRROR).
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "${DEBIAN_MIRROR}"; return; fi
  local m=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    m="$(awk '/^URIs:/{u=$2} /^Suites:/ && / bookworm( |$)/{print u; exit}' /etc/apt/sources.list.d/*.sources)"
  fi
  if [[ -z "$m" && -f /etc/apt/sources.list ]]; then
    m="$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list)"
  fi
  [[ -n "$m" ]] || die "no bookworm mirror found in apt sources; set DEBIAN_MIRROR"
  echo "$m"
}

BASE_KEY="$(echo "bookworm minbase ${BASE_PACKAGES}" | sha256sum | cut -c1-12)"
BASE_TAR="${IMG_DIR}/base-bookworm-${BASE_KEY}.tar"
BASE_IMAGE="runbook-base:bookworm-${BASE_KEY}"

build_base_tar() {
  [[ -s "${BASE_TAR}" ]] && { log "base rootfs: cached ${BASE_TAR}"; return; }
  command -v debootstrap >/dev/null || die "debootstrap not installed"
  local root="${IMG_DIR}/rootfs.tmp"
  rm -rf "${root}"
  log "base rootfs: debootstrap bookworm (${BASE_PACKAGES}) ..."
  debootstrap --variant=minbase --include="${BASE_PACKAGES}" bookworm "${root}" "$(debian_mirror)" \
    >"${IMG_DIR}/debootstrap.log" 2>&1 || { tail -30 "${IMG_DIR}/debootstrap.log" >&2; die "debootstrap failed"; }
  # Slim it: no package lists or caches, no docs.
  rm -rf "${root}"/var/cache/apt/archives/*.deb "${root}"/var/lib/apt/lists/* \
         "${root}"/usr/share/doc/* "${root}"/usr/share/man/* "${root}"/usr/share/info/*
  tar --numeric-owner -C "${root}" -cf "${BASE_TAR}.tmp" .
  mv "${BASE_TAR}.tmp" "${BASE_TAR}"
  rm -rf "${root}"
  log "base rootfs: $(du -h "${BASE_TAR}" | cut -f1) ${BASE_TAR}"
}

import_base() {
  docker image inspect "${BASE_IMAGE}" >/dev/null 2>&1 && return
  log "base image: docker import -> ${BASE_IMAGE}"
  docker import --change 'CMD ["/bin/bash"]' "${BASE_TAR}" "${BASE_IMAGE}" >/dev/null
}

# ---------------------------------------------------------------- helpers
label_of() { docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }

save_image() {  # image tarname
  local tar="${IMG_DIR}/$2.tar" id
  id="$(docker image inspect -f '{{.Id}}' "$1")"
  if [[ -s "${tar}" && "$(cat "${tar}.id" 2>/dev/null)" == "${id}" ]]; then return; fi
  log "docker save $1 -> ${tar}"
  docker save "$1" -o "${tar}.tmp" && mv "${tar}.tmp" "${tar}" && echo "${id}" > "${tar}.id"
}

# ---------------------------------------------------------------- pause image
build_pause() {
  local key ctx="${IMG_DIR}/pause-ctx"
  key="$( (cd "${HERE}/pause" && cat main.go go.mod Dockerfile; go env GOVERSION) | sha256sum | cut -c1-12)"
  if [[ "$(label_of "${PAUSE_IMAGE}" runbook.inputs)" == "${key}" ]]; then
    log "pause image: ${PAUSE_IMAGE} up to date"
  else
    log "pause image: building ${PAUSE_IMAGE}"
    rm -rf "${ctx}"; mkdir -p "${ctx}"
    (cd "${HERE}/pause" && CGO_ENABLED=0 GOFLAGS= go build -trimpath -ldflags "-s -w" -o "${ctx}/pause" .)
    cp "${HERE}/pause/Dockerfile" "${ctx}/"
    docker build -q --network host --label "runbook.inputs=${key}" -t "${PAUSE_IMAGE}" "${ctx}" >/dev/null
  fi
  save_image "${PAUSE_IMAGE}" pause
}

# ---------------------------------------------------------------- app image
write_requirements() {  # pyproject -> requirements.txt (runtime deps + build backend)
  python3 - "$1" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    data = tomllib.load(f)
deps = list(data["project"].get("dependencies", []))
deps += data.get("build-system", {}).get("requires", [])
print("\n".join(deps))
PY
}

build_app() {
  local ctx="${IMG_DIR}/app-ctx" key
  rm -rf "${ctx}"; mkdir -p "${ctx}/src"
  # Only what the package needs; no caches, no venv, no tests.
  (cd "${REPO_ROOT}" && tar --exclude='__pycache__' --exclude='*.pyc' --exclude='*.egg-info' \
      -cf - pyproject.toml operator executors $(ls README.md LICENSE 2>/dev/null || true)) \
    | tar -C "${ctx}/src" -xf -
  # pyproject names README.md as the readme; give setuptools one if the repo has none yet.
  [[ -f "${ctx}/src/README.md" ]] || echo "runbook-operator" > "${ctx}/src/README.md"
  write_requirements "${ctx}/src/pyproject.toml" > "${ctx}/requirements.txt"
  cp "${HERE}/Dockerfile" "${ctx}/Dockerfile"
  key="$( (cd "${ctx}" && find . -type f -print0 | sort -z | xargs -0 sha256sum; echo "${BASE_IMAGE}") \
          | sha256sum | cut -c1-12)"
  cp /etc/ssl/certs/ca-certificates.crt "${ctx}/build-ca.crt"
  if [[ "$(label_of "${IMAGE}" runbook.inputs)" == "${key}" ]]; then
    log "app image: ${IMAGE} up to date (inputs ${key})"
  else
    log "app image: building ${IMAGE} (inputs ${key})"
    local args=(--network host --label "runbook.inputs=${key}" --build-arg "BASE=${BASE_IMAGE}" -t "${IMAGE}")
    [[ -n "${PIP_INDEX_URL:-}" ]] && args+=(--build-arg "PIP_INDEX_URL=${PIP_INDEX_URL}")
    docker build "${args[@]}" "${ctx}" >"${IMG_DIR}/app-build.log" 2>&1 \
      || { tail -40 "${IMG_DIR}/app-build.log" >&2; die "docker build failed"; }
  fi
  save_image "${IMAGE}" app
}

# ---------------------------------------------------------------- containerd import
import_into_containerd() {
  local sock="${CLUSTER_DIR}/containerd/containerd.sock"
  if [[ ! -S "${sock}" ]] || ! ctr --address "${sock}" version >/dev/null 2>&1; then
    log "cluster containerd not running; cluster-up imports ${IMG_DIR}/{pause,app}.tar"
    return
  fi
  "${CLUSTER_HACK_DIR}/import-images.sh"
}

build_base_tar
ensure_docker
import_base
build_pause
build_app
import_into_containerd
log "images ready: ${IMAGE} ${PAUSE_IMAGE}"
