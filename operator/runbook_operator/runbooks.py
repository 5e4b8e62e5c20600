"""Writes a Runbook's status: the Valid condition from the engine's full validation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runbook_engine.timeutil import utcnow
from runbook_operator import kube as k


@dataclass
class RunbookStatusWriter:
    kube: k.Kube

    def update_status(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        from runbook_operator.crd.runbook_status import runbook_status

        meta = body.get("metadata") or {}
        status = runbook_status(
            dict(body.get("spec") or {}),
            int(meta.get("generation") or 0),
            utcnow(),
            name=meta.get("name") or name,  # stands in for a missing spec.id, as locally
            previous=body.get("status"),  # keeps lastTransitionTime: no rewrite per event
        )
        if status == body.get("status"):
            return
        try:
            self.kube.patch(k.RUNBOOKS, namespace, name, {"status": status}, subresource="status")
        except k.NotFound:
            return
