"""Signed checkpoints: sign, verify, and fail on every corrupted field, key and signature."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runbook_operator.ledger.checkpoint import (
    CHECKPOINT_TYPE,
    KEY_ID_DATA,
    PUBLIC_PEM_DATA,
    KeyRef,
    Signer,
    SigningKeyError,
    checkpoint_problem,
    key_id_of,
    load_public_pem,
    make_checkpoint,
    public_key_configmap,
    published_key,
)

from .helpers import LID, T0

SIGNER = Signer.generate(KeyRef("runbook-system", "runbook-operator-ledger-key"))
KEY = load_public_pem(SIGNER.public_pem)


def _cp(**over: Any) -> dict[str, Any]:
    cp = make_checkpoint(
        execution_id=LID.execution_id, count=7, head="a" * 64, now=T0, signer=SIGNER
    )
    cp.update(over)
    return cp


def test_a_checkpoint_verifies_with_its_key() -> None:
    cp = _cp()
    assert (
        cp["type"] == CHECKPOINT_TYPE and cp["count"] == 7 and cp["time"].startswith("2026-01-15")
    )
    assert cp["keyId"] == SIGNER.key_id == key_id_of(KEY)
    assert cp["keyRef"] == {"namespace": "runbook-system", "name": "runbook-operator-ledger-key"}
    assert checkpoint_problem(cp, KEY, execution_id=LID.execution_id) is None


def test_key_order_and_whitespace_do_not_matter() -> None:
    cp = _cp()
    shuffled = json.loads(json.dumps(dict(reversed(list(cp.items()))), indent=4))
    assert checkpoint_problem(shuffled, KEY) is None


def _mutations(cp: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every field changed, dropped, or retyped; a field added; the key ref redirected."""
    out: list[tuple[str, dict[str, Any]]] = []
    for field, value in cp.items():
        if isinstance(value, str):
            flipped = value[:-1] + ("A" if value[-1] != "A" else "B")
            changes: list[Any] = [flipped, value + " ", None, 0]
        elif isinstance(value, int):
            changes = [value + 1, value - 1, str(value), True, None, -1]
        else:
            changes = [{**value, "name": "other"}, None, "x"]
        for change in changes:
            bad = copy.deepcopy(cp)
            bad[field] = change
            out.append((f"{field}={change!r}", bad))
        dropped = copy.deepcopy(cp)
        del dropped[field]
        out.append((f"drop {field}", dropped))
    out.append(("extra field", {**cp, "note": "hi"}))
    return out


@pytest.mark.parametrize("name_bad", _mutations(_cp()), ids=lambda nb: nb[0])
def test_every_corrupted_field_is_caught(name_bad: tuple[str, dict[str, Any]]) -> None:
    _, bad = name_bad
    assert checkpoint_problem(bad, KEY) is not None


def test_every_signature_byte_matters() -> None:
    import base64

    cp = _cp()
    raw = base64.b64decode(cp["signature"])
    for i in range(len(raw)):
        sig = bytearray(raw)
        sig[i] ^= 0x01
        bad = {**cp, "signature": base64.b64encode(bytes(sig)).decode()}
        assert checkpoint_problem(bad, KEY) is not None, i
    assert checkpoint_problem({**cp, "signature": "not base64!"}, KEY) is not None
    assert checkpoint_problem({**cp, "signature": ""}, KEY) is not None


def test_another_key_or_another_chain_fails() -> None:
    other = Signer.generate()
    cp = _cp()
    assert "keyId" in str(checkpoint_problem(cp, load_public_pem(other.public_pem)))
    # A signature by another key with this key's id claimed in the body.
    forged = make_checkpoint(
        execution_id=LID.execution_id, count=7, head="a" * 64, now=T0, signer=other
    )
    forged["keyId"] = SIGNER.key_id
    assert "signature" in str(checkpoint_problem(forged, KEY))
    assert "not this chain" in str(checkpoint_problem(cp, KEY, execution_id="ns/other/12345678"))
    assert checkpoint_problem("not a dict", KEY) == "not a JSON object"


def test_signer_from_pem_file(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(SIGNER.private_pem())
    loaded = Signer.from_pem_file(path)
    assert loaded.key_id == SIGNER.key_id and loaded.public_pem == SIGNER.public_pem
    with pytest.raises(SigningKeyError, match="No such file"):
        Signer.from_pem_file(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(SigningKeyError, match="not an unencrypted PEM"):
        Signer.from_pem_file(tmp_path / "junk.pem")
    with pytest.raises(SigningKeyError, match=r"not an Ed25519 public key|not a PEM"):
        load_public_pem("junk")


def test_a_missing_key_is_generated_and_an_unusable_one_is_an_error(tmp_path: Path) -> None:
    """The operator used to catch FileNotFoundError, which from_pem_file never raises: with no
    key mounted its start-up failed every 60 s while its liveness endpoint answered."""
    path = tmp_path / "key.pem"
    generated, mounted = Signer.mounted_or_generated(path)
    assert not mounted and generated.key_id != SIGNER.key_id
    path.write_bytes(SIGNER.private_pem())
    loaded, mounted = Signer.mounted_or_generated(path)
    assert mounted and loaded.key_id == SIGNER.key_id
    path.write_text("junk")
    with pytest.raises(SigningKeyError, match="not an unencrypted PEM"):
        Signer.mounted_or_generated(path)


def test_the_operator_refuses_an_unusable_key_at_start_naming_the_setting(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text("junk")
    env = {**os.environ, "RUNBOOK_SIGNING_KEY_FILE": str(tmp_path / "key.pem")}
    run = subprocess.run(
        [sys.executable, "-m", "runbook_operator"], env=env, capture_output=True, text=True
    )
    assert run.returncode == 2
    assert "RUNBOOK_SIGNING_KEY_FILE" in run.stderr and "not an unencrypted PEM" in run.stderr


def test_public_key_configmap_keeps_rotated_keys() -> None:
    first = public_key_configmap("k", "ops", SIGNER)
    assert first["metadata"]["namespace"] == "ops"
    assert first["data"][KEY_ID_DATA] == SIGNER.key_id
    assert first["data"][PUBLIC_PEM_DATA] == SIGNER.public_pem
    rotated = Signer.generate()
    second = public_key_configmap("k", "ops", rotated, first["data"])
    assert second["data"][KEY_ID_DATA] == rotated.key_id
    assert published_key(second["data"], SIGNER.key_id) is not None
    assert published_key(second["data"], rotated.key_id) is not None
    # A key filed under another key's id is not that key.
    swapped = {f"{SIGNER.key_id}.pem": rotated.public_pem}
    assert published_key(swapped, SIGNER.key_id) is None
    assert published_key({}, SIGNER.key_id) is None
