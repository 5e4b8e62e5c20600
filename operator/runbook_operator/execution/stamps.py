"""The identity annotations admission writes on a RunbookExecution, read back (pure).

The apiserver authenticates every request; the chart's admission policies
(charts/runbook-operator/templates/admission-policies.yaml) copy `request.userInfo` into these
annotations when an execution is created and whenever `spec.paused`/`spec.cancel` change, and
refuse any request that sets them to anything else. So the operator never takes identity from a
field the user writes (`spec.startedBy` stays, recorded as what the user *claimed*).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runbook_engine.identity import Identity
from runbook_operator.apigroup import API_GROUP

CREATED_BY = f"{API_GROUP}/created-by"
CREATED_BY_UID = f"{API_GROUP}/created-by-uid"
CREATED_BY_GROUPS = f"{API_GROUP}/created-by-groups"
CONTROL_BY = f"{API_GROUP}/control-by"
CONTROL_BY_UID = f"{API_GROUP}/control-by-uid"
CONTROL_BY_GROUPS = f"{API_GROUP}/control-by-groups"
CONTROL_OF = f"{API_GROUP}/control-of"
"""`paused=<bool>,cancel=<bool>`: the controls the stamped user set (stale once they differ)."""


TRIGGERED_BY = f"{API_GROUP}/triggered-by"
"""The RunbookTrigger that created the execution (its name, same namespace)."""
TRIGGER_CREATED_BY = f"{API_GROUP}/trigger-created-by"
"""Who created that trigger, copied from the trigger's own created-by stamp."""
TRIGGER_EVENT = f"{API_GROUP}/trigger-event"
"""The event that fired it, as JSON (an alert: fingerprint, startsAt, labels, generatorURL)."""
TRIGGER_LABEL = f"{API_GROUP}/trigger"
"""Label (the trigger's name as a label value): the trigger lists its executions by it."""
TRIGGER_ANNOTATIONS = (TRIGGERED_BY, TRIGGER_CREATED_BY, TRIGGER_EVENT)
"""Only holders of the custom verb `fire` on runbooktriggers (the receiver's and the operator's
roles) may create an execution carrying these or TRIGGER_LABEL, and nobody may change them:
the chart's admission policy `execution-identity` checks both (docs/security.md)."""
TRIGGER_EVENT_LIMIT = 16_384
"""Characters of the event annotation read back (the receiver writes far less)."""


def control_of(paused: bool, cancel: bool) -> str:
    return f"paused={str(paused).lower()},cancel={str(cancel).lower()}"


def _identity(annotations: Mapping[str, str], user: str, uid: str, groups: str) -> Identity | None:
    name = annotations.get(user)
    if not name:
        return None
    wire = {
        "username": name,
        "uid": annotations.get(uid) or None,
        "groups": [g for g in (annotations.get(groups) or "").split(",") if g],
    }
    return Identity.from_wire(wire)


@dataclass(frozen=True, slots=True)
class Stamps:
    """Who created the execution, and who set its controls as they are now."""

    creator: Identity | None
    controller: Identity | None
    trigger: Mapping[str, Any] | None = None
    """The trigger that created it (name, its creator, the event), when admission let one."""

    @classmethod
    def of(cls, annotations: Mapping[str, str], paused: bool, cancel: bool) -> Stamps:
        controller = None
        if annotations.get(CONTROL_OF) == control_of(paused, cancel):
            controller = _identity(annotations, CONTROL_BY, CONTROL_BY_UID, CONTROL_BY_GROUPS)
        creator = _identity(annotations, CREATED_BY, CREATED_BY_UID, CREATED_BY_GROUPS)
        return cls(creator, controller, _trigger(annotations))


def _trigger(annotations: Mapping[str, str]) -> dict[str, Any] | None:
    name = annotations.get(TRIGGERED_BY)
    if not name:
        return None
    raw = (annotations.get(TRIGGER_EVENT) or "")[:TRIGGER_EVENT_LIMIT]
    try:
        event: Any = json.loads(raw) if raw else None
    except ValueError:
        event = {"unparsed": raw}
    return {
        "name": name,
        "createdBy": annotations.get(TRIGGER_CREATED_BY) or None,
        "event": event,
    }


def control_annotations(who: Identity, paused: bool, cancel: bool) -> dict[str, str]:
    """What a client writes with a pause/resume/cancel where no MutatingAdmissionPolicy stamps
    it (the ValidatingAdmissionPolicy checks that it names the requesting user)."""
    return {
        CONTROL_BY: who.username,
        CONTROL_BY_UID: who.uid or "",
        CONTROL_BY_GROUPS: ",".join(who.groups),
        CONTROL_OF: control_of(paused, cancel),
    }
