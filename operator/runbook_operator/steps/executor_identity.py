"""The identity step pods run as: a ServiceAccount that may only create ConfigMaps (pure).

Created by the operator in a namespace on first use (`RUNBOOK_MANAGE_EXECUTOR_RBAC`), or by the
Helm chart in namespaced mode, from the same rules: `rules()` is the one list of what a step
pod may do.
"""

from __future__ import annotations

from typing import Any

from runbook_operator import names

RBAC_API = "rbac.authorization.k8s.io"


def rules() -> list[dict[str, Any]]:
    """What a step pod may do: write its result ConfigMap, nothing else."""
    return [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]


def labels() -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": names.MANAGED_BY,
        "app.kubernetes.io/name": "runbook-operator",
        names.COMPONENT_LABEL: "executor",
    }


def objects(namespace: str, service_account: str) -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding of the executor identity in `namespace`."""
    meta = {"name": service_account, "labels": labels()}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": f"{RBAC_API}/v1", "kind": "Role", "metadata": meta, "rules": rules()},
        {
            "apiVersion": f"{RBAC_API}/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": RBAC_API, "kind": "Role", "name": service_account},
            "subjects": [
                {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
            ],
        },
    ]
