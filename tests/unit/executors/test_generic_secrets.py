"""Secret references: resolution from env and files, error messages, and redaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runbook_executors.secrets import (
    REDACTED,
    SecretError,
    SecretResolver,
    env_secrets,
    is_secret_ref,
    read_source,
    redact,
)


def test_resolve_env_and_file_at_any_depth(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("API_KEY_T", "k-123456")
    (tmp_path / "pw").write_text("p@ss-word\r\n")
    resolver = SecretResolver()
    resolved = resolver.resolve(
        {
            "headers": {"X-Key": {"secretFrom": {"env": "API_KEY_T"}}},
            "list": [1, {"secretFrom": {"file": str(tmp_path / "pw")}}],
            "plain": {"secretFrom": "not-a-ref", "other": 1},  # two keys: not a reference
        }
    )
    assert resolved == {
        "headers": {"X-Key": "k-123456"},
        "list": [1, "p@ss-word"],
        "plain": {"secretFrom": "not-a-ref", "other": 1},
    }
    assert resolver.values == {"k-123456", "p@ss-word"}


def test_file_keeps_inner_newlines_drops_one_trailing(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("line1\nline2\n\n")
    assert read_source({"file": str(tmp_path / "s")}, where="x") == "line1\nline2\n"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"env": "NOPE_SECRET_VAR_Z"}, "cfg: environment variable NOPE_SECRET_VAR_Z is not set"),
        ({"file": "/nonexistent/secret"}, "cfg: cannot read file /nonexistent/secret: "),
        ({"vault": "x"}, "cfg: unknown source 'vault'"),
        ({"env": ""}, "cfg.env: expected a non-empty string"),
        ({"env": "A", "file": "B"}, "cfg: expected exactly one of"),
        ("ENV", "cfg: expected exactly one of"),
    ],
)
def test_source_errors_name_the_field(
    monkeypatch: pytest.MonkeyPatch, spec: Any, message: Any
) -> None:
    monkeypatch.delenv("NOPE_SECRET_VAR_Z", raising=False)
    with pytest.raises(SecretError) as info:
        read_source(spec, where="cfg")
    assert str(info.value).startswith(message)


def test_resolve_error_path_includes_list_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISSING_Q", raising=False)
    with pytest.raises(SecretError, match=r"^config\.a\[1\]\.secretFrom: environment variable"):
        SecretResolver().resolve({"a": [0, {"secretFrom": {"env": "MISSING_Q"}}]})


def test_is_secret_ref() -> None:
    assert is_secret_ref({"secretFrom": {"env": "X"}})
    assert not is_secret_ref({"secretFrom": {"env": "X"}, "x": 1})
    assert not is_secret_ref("secretFrom")


def test_redact_scrubs_keys_values_and_longest_first() -> None:
    data = {"k-abc": ["has k-abcdef inside", 5, None], "ok": "k-ab"}
    out = redact(data, ["k-abc", "k-abcdef"])
    assert out == {REDACTED: [f"has {REDACTED} inside", 5, None], "ok": "k-ab"}


def test_redact_without_secrets_is_identity() -> None:
    data = {"a": "b"}
    assert redact(data, []) is data
    assert redact(data, [""]) is data


# Keys are redacted too (a secret inside "nested" rewrites that key), so the property below
# draws secrets that do not occur in its own key names.
secret_text = st.text(min_size=1, max_size=12).filter(
    lambda s: s not in REDACTED and not any(s in key for key in ("msg", "nested", "k"))
)


@given(secret=secret_text, before=st.text(max_size=10), after=st.text(max_size=10))
def test_redacted_json_never_contains_the_secret(secret: Any, before: Any, after: Any) -> None:
    resolver = SecretResolver()
    resolver.add(secret)
    value = {"msg": before + secret + after, "nested": [secret, {"k": secret * 2}]}
    scrubbed = resolver.redact(value)
    for text in strings_in(scrubbed):
        # whatever survives between placeholders is original text free of the secret
        assert all(secret not in piece for piece in text.split(REDACTED))
    assert scrubbed["nested"][0] == REDACTED
    assert scrubbed["nested"][1]["k"] == REDACTED * 2


def strings_in(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings_in(k), *strings_in(v))]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


def test_env_secrets_are_the_set_values_of_the_named_variables_with_their_url_parts() -> None:
    environ = {"A": "token-1234", "B": "https://h.example/p/long-secret-path?k=v-value", "C": ""}
    found = env_secrets(["A", "B", "C", "UNSET"], environ)
    assert "token-1234" in found and environ["B"] in found
    assert "long-secret-path" in found and "v-value" in found
    assert "" not in found
    assert env_secrets([], environ) == set()
