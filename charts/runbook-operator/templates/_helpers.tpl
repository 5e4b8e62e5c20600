{{/* Names, labels and the operator's RBAC rules, shared by the templates. */}}

{{- define "runbook-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "runbook-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "runbook-operator.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "runbook-operator.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "runbook-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runbook-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "runbook-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "runbook-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: runbook-operator
{{- end }}

{{- define "runbook-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "runbook-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "runbook-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (toString .Values.image.tag) }}
{{- end }}

{{- define "runbook-operator.signingSecretName" -}}
{{- default (printf "%s-signing-key" (include "runbook-operator.fullname" .)) .Values.signing.existingSecret }}
{{- end }}

{{- define "runbook-operator.clusterwide" -}}
{{- if not .Values.watchNamespaces }}true{{- end }}
{{- end }}

{{/* The operator creates the executor SA/Role/RoleBinding itself only in cluster-wide mode. */}}
{{- define "runbook-operator.operatorManagesExecutorRbac" -}}
{{- if and .Values.executor.manageRbac (not .Values.watchNamespaces) }}true{{- end }}
{{- end }}

{{/*
What the operator does in a namespace it watches, and only that (docs/operator.md, "RBAC"; every
API call is in runbook_operator/kube.py's callers, kopf's own calls are noted):
- Runbooks: get (pinning), list/watch (kopf), patch (kopf's progress annotations); /status:
  patch (the Valid condition, kube.write_status).
- RunbookExecutions: get, list/watch (kopf), patch (kopf's finalizer and annotations); /status:
  patch (kube.write_status; never read or replaced through the subresource).
- Jobs: one per attempt (create), adopt on AlreadyExists (get), list/watch, cancel (delete).
- Pods: list/watch, to learn why an attempt failed (never read one by one, created or deleted).
- ConfigMaps: get, list (ledger segments by label), create, update (ledger segments and the
  public key are replaced with their resourceVersion); never patched.
- Events: create (kopf's and the operator's own), get when the name already exists.
- ServiceAccounts/Roles/RoleBindings: get and create the executor identity on first use, only
  when the operator manages it; it holds "create configmaps" itself, so the Role is no
  escalation.
*/}}
{{- define "runbook-operator.rules" -}}
- apiGroups: ["runbook-operator.dev"]
  resources: ["runbooks", "runbookexecutions"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["runbook-operator.dev"]
  resources: ["runbooks/status", "runbookexecutions/status", "runbookapprovals/status"]
  verbs: ["patch"]
# RunbookTriggers: the operator sets their conditions, lists their executions and deletes the
# finished ones beyond historyLimit (docs/triggers.md).
- apiGroups: ["runbook-operator.dev"]
  resources: ["runbooktriggers"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["runbook-operator.dev"]
  resources: ["runbooktriggers/status"]
  verbs: ["patch"]
- apiGroups: ["runbook-operator.dev"]
  resources: ["runbookexecutions"]
  verbs: ["delete"]
# Scheduled RunbookTriggers: the operator starts their executions (create, stamped triggered-by:
# the admission policy asks for the custom verb fire on the trigger) and cancels the running one
# on Replace (patch, above). docs/triggers.md, "Schedules".
- apiGroups: ["runbook-operator.dev"]
  resources: ["runbookexecutions"]
  verbs: ["create"]
- apiGroups: ["runbook-operator.dev"]
  resources: ["runbooktriggers"]
  verbs: ["fire"]
# Decisions on APPROVAL steps: read, and a verdict written on each (docs/approvals.md).
- apiGroups: ["runbook-operator.dev"]
  resources: ["runbookapprovals"]
  verbs: ["get", "list", "watch"]
# "May this user approve this execution?" (no approvers listed): a LocalSubjectAccessReview
# in the execution's namespace. It reveals RBAC answers there, nothing else.
- apiGroups: ["authorization.k8s.io"]
  resources: ["localsubjectaccessreviews"]
  verbs: ["create"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "create", "update"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["get", "create"]
# Not a real resource: the custom verb the ledger-writers admission policy checks
# (templates/admission-policies.yaml). Only the operator (and cluster admins) hold it.
- apiGroups: ["runbook-operator.dev"]
  resources: ["ledgers"]
  verbs: ["write"]
{{- if include "runbook-operator.operatorManagesExecutorRbac" . }}
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "create"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create"]
{{- end }}
{{- end }}

{{/*
The ledger's trust anchor (docs/audit.md): the operator annotates the RunbookExecution CRD with
where its public key is. Only that one object, and only get/patch.
*/}}
{{- define "runbook-operator.anchorRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames: ["runbookexecutions.runbook-operator.dev"]
  verbs: ["get", "patch"]
{{- end }}

{{/*
The executor identity's labels and rules: exactly runbook_operator/steps/executor_identity.py's
labels() and rules(), so the objects are the same whether the chart or the operator makes them
(tests/unit/operator/test_chart_render.py compares them).
*/}}
{{- define "runbook-operator.executorLabels" -}}
app.kubernetes.io/managed-by: runbook-operator
app.kubernetes.io/name: runbook-operator
app.kubernetes.io/component: executor
{{- end }}

{{- define "runbook-operator.executorRules" -}}
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create"]
{{- end }}

{{/* The labels of step pods (runbook_operator/names.py labels(..., "step")). */}}
{{- define "runbook-operator.stepPodSelector" -}}
app.kubernetes.io/managed-by: runbook-operator
app.kubernetes.io/component: step
{{- end }}

{{/* "a.b.c.d" as an integer. */}}
{{- define "runbook-operator.ipv4Int" -}}
{{- $o := splitList "." . -}}
{{- add (mul (atoi (index $o 0)) 16777216) (mul (atoi (index $o 1)) 65536) (mul (atoi (index $o 2)) 256) (atoi (index $o 3)) -}}
{{- end }}

{{/*
"true" when CIDR .outer contains CIDR .inner. IPv4 exactly; for IPv6 only ::/0 is known to
contain anything (the chart has no 128-bit arithmetic).
*/}}
{{- define "runbook-operator.cidrContains" -}}
{{- $outer := splitList "/" .outer -}}
{{- $inner := splitList "/" .inner -}}
{{- $v6 := contains ":" .outer -}}
{{- if ne $v6 (contains ":" .inner) -}}
{{- else if $v6 -}}
{{- if eq .outer "::/0" }}true{{ end -}}
{{- else -}}
{{- $olen := atoi (index $outer 1) -}}
{{- $ilen := atoi (index $inner 1) -}}
{{- if le $olen $ilen -}}
{{- $block := 1 -}}
{{- range until (sub 32 $olen | int) }}{{ $block = mul $block 2 }}{{ end -}}
{{- $oip := include "runbook-operator.ipv4Int" (index $outer 0) | atoi -}}
{{- $iip := include "runbook-operator.ipv4Int" (index $inner 0) | atoi -}}
{{- if eq (div $oip $block) (div $iip $block) }}true{{ end -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
An ipBlock with every denied CIDR inside it added to `except`; fails when the block itself lies
inside a denied CIDR. Argument: dict "block" (cidr, except) "denied" (list) "where" (value path).
*/}}
{{- define "runbook-operator.guardIpBlock" -}}
{{- $except := .block.except | default list -}}
{{- range $denied := .denied -}}
{{- if include "runbook-operator.cidrContains" (dict "outer" $denied "inner" $.block.cidr) -}}
{{- fail (printf "%s: %s lies inside %s, which stepNetworkPolicy.deniedCIDRs keeps out of reach" $.where $.block.cidr $denied) -}}
{{- end -}}
{{- if and (include "runbook-operator.cidrContains" (dict "outer" $.block.cidr "inner" $denied)) (not (has $denied $except)) -}}
{{- $except = append $except $denied -}}
{{- end -}}
{{- end -}}
{{- $block := dict "cidr" .block.cidr -}}
{{- if $except }}{{ $_ := set $block "except" $except }}{{ end -}}
{{- toYaml $block -}}
{{- end }}

{{/* Where the operator's leadership Lease lives: leaderElection.namespace, else the release's. */}}
{{- define "runbook-operator.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace -}}
{{- end }}
