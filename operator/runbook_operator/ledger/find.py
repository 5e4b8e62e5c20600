"""Finding and verifying ledgers on the cluster, for people and tools (runbookctl, tests).

Read-only, and kept apart from the operator's writer (`store`): a ledger is found by its
segments' labels, so it can be verified after its execution was deleted. Its checkpoints are
checked only with keys from the trust anchor (ledger/anchor.py) or a pinned key; keys found
anywhere else are reported, never used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from runbook_operator import names
from runbook_operator.kube import CONFIGMAPS, CRDS, EXECUTIONS, Kube, KubeError, NotFound
from runbook_operator.ledger.anchor import (
    ANCHOR_PREFIX,
    EXECUTIONS_CRD,
    KeyAnchor,
    anchors_for,
    anchors_of,
    no_anchor_message,
)
from runbook_operator.ledger.checkpoint import (
    KEY_COMPONENT,
    KeyRef,
    key_id_of,
    load_public_pem,
    published_keys,
)
from runbook_operator.ledger.segments import LedgerError, Segment, ordered, selector
from runbook_operator.ledger.verify import KeyLookup, Report, checkpoints, verify_ledger
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
    refs = set()
    for _, cp in checkpoints(segments, status_audit):
        ref = cp.get("keyRef") if isinstance(cp, Mapping) else None
        if isinstance(ref, Mapping) and ref.get("namespace") and ref.get("name"):
            refs.add(KeyRef(str(ref["namespace"]), str(ref["name"])))
    return refs


def _key_ids(segments: Sequence[Segment], status_audit: Mapping[str, Any] | None) -> set[str]:
    """The keyIds the checkpoints say they were signed with (what a key must be found for)."""
    return {
        str(cp.get("keyId"))
        for _, cp in checkpoints(segments, status_audit)
        if isinstance(cp, Mapping) and cp.get("keyId")
    }


# -- the trust anchor: where the public key may come from (ledger/anchor.py) ------------------
class TrustAnchorError(LedgerError):
    """No trusted place to take the ledger's public key from; the message says what to pass."""


def read_anchors(kube: Kube, namespace: str) -> tuple[list[KeyAnchor], list[str]]:
    """The anchors on the RunbookExecution CRD that vouch for `namespace`, and notes on any
    annotation skipped. Raises TrustAnchorError when there is none or the CRD is unreadable."""
    try:
        crd = kube.get(CRDS, None, EXECUTIONS_CRD)
    except KubeError as exc:
        reason = f"cannot read customresourcedefinitions/{EXECUTIONS_CRD} ({exc})"
        raise TrustAnchorError(no_anchor_message(namespace, reason)) from None
    anchors, skipped = anchors_of(crd)
    covering = anchors_for(anchors, namespace)
    if not covering:
        reason = (
            f"no {ANCHOR_PREFIX}<operator namespace> annotation on "
            f"customresourcedefinitions/{EXECUTIONS_CRD} covers it (is the operator running?)"
        )
        if skipped:
            reason += f" [skipped: {'; '.join(skipped)}]"
        raise TrustAnchorError(no_anchor_message(namespace, reason))
    return covering, [f"trust anchor skipped: {s}" for s in skipped]


def anchored_keys(
    kube: Kube, namespace: str, anchors: Sequence[KeyAnchor]
) -> tuple[dict[str, Ed25519PublicKey], list[str]]:
    """The public keys by id from the anchors' ConfigMaps, and a note for each one unreadable.
    Raises TrustAnchorError when not one could be read (verify would only say "unknown key")."""
    keys: dict[str, Ed25519PublicKey] = {}
    failures: list[str] = []
    read = 0
    for anchor in anchors:
        try:
            data = kube.get(CONFIGMAPS, anchor.namespace, anchor.configmap).get("data") or {}
        except KubeError as exc:
            failures.append(f"public key ConfigMap {anchor.where}: {exc}")
            continue
        read += 1
        keys.update(published_keys(data))
    if not read:
        raise TrustAnchorError(no_anchor_message(namespace, "; ".join(failures)))
    return keys, [f"trust anchor unreadable: {f}" for f in failures]


