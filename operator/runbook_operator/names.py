"""Deterministic names and labels of everything the operator creates.

Children are named from the execution's uid, step and attempt, never at random: a replayed
reconcile (kopf delivers at least once) finds the object it created before instead of making a
second one (argo-workflows#13986, tekton#3656).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from runbook_operator.apigroup import API_GROUP, API_VERSION

LABEL_PREFIX = API_GROUP
MANAGED_BY = "runbook-operator"
EXECUTION_LABEL = f"{LABEL_PREFIX}/execution"
EXECUTION_UID_LABEL = f"{LABEL_PREFIX}/execution-uid"
STEP_LABEL = f"{LABEL_PREFIX}/step"
ATTEMPT_LABEL = f"{LABEL_PREFIX}/attempt"
COMPONENT_LABEL = "app.kubernetes.io/component"
RETENTION_LABEL = f"{LABEL_PREFIX}/retain"
"""On ledger ConfigMaps: `true` keeps them until deleted by hand (docs/audit.md)."""
MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"

_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9._-]+")
JOB_NAME_MAX = 52
"""The Job controller names pods `<job>-<5 chars>` and labels them with the Job name (≤ 63)."""


def short_hash(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:length]


def dns_part(text: str, max_len: int) -> str:
    """`text` as a lowercase DNS-1123 label fragment of at most `max_len` characters."""
    return _NOT_DNS.sub("-", text.lower()).strip("-")[:max_len].strip("-") or "x"


def label_value(text: str) -> str:
    """`text` as a valid label value (≤ 63, alphanumeric at both ends); long ones get a hash."""
    clean = _NOT_LABEL.sub("-", text).strip("-_.")
    if len(clean) > 63:
        clean = f"{clean[:54].rstrip('-_.')}-{short_hash(text)}"
    return clean


def execution_id(namespace: str, name: str, uid: str) -> str:
    """The audit chain's execution id: readable, and unique across re-created objects."""
    return f"{namespace}/{name}/{uid[:8]}"


@dataclass(frozen=True, slots=True)
class ExecutionRef:
    """Which RunbookExecution an object belongs to: its Jobs, results, definition and ledger.

    The uid tells apart executions re-created under the same name; every child name and the
    audit chain's execution id derive from these three fields, never from anything else.
    """

    namespace: str
    name: str
    uid: str

    @property
    def execution_id(self) -> str:
        return execution_id(self.namespace, self.name, self.uid)

    def owner(self, *, controller: bool = True) -> dict[str, Any]:
        return owner_reference(self.name, self.uid, controller=controller)

    def ledger_segment(self, index: int) -> str:
        return ledger_configmap(self.name, self.uid, index)


def owner_reference(name: str, uid: str, *, controller: bool = True) -> dict[str, Any]:
    """An ownerReference to the RunbookExecution `name`/`uid` (garbage collection with it)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "RunbookExecution",
        "name": name,
        "uid": uid,
        "controller": controller,
        "blockOwnerDeletion": controller,
    }


def job_name(execution: str, uid: str, step_id: str, attempt: int) -> str:
    """`<execution>-<step>-<hash>-<attempt>`, unique per (execution uid, step, attempt)."""
    suffix = f"-{short_hash(uid, step_id, length=6)}-{attempt}"
    room = JOB_NAME_MAX - len(suffix)
    head = dns_part(execution, room // 2)
    step = dns_part(step_id, room - len(head) - 1)
    return f"{head}-{step}{suffix}"


def result_configmap(job: str) -> str:
    """Where a step pod (or the operator, for a termination-message result) keeps the result."""
    return f"{job}-result"


def definition_configmap(execution: str, uid: str) -> str:
    """The definition and request pinned at start (owned by the execution)."""
    return f"{dns_part(execution, 200)}-{uid[:8]}-definition"


def ledger_configmap(execution: str, uid: str, segment: int) -> str:
    """Segment `segment` of the execution's ledger (no owner: it outlives the execution)."""
    return f"{dns_part(execution, 200)}-{uid[:8]}-ledger-{segment:04d}"


def labels(
    execution: str,
    uid: str,
    component: str,
    *,
    step_id: str | None = None,
    attempt: int | None = None,
) -> dict[str, str]:
    """The labels every child carries: `app.kubernetes.io/*`, execution, step and attempt."""
    out = {
        "app.kubernetes.io/name": "runbook-operator",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "runbook-operator",
        "app.kubernetes.io/instance": label_value(execution),
        COMPONENT_LABEL: component,
        EXECUTION_LABEL: label_value(execution),
        EXECUTION_UID_LABEL: uid,
    }
    if step_id is not None:
        out[STEP_LABEL] = label_value(step_id)
    if attempt is not None:
        out[ATTEMPT_LABEL] = str(attempt)
    return out
