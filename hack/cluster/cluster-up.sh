#!/usr/bin/env bash
# Starts a single-node Kubernetes on this machine from the binaries that build-tools.sh
# builds, and Debian's etcd/containerd/runc/CNI plugins. Everything it creates lives in
# $RUNBOOK_CACHE/cluster (certs, pids, logs, kubeconfigs, data); cluster-down.sh stops
# exactly the processes recorded there and removes it.
#
#   hack/cluster/cluster-up.sh            etcd, apiserver, controller-manager, scheduler,
#                                         containerd + kubelet (CNI bridge) + kube-proxy
#                                         (iptables) + CoreDNS (cluster DNS), and kwok with
#                                         $KWOK_NODES fake nodes
#   KWOK=1 hack/cluster/cluster-up.sh     control plane + kwok fake nodes only
#
# Idempotent: with a healthy cluster of the same mode it returns at once. The last line
# it prints is `export KUBECONFIG=<path>`. `cluster-up.sh --status` only checks health.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ "$(id -u)" == 0 ]] || die "must run as root (kubelet, containerd, iptables)"
MODE=full
[[ "${KWOK:-0}" != 0 && -n "${KWOK:-}" ]] && MODE=kwok
# go (default): etcd ${ETCD_VERSION} built from its Go module (hack/cluster/tools/etcd);
# debian: /usr/bin/etcd from etcd-server (3.4.23: no RequestWatchProgress, so client-go
# >= 0.33 informers (kwok, Argo) see changes only at their relists, 10-40 s late).
ETCD_SOURCE="${ETCD_SOURCE:-go}"