def _sightings(kube: Kube, namespace: str, refs: set[KeyRef]) -> list[tuple[str, str, str, Any]]:
    """Public-key ConfigMaps anywhere else, to say where an untrusted key came from:
    (namespace, name, why found, data). Best effort: what we may not read is skipped."""
    found: dict[tuple[str, str], tuple[str, Any]] = {}
    for ref in sorted(refs, key=lambda r: (r.namespace, r.name)):
        try:
            cm = kube.get(CONFIGMAPS, ref.namespace, ref.name)
            found[(ref.namespace, ref.name)] = ("named by the checkpoint's keyRef", cm)
        except KubeError:
            continue
    sel = f"{names.COMPONENT_LABEL}={KEY_COMPONENT}"
    for scope in (None, namespace):
        try:
            labelled = kube.list(CONFIGMAPS, scope, sel)
        except KubeError:
            continue
        for cm in labelled:
            meta = cm.get("metadata") or {}
            where = (str(meta.get("namespace")), str(meta.get("name")))
            found.setdefault(where, (f"labelled {sel}", cm))
        break
    return [(ns, name, why, cm.get("data") or {}) for (ns, name), (why, cm) in found.items()]


def untrusted_notes(
    kube: Kube,
    namespace: str,
    *,
    unknown_ids: set[str],
    refs: set[KeyRef],
    trusted: Sequence[KeyAnchor] | None,
) -> list[str]:
    """Notes on keys that are not trusted: a keyRef pointing outside the anchors, and where a
    checkpoint key that no anchor holds is published instead (never used, only reported).
    `trusted` None: a pinned key, so no anchor (and no keyRef) is expected."""
    anchored = {(a.namespace, a.configmap) for a in trusted or ()}
    notes = [
        f"keyRef {ref.namespace}/{ref.name} in a checkpoint is not a trust anchor: not trusted, "
        "not used"
        for ref in sorted(refs, key=lambda r: (r.namespace, r.name))
        if trusted is not None and (ref.namespace, ref.name) not in anchored
    ]
    if not unknown_ids:
        return notes
    for ns, name, why, data in sorted(_sightings(kube, namespace, refs)):
        if (ns, name) in anchored:
            continue
        for key_id in sorted(
            unknown_ids
        ):  # only the keys asked for: a huge ConfigMap costs nothing
            pem = data.get(f"{key_id}.pem")
            if not isinstance(pem, str) or not published_keys({f"{key_id}.pem": pem}):
                continue
            notes.append(
                f"key {key_id[:16]}… is published in ConfigMap {ns}/{name} ({why}), which is "
                "not a trust anchor: not trusted"
            )
    return notes


def pinned_key(pem: str | bytes) -> KeyLookup:
    """Trust only this key (a copy kept outside the cluster)."""
    key = load_public_pem(pem)
    key_id = key_id_of(key)
    return lambda wanted: key if wanted == key_id else None


def trusted_keys(
    kube: Kube,
    namespace: str,
    segments: Sequence[Segment],
    status_audit: Mapping[str, Any] | None,
    *,
    public_key_pem: str | bytes | None = None,
    key_anchor: KeyAnchor | None = None,
) -> tuple[KeyLookup, list[str]]:
    """The keys a checkpoint of this ledger may be checked with, and notes on untrusted ones.

    `public_key_pem` pins one key; else `key_anchor`, else the anchors on the CRD that cover
    `namespace`. Never `keyRef` from the ledger, never a labelled ConfigMap found elsewhere.
    A ledger without checkpoints needs no key (and no anchor)."""
    wanted = _key_ids(segments, status_audit)
    refs = _key_refs(segments, status_audit)
    if public_key_pem is not None:
        pinned = pinned_key(public_key_pem)
        unknown = {k for k in wanted if pinned(k) is None}
        return pinned, untrusted_notes(
            kube, namespace, unknown_ids=unknown, refs=refs, trusted=None
        )
    if not wanted:
        return (lambda _: None), []
    notes: list[str] = []
    if key_anchor is not None:
        anchors = [key_anchor]
    else:
        anchors, notes = read_anchors(kube, namespace)
    known, unreadable = anchored_keys(kube, namespace, anchors)
    notes += unreadable
    unknown = wanted - set(known)
    notes += untrusted_notes(kube, namespace, unknown_ids=unknown, refs=refs, trusted=anchors)
    return known.get, notes


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
    key_anchor: KeyAnchor | None = None,
    require_checkpoint: bool = False,
) -> Report:
    """Verify the ledger of execution `name` (the live object's, `uid`'s, or the newest).

    Checkpoints are checked with trusted keys only (`trusted_keys`); raises TrustAnchorError
    when the ledger is signed but no trusted key source can be found."""
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
    keys, notes = trusted_keys(
        kube,
        namespace,
        ledger.segments,
        status_audit,
        public_key_pem=public_key_pem,
        key_anchor=key_anchor,
    )
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
