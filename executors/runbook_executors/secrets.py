"""Secret references in step config, resolved at run time and scrubbed from results.

A runbook must never carry a credential in clear: it is stored in a CRD, shown by `kubectl`, and
copied into the audit ledger. Instead a config value names where the secret lives::

    {"secretFrom": {"env": "SLACK_TOKEN"}}        # an environment variable of the step's pod
    {"secretFrom": {"file": "/var/run/secrets/x"}} # a mounted file (one trailing newline dropped)

`SecretResolver.resolve` replaces every such reference (at any depth) with its value and
remembers the values, so `SecretResolver.redact` can scrub them from anything the step returns.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SECRET_KEY = "secretFrom"
"""The single key of a secret reference object."""

REDACTED = "[redacted]"
"""What replaces a secret value in scrubbed output."""


class SecretError(ValueError):
    """A secret (or `...From` source) cannot be resolved; the message names the field, never a value."""


def read_source(spec: object, *, where: str) -> str:
    """Read a `{env: NAME}` or `{file: PATH}` source; `where` names the config field for errors.

    Shared by `secretFrom` and by plain `...From` fields (e.g. NOTIFY's `urlFrom`).
    """
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise SecretError(f"{where}: expected exactly one of {{env: NAME}} or {{file: PATH}}")
    ((kind, name),) = spec.items()
    if not isinstance(name, str) or not name:
        raise SecretError(f"{where}.{kind}: expected a non-empty string")
    if kind == "env":
        value = os.environ.get(name)
        if value is None:
            raise SecretError(f"{where}: environment variable {name} is not set")
        return value
    if kind == "file":
        try:
            text = Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise SecretError(f"{where}: cannot read file {name}: {exc.strerror or exc}") from None
        # Files written by `echo` end with a newline that is never part of the secret.
        if text.endswith("\r\n"):
            return text[:-2]
        return text.removesuffix("\n")
    raise SecretError(f"{where}: unknown source {kind!r} (expected 'env' or 'file')")


def is_secret_ref(value: object) -> bool:
    """True for `{"secretFrom": {...}}` (exactly that one key)."""
    return isinstance(value, Mapping) and len(value) == 1 and SECRET_KEY in value


class SecretResolver:
    """Resolves secret references and remembers their values for redaction."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    @property
    def values(self) -> frozenset[str]:
        """Every secret value resolved so far (for callers that scrub text themselves)."""
        return frozenset(self._values)

    def add(self, value: str) -> None:
        """Treat `value` as secret too (e.g. a URL read from a `urlFrom` source)."""
        if value:
            self._values.add(value)

    def resolve(self, value: Any, *, where: str = "config") -> Any:
        """A deep copy of `value` with every secret reference replaced by the secret's value."""
        if is_secret_ref(value):
            secret = read_source(value[SECRET_KEY], where=f"{where}.{SECRET_KEY}")
            self.add(secret)
            return secret
        if isinstance(value, Mapping):
            return {k: self.resolve(v, where=f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.resolve(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    def redact(self, value: Any) -> Any:
        """A deep copy of `value` where every occurrence of a resolved secret is replaced."""
        return redact(value, self._values)


def redact(value: Any, secrets: Iterable[str], placeholder: str = REDACTED) -> Any:
    """Replace every occurrence of each secret in the strings (keys and values) of `value`."""
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not ordered:
        return value

    def scrub(obj: Any) -> Any:
        if isinstance(obj, str):
            for secret in ordered:
                if secret in obj:
                    obj = obj.replace(secret, placeholder)
            return obj
        if isinstance(obj, Mapping):
            return {scrub(k): scrub(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [scrub(v) for v in obj]
        return obj

    return scrub(value)
