#!/usr/bin/env bash
# Creates $KWOK_NODES fake nodes (kwok-node-0..N-1) for the kwok controller and waits until
# they are Ready. Fake nodes carry the label type=kwok and the taint
# kwok.x-k8s.io/node=fake:NoSchedule, so only pods that select and tolerate them land there.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for i in $(seq 0 $((KWOK_NODES - 1))); do
  kctl apply -f - >/dev/null <<EOF2
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-${i}
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {type: kwok, kubernetes.io/hostname: kwok-node-${i}, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
spec:
  taints: [{key: kwok.x-k8s.io/node, value: fake, effect: NoSchedule}]
EOF2
done
kwok_ready() {
  [[ "$(kctl get nodes -l type=kwok -o 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
        | grep -c True)" -ge "${KWOK_NODES}" ]]
}
wait_until "${KWOK_NODES} kwok nodes Ready" 60 kwok_ready || die "kwok nodes not Ready"
log "${KWOK_NODES} kwok nodes Ready"
