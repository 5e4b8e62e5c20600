"""The operator's writer of the ledger on the cluster: load, append, checkpoint, publish the key.

Imperative; finding and verifying ledgers, for people and tools, is `find`. Synchronous: the
controller calls `LedgerStore` within a reconcile, which the kopf handlers run on the operator's
own thread pool (`run_in_executor`); `publish_public_key` and `publish_ledger_anchor` run once
at start-up. Every write is guarded: the open segment is replaced with its resourceVersion and
a new segment is created by name, so a second writer (kopf delivers at least once; an old
operator pod may still be running) gets `kube.Conflict`, reloads and retries. Entries whose
logId is already stored are skipped, so a retried append neither loses nor duplicates anything.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from runbook_engine.audit import GENESIS_HASH, AuditChain, verify
from runbook_operator.kube import (
    CONFIGMAPS,
    CRDS,
    JSON_PATCH,
    AlreadyExists,
    Conflict,
    Kube,
    KubeError,
    NotFound,
)
from runbook_operator.ledger.anchor import (
    EXECUTIONS_CRD,
    AnchorError,
    KeyAnchor,
    anchor_patch,
    anchors_of,
    annotation_key,
    withdraw_if_unchanged,
    withdraw_patch,
)
from runbook_operator.ledger.checkpoint import (
    KeyRef,
    Signer,
    make_checkpoint,
    public_key_configmap,
)
from runbook_operator.ledger.segments import (
    SEGMENT_MAX_BYTES,
    LedgerError,
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
from runbook_operator.names import ExecutionRef

__all__ = [
    "KeyRef",
    "LedgerError",
    "LedgerStore",
    "Signer",
    "publish_ledger_anchor",
    "publish_public_key",
    "withdraw_ledger_anchor",
]
log = logging.getLogger("runbook_operator")
PRUNE_CHECKS = 64
"""Other installations' anchors checked for a vanished key ConfigMap per start, at most."""


def _conflict(message: str) -> Conflict:
    return Conflict(409, "Conflict", message)


class LedgerStore:
    """One execution's ledger. Not shared between threads; one per execution in the operator."""

    def __init__(
        self,
        kube: Kube,
        ref: ExecutionRef,
        *,
        max_bytes: int = SEGMENT_MAX_BYTES,
    ) -> None:
        self.kube = kube
        self.lid = ref
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

    def append(self, entries: Sequence[Mapping[str, Any]]) -> bool:
        """Store `entries` (in chain order) after the stored ones; already stored ones are
        skipped. True when a segment was sealed on the way (a checkpoint is then due). Raises
        kube.Conflict when another writer got there first: reload, retry."""
        self.load()
        pending = self._pending(entries)
        lines = [entry_line(e) for e in pending]
        sealed = False
        while lines:
            write = plan_append(self.lid, self.segments, lines, self.max_bytes)
            if write is None:
                break
            self._execute(write)
            sealed = sealed or (write.replace and not write.final)
            for entry in pending[: write.stored]:
                self._entries.append(dict(entry))
                self._ids.add(str(entry["logId"]))
            pending, lines = pending[write.stored :], lines[write.stored :]
        return sealed

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


def publish_ledger_anchor(
    kube: Kube, operator_namespace: str, configmap: str, watch_namespaces: Sequence[str]
) -> bool:
    """Record on the RunbookExecution CRD where this operator publishes its public key and
    which namespaces it vouches for: the trust anchor `runbookctl verify` reads (ledger/anchor.py).

    Call it after `publish_public_key`. Also removes anchors whose key ConfigMap is gone (their
    namespace deleted: nothing can be verified through them; a running installation writes
    its own again at start-up). False, with a warning, when the operator may not patch the CRD
    (chart value signing.publishAnchor=false): verify then needs `--key-namespace`."""
    try:
        anchor = KeyAnchor(operator_namespace, configmap, tuple(watch_namespaces))
        crd = kube.patch(CRDS, None, EXECUTIONS_CRD, anchor_patch(anchor))
    except (AnchorError, KubeError) as exc:
        log.warning(
            "ledger trust anchor not published on customresourcedefinitions/%s (%s): "
            "`runbookctl verify` needs --key-namespace %s or --public-key until it is",
            EXECUTIONS_CRD,
            exc,
            operator_namespace,
        )
        return False
    _prune_vanished(kube, crd, keep=operator_namespace)
    return True


def _prune_vanished(kube: Kube, crd: Mapping[str, Any], keep: str) -> None:
    """Withdraw anchors whose ConfigMap answers NotFound (best effort: any other answer,
    such as Forbidden in namespaced mode, keeps the anchor; so does a changed anchor)."""
    annotations = (crd.get("metadata") or {}).get("annotations") or {}
    anchors, _ = anchors_of(crd)
    for anchor in [a for a in anchors if a.namespace != keep][:PRUNE_CHECKS]:
        try:
            kube.get(CONFIGMAPS, anchor.namespace, anchor.configmap)
            continue
        except NotFound:
            pass
        except KubeError:
            continue
        value = str(annotations.get(annotation_key(anchor.namespace)))
        patch = withdraw_if_unchanged(anchor.namespace, value)
        try:
            kube.patch(CRDS, None, EXECUTIONS_CRD, patch, content_type=JSON_PATCH)
            log.info("withdrew the ledger trust anchor of %s (its key is gone)", anchor.where)
        except KubeError:
            continue  # changed meanwhile, or not ours to change: leave it


def withdraw_ledger_anchor(kube: Kube, operator_namespace: str) -> None:
    """Remove this operator namespace's anchor (an uninstall, a test's clean-up)."""
    kube.patch(CRDS, None, EXECUTIONS_CRD, withdraw_patch([operator_namespace]))