# ---------------------------------------------------------------- health / idempotency
api_ready() { kctl get --raw /readyz >/dev/null 2>&1; }
node_ready() {
  [[ "$(kctl get node "${NODE_NAME}" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}
# CoreDNS's `ready` plugin answers 200 once its kubernetes plugin has synced with the API.
dns_ready() { curl -fsS "http://127.0.0.1:${DNS_READY_PORT}/ready" >/dev/null 2>&1; }
components() {
  local c=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
  [[ "$1" == full ]] && c+=(containerd kubelet kube-proxy coredns)
  echo "${c[@]}"
}
healthy() {
  [[ -f "${CLUSTER_DIR}/mode" && "$(cat "${CLUSTER_DIR}/mode")" == "${MODE}" ]] || return 1
  local c
  for c in $(components "${MODE}"); do pid_alive "$c" || return 1; done
  api_ready || return 1
  [[ "${MODE}" == kwok ]] || { node_ready && dns_ready; }
}

if [[ "${1:-}" == --status ]]; then
  healthy && { log "cluster (${MODE}) is healthy"; exit 0; }
  log "no healthy cluster (${MODE}) in ${CLUSTER_DIR}"; exit 1
fi
if healthy; then
  log "cluster (${MODE}) already running"
  echo "export KUBECONFIG=${ADMIN_KUBECONFIG}"
  exit 0
fi
if [[ -d "${CLUSTER_DIR}" ]]; then
  # Partly running, another mode, or left over from a machine that was stopped.
  log "cleaning up a previous cluster in ${CLUSTER_DIR} first"
  "${CLUSTER_HACK_DIR}/cluster-down.sh"
fi

# ---------------------------------------------------------------- prerequisites
"${CLUSTER_HACK_DIR}/build-tools.sh" kubernetes kwok $([[ "${MODE}" == full ]] && echo coredns) \
  $([[ "${ETCD_SOURCE}" == go ]] && echo etcd)
if [[ "${ETCD_SOURCE}" == go ]]; then
  ETCD_BIN="$(tool_dir etcd "${ETCD_VERSION}")/etcd"
else
  ETCD_BIN="$(command -v etcd)" || die "etcd not installed (apt-get install etcd-server)"
fi
need=(openssl iptables ip)
[[ "${MODE}" == full ]] && need+=(containerd ctr runc conntrack)
for b in "${need[@]}"; do command -v "$b" >/dev/null || die "missing $b (hack/ci-e2e.sh installs the Debian packages)"; done
CNI_BIN_DIR="${CNI_BIN_DIR:-/usr/lib/cni}"
if [[ "${MODE}" == full ]]; then
  for p in bridge host-local loopback portmap; do
    [[ -x "${CNI_BIN_DIR}/$p" ]] || die "missing CNI plugin ${CNI_BIN_DIR}/$p (apt-get install containernetworking-plugins)"
  done
fi

rm -rf "${CLUSTER_DIR}"
mkdir -p "${CLUSTER_DIR}" "${PKI}" "${PIDS}" "${LOGS}"
echo "${MODE}" > "${CLUSTER_DIR}/mode"
log "state dir ${CLUSTER_DIR} (mode ${MODE})"

# start NAME CMD...: run CMD detached (own session, no terminal), pid in pids/NAME.pid.
start() {
  local name="$1"; shift
  log "starting ${name}"
  setsid "$@" >"${LOGS}/${name}.log" 2>&1 </dev/null &
  record_pid "${name}" $!
}
fail() { log "ERROR: $1; last lines of ${LOGS}/$2.log:"; tail -25 "${LOGS}/$2.log" >&2 || true; exit 1; }

# ---------------------------------------------------------------- certificates
# One CA signs everything (serving certs, client certs, kubelet); a separate RSA key pair
# signs service-account tokens.
mkcert() {  # name subject [SANs]: client+server cert signed by the CA
  local name="$1" subj="$2" sans="${3:-}" ext=()
  [[ -n "$sans" ]] && ext=(-addext "subjectAltName=${sans}")
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "${PKI}/${name}.key" -out "${PKI}/${name}.csr" -subj "${subj}" "${ext[@]}" 2>/dev/null
  openssl x509 -req -in "${PKI}/${name}.csr" -CA "${PKI}/ca.crt" -CAkey "${PKI}/ca.key" \
    -CAcreateserial -days 365 -copy_extensions copy -out "${PKI}/${name}.crt" 2>/dev/null
  rm -f "${PKI}/${name}.csr"
}
log "generating certificates"
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
  -keyout "${PKI}/ca.key" -out "${PKI}/ca.crt" -subj "/CN=runbook-operator-local-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
mkcert apiserver "/CN=kube-apiserver" \
  "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:${NODE_IP},IP:${KUBERNETES_SVC_IP}"
mkcert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
mkcert admin "/O=system:masters/CN=kubernetes-admin"
mkcert controller-manager "/CN=system:kube-controller-manager"
mkcert scheduler "/CN=system:kube-scheduler"
mkcert kube-proxy "/CN=system:kube-proxy"
mkcert coredns "/CN=system:coredns"
# Identities for the controllers `make bench` compares (benchmarks/cluster.py): the audit log
# below records exactly their requests, so API calls per step are counted by the apiserver.
mkcert bench-operator "/O=system:masters/CN=bench:runbook-operator"
mkcert bench-argo "/O=system:masters/CN=bench:argo-workflow-controller"
mkcert kubelet-client "/O=system:nodes/CN=system:node:${NODE_NAME}"
mkcert kubelet "/CN=${NODE_NAME}" "DNS:${NODE_NAME},DNS:localhost,IP:${NODE_IP},IP:127.0.0.1"
openssl genrsa -out "${PKI}/sa.key" 2048 2>/dev/null
openssl rsa -in "${PKI}/sa.key" -pubout -out "${PKI}/sa.pub" 2>/dev/null
chmod 600 "${PKI}"/*.key

kubeconfig() {  # file cert-name
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: runbook-local
  cluster:
    server: https://127.0.0.1:${API_PORT}
    certificate-authority-data: $(base64 -w0 "${PKI}/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "${PKI}/$2.crt")
    client-key-data: $(base64 -w0 "${PKI}/$2.key")
contexts:
- name: runbook-local
  context: {cluster: runbook-local, user: $2}
current-context: runbook-local
EOF
  chmod 600 "$1"
}
for c in admin controller-manager scheduler kube-proxy kubelet-client coredns bench-operator bench-argo; do
  kubeconfig "${CLUSTER_DIR}/${c}.kubeconfig" "$c"
done

# ---------------------------------------------------------------- node address
# The CNI bridge is created here (the bridge plugin reuses it) so that NODE_IP exists
# before the apiserver advertises it.
if ! ip link show "${CNI_BRIDGE}" >/dev/null 2>&1; then
  ip link add "${CNI_BRIDGE}" type bridge
fi
ip addr replace "${NODE_IP}/${POD_CIDR#*/}" dev "${CNI_BRIDGE}"
ip link set "${CNI_BRIDGE}" up
touch "${CLUSTER_DIR}/created-bridge"

# ---------------------------------------------------------------- etcd
start etcd "${ETCD_BIN}" --name runbook --data-dir "${CLUSTER_DIR}/etcd" \
  --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORT}" \
  --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORT}" \
  --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
  --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
  --initial-cluster "runbook=http://127.0.0.1:${ETCD_PEER_PORT}" \
  --quota-backend-bytes 2147483648 --snapshot-count 10000 \
  $([[ "$("${ETCD_BIN}" --help 2>&1)" == *--unsafe-no-fsync* ]] && echo --unsafe-no-fsync)
wait_until etcd 30 curl -fsS "http://127.0.0.1:${ETCD_CLIENT_PORT}/health" || fail "etcd did not start" etcd

# ---------------------------------------------------------------- control plane
# Audit: only the two benchmark identities, at Metadata level (verb, resource, user agent,
# microsecond timestamps); everything else is not recorded, so tests pay nothing for it.
cat >"${CLUSTER_DIR}/audit-policy.yaml" <<'EOF2'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
- level: Metadata
  users: ["bench:runbook-operator", "bench:argo-workflow-controller"]
- level: None
EOF2
start kube-apiserver "$(kube_bin kube-apiserver)" \
  --etcd-servers "http://127.0.0.1:${ETCD_CLIENT_PORT}" \
  --bind-address 0.0.0.0 --secure-port "${API_PORT}" --advertise-address "${NODE_IP}" \
  --tls-cert-file "${PKI}/apiserver.crt" --tls-private-key-file "${PKI}/apiserver.key" \
  --client-ca-file "${PKI}/ca.crt" \
  --kubelet-client-certificate "${PKI}/apiserver-kubelet-client.crt" \
  --kubelet-client-key "${PKI}/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "${PKI}/ca.crt" \
  --kubelet-preferred-address-types InternalIP \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "${PKI}/sa.pub" \
  --service-account-signing-key-file "${PKI}/sa.key" \
  --service-cluster-ip-range "${SERVICE_CIDR}" \
  --authorization-mode Node,RBAC \
  --enable-admission-plugins NodeRestriction \
  --feature-gates MutatingAdmissionPolicy=true \
  --runtime-config admissionregistration.k8s.io/v1beta1=true \
  --allow-privileged=true --profiling=false --event-ttl 1h --v 1 \
  --audit-policy-file "${CLUSTER_DIR}/audit-policy.yaml" --audit-log-path "${LOGS}/audit.log" \
  --audit-log-maxsize 500 --audit-log-maxbackup 1
wait_until "kube-apiserver /readyz" 90 api_ready || fail "kube-apiserver not ready" kube-apiserver

start kube-controller-manager "$(kube_bin kube-controller-manager)" \
  --kubeconfig "${CLUSTER_DIR}/controller-manager.kubeconfig" \
  --authentication-kubeconfig "${CLUSTER_DIR}/controller-manager.kubeconfig" \
  --authorization-kubeconfig "${CLUSTER_DIR}/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false \
  --controllers '*' --use-service-account-credentials \
  --service-account-private-key-file "${PKI}/sa.key" --root-ca-file "${PKI}/ca.crt" \
  --cluster-signing-cert-file "${PKI}/ca.crt" --cluster-signing-key-file "${PKI}/ca.key" \
  --service-cluster-ip-range "${SERVICE_CIDR}" --allocate-node-cidrs=false \
  --concurrent-job-syncs 10 --kube-api-qps 100 --kube-api-burst 200 --v 1
start kube-scheduler "$(kube_bin kube-scheduler)" \
  --kubeconfig "${CLUSTER_DIR}/scheduler.kubeconfig" \
  --authentication-kubeconfig "${CLUSTER_DIR}/scheduler.kubeconfig" \
  --authorization-kubeconfig "${CLUSTER_DIR}/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --kube-api-qps 100 --kube-api-burst 200 --v 1

# ---------------------------------------------------------------- cluster DNS
# CoreDNS runs on this machine like the other components and listens on NODE_IP:53 only
# (never on the machine's outside interfaces). Pods get nameserver DNS_SVC_IP (kubelet
# clusterDNS): the selector-less `kube-dns` Service, whose EndpointSlice is written here and
# points at NODE_IP, so kube-proxy DNATs pod queries to local delivery, like the
# `kubernetes` Service. Cluster names come from the API (client cert of the user
# system:coredns, bound to a list/watch-only ClusterRole); all other names are forwarded to
# the host's resolvers. See docs/cluster.md.
dns_objects() {
  cat <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}]
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: ${DNS_SVC_IP}
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels:
    k8s-app: kube-dns
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: cluster-up.runbook-operator.dev
addressType: IPv4
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
endpoints:
- {addresses: ["${NODE_IP}"], conditions: {ready: true}, nodeName: "${NODE_NAME}"}
EOF
}
corefile() {
  cat <<EOF
.:53 {
    bind ${NODE_IP}
    errors
    log
    health 127.0.0.1:${DNS_HEALTH_PORT}
    ready 127.0.0.1:${DNS_READY_PORT}
    kubernetes ${CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {
        kubeconfig ${CLUSTER_DIR}/coredns.kubeconfig runbook-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
}
EOF
}
start_coredns() {
  mkdir -p "${CLUSTER_DIR}/coredns"
  dns_objects >"${CLUSTER_DIR}/coredns/objects.yaml"
  corefile >"${CLUSTER_DIR}/coredns/Corefile"
  # kube-system is created by the apiserver shortly after it turns ready.
  wait_until "the kube-dns Service" 30 kctl apply -f "${CLUSTER_DIR}/coredns/objects.yaml" \
    || fail "could not create the kube-dns Service" kube-apiserver
  start coredns "$(coredns_bin)" -conf "${CLUSTER_DIR}/coredns/Corefile"
}

# ---------------------------------------------------------------- node: containerd, kubelet, kube-proxy
if [[ "${MODE}" == full ]]; then
  PAUSE_IMAGE="${PAUSE_IMAGE:-localhost/runbook-pause:1.0}"
  mkdir -p "${CLUSTER_DIR}/containerd" "${CLUSTER_DIR}/cni/net.d" "${CLUSTER_DIR}/kubelet" "${CLUSTER_DIR}/kube-proxy"
  cat >"${CLUSTER_DIR}/containerd/config.toml" <<EOF
version = 2
root = "${CLUSTER_DIR}/containerd/root"
state = "${CLUSTER_DIR}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "${CONTAINERD_SOCK}"

[plugins."io.containerd.grpc.v1.cri"]
  # Locally built (hack/image/build.sh); nothing is ever pulled.
  sandbox_image = "${PAUSE_IMAGE}"
  enable_selinux = false
  # This VM withholds CAP_SYS_RESOURCE even from root, so runc cannot lower a process's
  # oom_score_adj (the sandbox's -998 fails with "failed to update /proc/self/oom_score_adj:
  # Permission denied"). Clamp to containerd's own value instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${CNI_BIN_DIR}"
    conf_dir = "${CLUSTER_DIR}/cni/net.d"
EOF
  cat >"${CLUSTER_DIR}/cni/net.d/10-runbook.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "runbook",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "${CNI_BRIDGE}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "${CLUSTER_DIR}/cni/ipam",
        "ranges": [[{"subnet": "${POD_CIDR}", "gateway": "${NODE_IP}"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  # Nothing from a pod is forwarded off this machine, whatever net.ipv4.ip_forward says
  # (dockerd, for one, turns it on): Service traffic to the apiserver is DNATed to the
  # node's own address and never forwarded; pod-to-pod traffic stays inside POD_CIDR.
  iptables -C "${EGRESS_RULE[@]}" 2>/dev/null || iptables -I "${EGRESS_RULE[@]}"
  # The bridge plugin (isGateway) switches ip_forward on; cluster-down restores this value.
  cat /proc/sys/net/ipv4/ip_forward >"${CLUSTER_DIR}/ip_forward.orig"
  # Service traffic from pods crosses the bridge: let iptables (kube-proxy) see it.
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || log "warning: cannot set bridge-nf-call-iptables"

  start containerd containerd --config "${CLUSTER_DIR}/containerd/config.toml"
  wait_until containerd 30 ctr --address "${CONTAINERD_SOCK}" version || fail "containerd did not start" containerd
  "${CLUSTER_HACK_DIR}/import-images.sh"
  images="$(ctr --address "${CONTAINERD_SOCK}" -n k8s.io images ls -q)"
  grep -qxF "${PAUSE_IMAGE}" <<<"${images}" \
    || log "WARNING: ${PAUSE_IMAGE} is not in containerd; run 'make image' (pods cannot start without it)"

  cat >"${CLUSTER_DIR}/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${PKI}/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: ${PKI}/kubelet.crt
tlsPrivateKeyFile: ${PKI}/kubelet.key
containerRuntimeEndpoint: unix://${CONTAINERD_SOCK}
imageServiceEndpoint: unix://${CONTAINERD_SOCK}
# This VM mounts cgroup v1 and has no systemd: cgroupfs driver, and failCgroupV1 stays
# false (its default up to Kubernetes 1.34; see docs/cluster.md).
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: ${CLUSTER_DOMAIN}
clusterDNS: ["${DNS_SVC_IP}"]
podLogsDir: ${CLUSTER_DIR}/pod-logs
resolvConf: /etc/resolv.conf
podCIDR: ${POD_CIDR}
maxPods: 110
serializeImagePulls: false
# Images cannot be pulled again here, so the kubelet must never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "2%", nodefs.inodesFree: "2%", imagefs.available: "2%"}
evictionPressureTransitionPeriod: 30s
EOF
  start kubelet "$(kube_bin kubelet)" \
    --config "${CLUSTER_DIR}/kubelet/config.yaml" \
    --kubeconfig "${CLUSTER_DIR}/kubelet-client.kubeconfig" \
    --hostname-override "${NODE_NAME}" --node-ip "${NODE_IP}" \
    --root-dir "${CLUSTER_DIR}/kubelet" --cert-dir "${PKI}" --v 1

  cat >"${CLUSTER_DIR}/kube-proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: ${CLUSTER_DIR}/kube-proxy.kubeconfig}
hostnameOverride: ${NODE_NAME}
mode: iptables
clusterCIDR: ${POD_CIDR}
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["${NODE_IP}/32"]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start kube-proxy "$(kube_bin kube-proxy)" --config "${CLUSTER_DIR}/kube-proxy/config.yaml" --v 1
  start_coredns
  wait_until "node ${NODE_NAME} Ready" 120 node_ready || fail "node did not become Ready" kubelet
  # Pods reach the API through the `kubernetes` Service only once kube-proxy has synced.
  svc_rule() { [[ "$(iptables -t nat -S KUBE-SERVICES 2>/dev/null)" == *"${KUBERNETES_SVC_IP}/32"* ]]; }
  wait_until "kube-proxy rules for ${KUBERNETES_SVC_IP}" 60 svc_rule || fail "kube-proxy did not sync" kube-proxy
  wait_until "CoreDNS ready" 60 dns_ready || fail "CoreDNS not ready" coredns
  dns_rule() { [[ "$(iptables -t nat -S KUBE-SERVICES 2>/dev/null)" == *"${DNS_SVC_IP}/32"* ]]; }
  wait_until "kube-proxy rules for ${DNS_SVC_IP}" 60 dns_rule || fail "kube-proxy did not sync kube-dns" kube-proxy
fi

# ---------------------------------------------------------------- kwok fake nodes
# Fake nodes (kwok-nodes.sh) carry the label type=kwok and a NoSchedule taint, so only pods that
# select and tolerate them land there; everything else runs on the real kubelet.
start kwok "$(kwok_bin)" --kubeconfig "${ADMIN_KUBECONFIG}" \
  --config "${CLUSTER_HACK_DIR}/kwok/stages.yaml" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
  --node-lease-duration-seconds 40 --cidr 10.245.0.0/16 --node-ip 10.245.255.254 \
  --server-address 127.0.0.1:10247
"${CLUSTER_HACK_DIR}/kwok-nodes.sh" || fail "kwok nodes not Ready" kwok

# The default ServiceAccount must exist before pods can be created in `default`.
wait_until "default ServiceAccount" 60 kctl get serviceaccount default -n default \
  || fail "controller-manager did not create the default ServiceAccount" kube-controller-manager

log "cluster (${MODE}) is up; logs in ${LOGS}"
echo "export KUBECONFIG=${ADMIN_KUBECONFIG}"
