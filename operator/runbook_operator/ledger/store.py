"""The ledger on the cluster: append, checkpoint, publish the key, find and verify (imperative).

Synchronous (the operator calls it through `asyncio.to_thread`). Every write is guarded: the
open segment is replaced with its resourceVersion and a new segment is created by name, so a
second writer (kopf delivers at least once; an old operator pod may still be running) gets
`kube.Conflict`, reloads and retries. Entries whose logId is already stored are skipped, so a
retried append neither loses nor duplicates anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from runbook_engine.audit import GENESIS_HASH, AuditChain, verify
from runbook_operator import names
from runbook_operator.kube import (
    CONFIGMAPS,
    EXECUTIONS,
    AlreadyExists,
    Conflict,
    Kube,
    KubeError,
    NotFound,
)
from runbook_operator.ledger.checkpoint import (
    KEY_COMPONENT,
    KeyRef,
    Signer,
    SigningKeyError,
    key_id_of,
    load_public_pem,
    make_checkpoint,
    public_key_configmap,
    published_key,
)
from runbook_operator.ledger.segments import (
    SEGMENT_MAX_BYTES,
    LedgerError,
    LedgerId,
    Segment,
    Write,
    all_entries,
    entry_line,
    ordered,
    parse_segment,
    plan_append,
    plan_checkpoint,
    selector,
    structure_problems,
)
from runbook_operator.ledger.verify import KeyLookup, Report, verify_ledger

__all__ = [
    "KeyRef",
    "LedgerError",
    "LedgerStore",
    "Signer",
    "find_ledgers",
    "publish_public_key",
    "verify_execution",
]


def _conflict(message: str) -> Conflict:
    return Conflict(409, "Conflict", message)


class LedgerStore:
    """One execution's ledger. Not shared between threads; one per execution in the operator."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        execution_name: str,
        execution_uid: str,
        execution_id: str,
        *,
        max_bytes: int = SEGMENT_MAX_BYTES,
    ) -> None:
        self.kube = kube
        self.lid = LedgerId(namespace, execution_name, execution_uid)
        if self.lid.execution_id != execution_id:
            raise ValueError(f"execution_id {execution_id!r} is not {self.lid.execution_id!r}")
        self.max_bytes = max_bytes
        self._segments: list[Segment] | None = None
        self._entries: list[dict[str, Any]] = []
        self._ids: set[str] = set()

    # -- reading -------------------------------------------------------------------------------
    def load(self) -> AuditChain:
        """The stored chain: read and checked once, then from the cache until a write meets
        Conflict (another writer) and drops it. Raises LedgerError if the ledger is damaged."""
        if self._segments is not None:
            return AuditChain(self.lid.execution_id, self._entries)
        return self.reload()

    def reload(self) -> AuditChain:
        """Read every segment and rebuild the chain."""
        found = self.kube.list(CONFIGMAPS, self.lid.namespace, selector(uid=self.lid.uid))
        segments = ordered(found)
        entries = all_entries(segments)
        problems = structure_problems(self.lid, segments)
        chain = verify(entries, execution_id=self.lid.execution_id)
        if problems or not chain.valid:
            first = str(problems[0]) if problems else f"entry {chain.bad_index}: {chain.error}"
            raise LedgerError(f"ledger of {self.lid.execution_id} is damaged: {first}")
        self._segments = segments
        self._entries = [dict(e) for e in entries]
        self._ids = {e["logId"] for e in self._entries}
        return AuditChain(self.lid.execution_id, self._entries)

    @property
    def count(self) -> int:
        return len(self._entries)

    @property
    def head(self) -> str:
        return str(self._entries[-1]["hash"]) if self._entries else GENESIS_HASH

    @property
    def segments(self) -> list[Segment]:
        self.load()
        return list(self._segments or [])

    # -- writing -------------------------------------------------------------------------------
    def _pending(self, entries: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Entries not stored yet, checked to extend the stored chain (else: Conflict)."""
        pending = [e for e in entries if e["logId"] not in self._ids]
        seq, head = self.count, self.head
        for entry in pending:
            if entry["seq"] != seq or entry["previousHash"] != head:
                self._segments = None
                raise _conflict(
                    f"entry {entry['logId']} (seq {entry['seq']}) does not extend the stored "
                    f"ledger of {self.lid.execution_id} (next seq {seq}): reload and retry"
                )
            seq, head = seq + 1, entry["hash"]
        return pending

    def _execute(self, write: Write) -> None:
        name = str(write.body["metadata"]["name"])
        try:
            if write.replace:
                obj = self.kube.replace(CONFIGMAPS, self.lid.namespace, name, write.body)
            else:
                obj = self.kube.create(CONFIGMAPS, self.lid.namespace, write.body)
        except (Conflict, AlreadyExists) as exc:
            self._segments = None  # someone else wrote: the caller reloads
            raise _conflict(f"ledger segment {name}: {exc.message}") from None
        except KubeError:
            self._segments = None  # the write may or may not have happened: read it again
            raise
        segment = parse_segment(obj)
        assert self._segments is not None
        if self._segments and self._segments[-1].name == segment.name:
            self._segments[-1] = segment
        else:
            self._segments.append(segment)

    def append(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Store `entries` (in chain order) after the stored ones; already stored ones are
        skipped. Raises kube.Conflict when another writer got there first: reload, retry."""
        self.load()
        pending = self._pending(entries)
        lines = [entry_line(e) for e in pending]
        while lines:
            write = plan_append(self.lid, self.segments, lines, self.max_bytes)
            if write is None:
                break
            self._execute(write)
            for entry in pending[: write.stored]:
                self._entries.append(dict(entry))
                self._ids.add(str(entry["logId"]))
            pending, lines = pending[write.stored :], lines[write.stored :]

    def write_checkpoint(self, chain: AuditChain, signer: Signer, now: datetime) -> dict[str, Any]:
        """Store `chain` (idempotently), then sign and store a checkpoint of the stored ledger."""
        self.append(chain.entries)
        checkpoint = make_checkpoint(
            execution_id=self.lid.execution_id,
            count=self.count,
            head=self.head,
            now=now,
            signer=signer,
        )
        while True:
            write = plan_checkpoint(self.lid, self.segments, checkpoint, self.max_bytes)
            self._execute(write)
            if write.final:
                return checkpoint


def publish_public_key(kube: Kube, namespace: str, name: str, signer: Signer) -> None:
    """Create or update the public-key ConfigMap (keeping keys published before a rotation).

    A signer without a `key_ref` learns this one, so its checkpoints point verifiers here."""
    if signer.key_ref is None:
        signer.key_ref = KeyRef(namespace, name)
    for _ in range(5):
        try:
            current = kube.get(CONFIGMAPS, namespace, name)
        except NotFound:
            try:
                kube.create(CONFIGMAPS, namespace, public_key_configmap(name, namespace, signer))
                return
            except AlreadyExists:
                continue
        existing = current.get("data") or {}
        body = public_key_configmap(name, namespace, signer, existing)
        if body["data"] == existing:
            return
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        try:
            kube.replace(CONFIGMAPS, namespace, name, body)
            return
        except Conflict:
            continue
    raise _conflict(f"public key ConfigMap {namespace}/{name}: kept changing, not published")


# -- reading for tools --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FoundLedger:
    """The segments of one execution object's ledger (by uid), as listed."""

    lid: LedgerId
    segments: list[Segment]

    @property
    def created(self) -> str:
        return max((s.created for s in self.segments), default="")


def find_ledgers(kube: Kube, namespace: str, execution: str) -> list[FoundLedger]:
    """Every ledger left by executions named `execution` (one per uid), newest first.

    Works without the execution object: segments are found by their labels."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for cm in kube.list(CONFIGMAPS, namespace, selector(execution=execution)):
        uid = ((cm.get("metadata") or {}).get("labels") or {}).get(names.EXECUTION_UID_LABEL)
        if uid:
            groups.setdefault(str(uid), []).append(cm)
    found = []
    for uid, cms in groups.items():
        segments = ordered(cms)
        named = {s.meta.get("execution") for s in segments} - {None}
        if named and execution not in named:
            continue  # another name with the same label value (long names are hashed)
        found.append(FoundLedger(LedgerId(namespace, execution, uid), segments))
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
