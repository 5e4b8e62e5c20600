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
What the operator does in a namespace it watches (docs/operator.md, "Installing"):
- Runbooks: watch, write the Valid condition to /status, kopf's progress annotations (patch).
- RunbookExecutions: watch, finalizer and annotations (patch), status.
- Jobs: one per attempt (create), adopt on AlreadyExists (get), cancel (delete); watch.
- Pods: watch and read, to learn why an attempt failed (never created or deleted directly).
- ConfigMaps: ledger segments (create, update with resourceVersion), pinned definitions,
  result ConfigMaps written by step pods (read), the public key in its own namespace.
- Events: kopf's and the operator's own (create; get when the name already exists).
- ServiceAccounts/Roles/RoleBindings: get and create the executor RBAC on first use, only when
  the operator manages it; it holds "create configmaps" itself, so the Role is no escalation.
*/}}
{{- define "runbook-operator.rules" -}}
- apiGroups: ["runbook-operator.dev"]
  resources: ["runbooks", "runbookexecutions"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["runbook-operator.dev"]
  resources: ["runbooks/status", "runbookexecutions/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "create", "update", "patch"]
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
