"""Finding and verifying ledgers on the cluster, for people and tools (runbookctl, tests).

Read-only, and kept apart from the operator's writer (`store`): a ledger is found by its
segments' labels, so it can be verified after its execution was deleted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from runbook_operator import names
from runbook_operator.kube import CONFIGMAPS, EXECUTIONS, Kube, KubeError, NotFound
from runbook_operator.ledger.checkpoint import (
    KEY_COMPONENT,
    KeyRef,
    SigningKeyError,
    key_id_of,
    load_public_pem,
    published_key,
)
from runbook_operator.ledger.segments import LedgerError, Segment, ordered, selector
from runbook_operator.ledger.verify import KeyLookup, Report, verify_ledger
from runbook_operator.names import ExecutionRef


# --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FoundLedger:
    """The segments of one execution object's ledger (by uid), as listed."""

    lid: ExecutionRef
    segments: list[Segment]

    @property
    def created(self) -> str:
        return max((s.created for s in self.segments), default="")


def find_ledgers(kube: Kube, namespace: str, execution: str) -> list[FoundLedger]:
    """Every ledger left by executions named `execution` (one per uid), newest first.

    Works without the execution object: segments are found by their labels."""
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    # Older versions labelled names over 63 characters differently (names.legacy_label_value).
    values = dict.fromkeys([names.label_value(execution), names.legacy_label_value(execution)])
    for value in values:
        for cm in kube.list(CONFIGMAPS, namespace, f"{selector()},{names.EXECUTION_LABEL}={value}"):
            meta = cm.get("metadata") or {}
            uid = (meta.get("labels") or {}).get(names.EXECUTION_UID_LABEL)
            if uid:
                groups.setdefault(str(uid), {})[str(meta.get("name"))] = cm
    found = []
    for uid, cms in groups.items():
        segments = ordered(list(cms.values()))
        named = {s.meta.get("execution") for s in segments} - {None}
        if named and execution not in named:
            continue  # another name with the same label value (long names are hashed)
        found.append(FoundLedger(ExecutionRef(namespace, execution, uid), segments))
    return sorted(found, key=lambda f: f.created, reverse=True)


def _key_refs(segments: Sequence[Segment], status_audit: Mapping[str, Any] | None) -> set[KeyRef]:
    cps = [s.checkpoint for s in segments] + [(status_audit or {}).get("checkpoint")]
    refs = set()
    for cp in cps:
        ref = cp.get("keyRef") if isinstance(cp, Mapping) else None
        if isinstance(ref, Mapping) and ref.get("namespace") and ref.get("name"):
            refs.add(KeyRef(str(ref["namespace"]), str(ref["name"])))
    return refs


def published_keys(kube: Kube, refs: set[KeyRef]) -> tuple[dict[str, Ed25519PublicKey], list[str]]:
    """Public keys by id from the named ConfigMaps, else from every labelled one we may read."""
    datas: list[Mapping[str, str]] = []
    notes: list[str] = []
    for ref in sorted(refs, key=lambda r: (r.namespace, r.name)):
        try:
            datas.append(kube.get(CONFIGMAPS, ref.namespace, ref.name).get("data") or {})
        except KubeError as exc:
            notes.append(f"public key {ref.namespace}/{ref.name}: {exc.reason or exc}")
    if not datas:
        try:
            sel = f"{names.COMPONENT_LABEL}={KEY_COMPONENT}"
            datas = [cm.get("data") or {} for cm in kube.list(CONFIGMAPS, None, sel)]
        except KubeError as exc:
            notes.append(f"public keys: cannot list key ConfigMaps ({exc.reason or exc})")
    keys: dict[str, Ed25519PublicKey] = {}
    for data in datas:
        for key_name in data:
            key_id = key_name.removesuffix(".pem")
            if key_name.endswith(".pem") and len(key_id) == 64:
                try:
                    key = published_key(data, key_id)
                except SigningKeyError:
                    continue
                if key is not None:
                    keys[key_id] = key
    return keys, notes


def pinned_key(pem: str | bytes) -> KeyLookup:
    """Trust only this key (a copy kept outside the cluster)."""
    key = load_public_pem(pem)
    key_id = key_id_of(key)
    return lambda wanted: key if wanted == key_id else None


def _pick(found: list[FoundLedger], uid: str | None) -> FoundLedger | None:
    for ledger in found:
        if uid is None or ledger.lid.uid == uid:
            return ledger
    return None


def get_execution(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return kube.get(EXECUTIONS, namespace, name)
    except NotFound:
        return None


def verify_execution(
    kube: Kube,
    namespace: str,
    name: str,
    *,
    uid: str | None = None,
    public_key_pem: str | bytes | None = None,
    require_checkpoint: bool = False,
) -> Report:
    """Verify the ledger of execution `name` (the live object's, `uid`'s, or the newest)."""
    obj = get_execution(kube, namespace, name)
    obj_uid = str(obj["metadata"]["uid"]) if obj else None
    found = find_ledgers(kube, namespace, name)
    ledger = _pick(found, uid or obj_uid)
    if ledger is None:
        others = ", ".join(f.lid.uid for f in found)
        raise LedgerError(
            f"no ledger of execution {name!r} in namespace {namespace!r}"
            + (f" with uid {uid or obj_uid}" if uid or obj_uid else "")
            + (f" (ledgers found for uids: {others})" if others else "")
        )
    status_audit = None
    if obj is not None and obj_uid == ledger.lid.uid:
        status_audit = (obj.get("status") or {}).get("audit") or {}
    notes: list[str] = []
    if public_key_pem is not None:
        keys = pinned_key(public_key_pem)
    else:
        known, notes = published_keys(kube, _key_refs(ledger.segments, status_audit))
        keys = known.get
    report = verify_ledger(
        ledger.lid,
        ledger.segments,
        keys=keys,
        status_audit=status_audit,
        require_checkpoint=require_checkpoint,
    )
    report.notes.extend(notes)
    if len(found) > 1:
        report.notes.append(f"{len(found)} ledgers carry this name; verified uid {ledger.lid.uid}")
    return report
