"""The ConfigMap ledger on a real kube-apiserver: rolling and sealing segments, guarded
concurrent writes, immutability of sealed segments, tamper detection, verify without the
execution object. No operator needed: the tests drive LedgerStore directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from runbook_engine.audit import AuditChain, verify
from runbook_operator import names
from runbook_operator.kube import CONFIGMAPS, Conflict, Invalid, Kube
from runbook_operator.ledger.anchor import KeyAnchor
from runbook_operator.ledger.checkpoint import KeyRef, Signer
from runbook_operator.ledger.find import find_ledgers, verify_execution
from runbook_operator.ledger.segments import ENTRIES_KEY, SEGMENT_MAX_BYTES
from runbook_operator.ledger.store import LedgerStore, publish_public_key
from runbook_operator.names import ExecutionRef
from tests.unit.ledger.helpers import chain_of

from .conftest import Cluster

pytestmark = pytest.mark.e2e
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def kube(cluster: Cluster) -> Kube:
    return Kube.connect(cluster.kubeconfig)


def _lid(namespace: str, name: str = "demo") -> ExecutionRef:
    return ExecutionRef(namespace, name, str(uuid.uuid4()))


def _store(kube: Kube, lid: ExecutionRef, max_bytes: int = SEGMENT_MAX_BYTES) -> LedgerStore:
    return LedgerStore(kube, lid, max_bytes=max_bytes)


def _segments(kube: Kube, lid: ExecutionRef) -> list[dict[str, Any]]:
    items = kube.list(CONFIGMAPS, lid.namespace, f"{names.EXECUTION_UID_LABEL}={lid.uid}")
    return sorted(items, key=lambda cm: cm["metadata"]["name"])


def test_append_many_entries_across_segment_rolls(kube: Kube, namespace: str) -> None:
    lid = _lid(namespace)
    chain = chain_of(300, pad=200, lid=lid)
    store = _store(kube, lid, max_bytes=20_000)
    for lo in range(0, 300, 37):
        store.append(chain.entries[: lo + 37])
    cms = _segments(kube, lid)
    assert len(cms) >= 4
    assert all(cm.get("immutable") is True for cm in cms[:-1]) and "immutable" not in cms[-1]
    assert all("ownerReferences" not in cm["metadata"] for cm in cms)
    assert all(cm["metadata"]["labels"][names.RETENTION_LABEL] == "true" for cm in cms)
    loaded = _store(kube, lid).load()
    assert loaded.entries == chain.entries
    report = verify_execution(kube, namespace, lid.name, uid=lid.uid)
    assert report.ok, report.headline()


def test_default_segments_roll_before_the_apiserver_limit(kube: Kube, namespace: str) -> None:
    """~2 MB of entries with the default limit: segments the apiserver accepts (< 1 MiB)."""
    lid = _lid(namespace)
    chain = chain_of(2_400, pad=400, lid=lid)
    store = _store(kube, lid)
    for lo in range(0, 2_400, 800):
        store.append(chain.entries[: lo + 800])
    cms = _segments(kube, lid)
    sizes = [sum(len(k) + len(v.encode()) for k, v in cm["data"].items()) for cm in cms]
    assert len(cms) >= 2 and max(sizes) <= SEGMENT_MAX_BYTES
    assert _store(kube, lid).load().entries == chain.entries


def test_a_concurrent_writer_gets_conflict_and_retry_loses_nothing(
    kube: Kube, namespace: str
) -> None:
    lid = _lid(namespace)
    chain = chain_of(12, lid=lid)
    a, b = _store(kube, lid), _store(kube, lid)
    a.load(), b.load()
    a.append(chain.entries[:5])
    with pytest.raises(Conflict):
        b.append(chain.entries[:7])
    b.load()
    b.append(chain.entries[:7])
    assert [e["seq"] for e in _store(kube, lid).load().entries] == list(range(7))


def test_racing_writers_in_threads_end_with_exactly_the_chain(kube: Kube, namespace: str) -> None:
    """Four writers replay the same chain at once (at-least-once delivery, two operator pods),
    rolling segments as they go; each reloads and retries on Conflict."""
    lid = _lid(namespace)
    chain = chain_of(120, pad=150, lid=lid)
    conflicts = []

    def writer(step: int) -> None:
        store = _store(kube, lid, max_bytes=8_000)
        done = 0
        while done < len(chain.entries):
            upto = min(len(chain.entries), done + step)
            try:
                store.append(chain.entries[:upto])
                done = upto
            except Conflict:
                conflicts.append(step)
                store.load()

    threads = [threading.Thread(target=writer, args=(s,)) for s in (3, 5, 7, 11)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    entries = _store(kube, lid).load().entries
    assert entries == chain.entries
    assert verify(entries, execution_id=lid.execution_id).valid
    assert conflicts, "the writers never collided: the test did not test anything"


def test_sealed_segments_are_immutable_on_the_apiserver(kube: Kube, namespace: str) -> None:
    lid = _lid(namespace)
    store = _store(kube, lid, max_bytes=4_000)
    store.append(chain_of(30, pad=100, lid=lid).entries)
    sealed = _segments(kube, lid)[0]
    assert sealed["immutable"] is True
    sealed["data"][ENTRIES_KEY] = sealed["data"][ENTRIES_KEY].replace("s1", "s9")
    with pytest.raises(Invalid):
        kube.replace(CONFIGMAPS, namespace, sealed["metadata"]["name"], sealed)
    with pytest.raises(Invalid):
        kube.patch(CONFIGMAPS, namespace, sealed["metadata"]["name"], {"data": {ENTRIES_KEY: ""}})
    with pytest.raises(Invalid):
        kube.patch(CONFIGMAPS, namespace, sealed["metadata"]["name"], {"immutable": False})


def _anchor(namespace: str) -> KeyAnchor:
    """Where `_signed_ledger` publishes its key: named explicitly (as `--key-namespace` does),
    so these tests need no anchor on the shared CRD (tests/e2e/test_trust_anchor.py has that)."""
    return KeyAnchor(namespace, "ledger-key")


def _anchor_args(namespace: str) -> tuple[str, ...]:
    return ("--key-namespace", namespace, "--key-configmap", "ledger-key")


def _signed_ledger(
    kube: Kube, namespace: str, n: int = 20
) -> tuple[ExecutionRef, Signer, AuditChain]:
    lid = _lid(namespace, f"tamper-{uuid.uuid4().hex[:6]}")
    signer = Signer.generate(KeyRef(namespace, "ledger-key"))
    publish_public_key(kube, namespace, "ledger-key", signer)
    chain = chain_of(n, pad=100, lid=lid)
    cp = _store(kube, lid, max_bytes=3_000).write_checkpoint(chain, signer, NOW)
    assert cp["count"] == n and cp["head"] == chain.head
    return lid, signer, chain


def _ctl(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if cluster.kubeconfig:
        env["KUBECONFIG"] = cluster.kubeconfig
    return subprocess.run(
        [sys.executable, "-m", "runbookctl.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_verify_without_the_execution_object(cluster: Cluster, kube: Kube, namespace: str) -> None:
    lid, _, chain = _signed_ledger(kube, namespace)
    report = verify_execution(
        kube, namespace, lid.name, require_checkpoint=True, key_anchor=_anchor(namespace)
    )
    assert report.ok, report.headline()
    assert report.checkpoint is not None and report.checkpoint["count"] == len(chain.entries)
    assert not report.status_checked
    proc = _ctl(
        cluster,
        "verify",
        lid.name,
        "-n",
        namespace,
        "--require-checkpoint",
        *_anchor_args(namespace),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"OK {lid.execution_id}: 20 entries")
    logs = _ctl(cluster, "logs", lid.name, "-n", namespace, "-o", "json")
    assert json.loads(logs.stdout) == chain.entries


def _edit_second_line(cm: dict[str, Any]) -> int:
    """Change the actor of the segment's second entry; returns that entry's seq."""
    lines = cm["data"][ENTRIES_KEY].splitlines()
    entry = json.loads(lines[1])
    entry["actorId"] = "someone-else"
    lines[1] = json.dumps(entry)
    cm["data"][ENTRIES_KEY] = "\n".join(lines) + "\n"
    return int(entry["seq"])


def test_a_tampered_open_segment_is_caught_naming_the_entry(
    cluster: Cluster, kube: Kube, namespace: str
) -> None:
    lid, _, _ = _signed_ledger(kube, namespace)
    more = chain_of(23, pad=100, lid=lid).entries  # three entries after the checkpoint
    _store(kube, lid, max_bytes=20_000).append(more)
    open_segment = _segments(kube, lid)[-1]
    assert "immutable" not in open_segment
    seq = _edit_second_line(open_segment)
    kube.replace(CONFIGMAPS, namespace, open_segment["metadata"]["name"], open_segment)
    report = verify_execution(kube, namespace, lid.name, key_anchor=_anchor(namespace))
    name = open_segment["metadata"]["name"]
    assert report.headline().startswith(f"TAMPERED at entry {seq} (segment {name}, line 2)")
    proc = _ctl(cluster, "verify", lid.name, "-n", namespace, *_anchor_args(namespace))
    assert proc.returncode == 1
    assert f"TAMPERED at entry {seq} (segment {name}, line 2)" in proc.stdout


def test_a_sealed_segment_recreated_with_an_edit_is_caught(
    cluster: Cluster, kube: Kube, namespace: str
) -> None:
    """A sealed segment cannot be edited, only deleted and created again: both the edited
    entry and the changed uid (recorded by the next segment) give it away."""
    lid, _, _ = _signed_ledger(kube, namespace)
    sealed = _segments(kube, lid)[0]
    name = sealed["metadata"]["name"]
    seq = _edit_second_line(sealed)
    kube.delete(CONFIGMAPS, namespace, name)
    forged = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": sealed["metadata"]["labels"]},
        "data": sealed["data"],
        "immutable": True,
    }
    kube.create(CONFIGMAPS, namespace, forged)
    report = verify_execution(kube, namespace, lid.name, key_anchor=_anchor(namespace))
    assert report.headline().startswith(f"TAMPERED at entry {seq} (segment {name}, line 2)")
    assert any("uid" in p.reason for p in report.problems[1:])
    proc = _ctl(cluster, "verify", lid.name, "-n", namespace, *_anchor_args(namespace))
    assert proc.returncode == 1 and f"TAMPERED at entry {seq} (segment {name}" in proc.stdout


def test_a_deleted_tail_is_caught_by_the_checkpoint(kube: Kube, namespace: str) -> None:
    lid, _, _ = _signed_ledger(kube, namespace)
    cms = _segments(kube, lid)
    keep_checkpoint = cms[-1]  # the open segment holds the checkpoint: cut the entries before
    victim = next(cm for cm in reversed(cms[:-1]) if cm["data"][ENTRIES_KEY])
    kube.delete(CONFIGMAPS, namespace, victim["metadata"]["name"])
    report = verify_execution(kube, namespace, lid.name, key_anchor=_anchor(namespace))
    assert not report.ok, keep_checkpoint["metadata"]["name"]


def test_find_ledgers_when_the_name_was_reused(kube: Kube, namespace: str) -> None:
    first, second = _lid(namespace, "reused"), _lid(namespace, "reused")
    _store(kube, first).append(chain_of(2, lid=first).entries)
    _store(kube, second).append(chain_of(3, lid=second).entries)
    found = find_ledgers(kube, namespace, "reused")
    assert {f.lid.uid for f in found} == {first.uid, second.uid}
    assert verify_execution(kube, namespace, "reused", uid=first.uid).count == 2
    assert verify_execution(kube, namespace, "reused", uid=second.uid).count == 3


def test_publish_public_key_keeps_old_keys(kube: Kube, namespace: str) -> None:
    one, two = Signer.generate(), Signer.generate()
    publish_public_key(kube, namespace, "keys", one)
    assert one.key_ref == KeyRef(namespace, "keys")  # checkpoints now point verifiers here
    publish_public_key(kube, namespace, "keys", one)  # unchanged: no write needed
    publish_public_key(kube, namespace, "keys", two)
    data = kube.get(CONFIGMAPS, namespace, "keys")["data"]
    assert data["keyId"] == two.key_id
    assert {f"{one.key_id}.pem", f"{two.key_id}.pem"} <= set(data)
