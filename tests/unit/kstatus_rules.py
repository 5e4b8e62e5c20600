"""kstatus's verdict on a custom resource, transcribed for unit tests.

sigs.k8s.io/cli-utils v0.37.2 pkg/kstatus/status: `Compute` runs checkGenericProperties
(generic.go), finds no built-in rules for our kinds, then checkReadyCondition (status.go). The
real library judges live objects in tests/e2e/test_gitops_health.py, and its verdicts on the
committed fixtures are kept in kstatus_test.yaml, which tests/unit/test_argocd_health.py holds
this transcription to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def kstatus(obj: Mapping[str, Any]) -> str:
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating"
    observed = status.get("observedGeneration")
    if "generation" in meta and observed is not None and observed != meta["generation"]:
        return "InProgress"
    conditions = status.get("conditions") or []
    for c in conditions:
        if c["type"] == "Reconciling" and c["status"] == "True":
            return "InProgress"
        if c["type"] == "Stalled" and c["status"] == "True":
            return "Failed"
    for c in conditions:
        if c["type"] == "Ready":
            return "Current" if c["status"] == "True" else "InProgress"
    return "Current"
