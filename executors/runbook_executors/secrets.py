"""Secret references in step config, resolved at run time and scrubbed from results.

A runbook must never carry a credential in clear: it is stored in a CRD, shown by `kubectl`, and
copied into the audit ledger. Instead a config value names where the secret lives::

    {"secretFrom": {"env": "SLACK_TOKEN"}}        # an environment variable of the step
    {"secretFrom": {"file": "/var/run/secrets/x"}} # a file (one trailing newline dropped)

On a cluster the variable comes from a Secret of the execution's namespace: the step's
`container.env` entry `{name: SLACK_TOKEN, valueFrom: {secretKeyRef: {name, key}}}` (or
`container.envFrom`) makes the kubelet inject it, so only the reference is ever stored.
Locally the step inherits runbookctl's environment.

`SecretResolver.resolve` replaces every such reference (at any depth) with its value and
remembers the values, so `SecretResolver.redact` can scrub them from anything the step returns.

Every value read from a source during an attempt is also remembered for that attempt (with the
parts of a URL that can leak on their own: a malformed URL's error quotes its path, query or
port), and `base.invoke` scrubs all of them from the attempt's result (`scrub_result`),
whatever the executor or the exception message.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runbook_engine.contract import StepExecutorResult

SECRET_KEY = "secretFrom"
"""The single key of a secret reference object."""

REDACTED = "[redacted]"
"""What replaces a secret value in scrubbed output."""


ENV_HINT = (
    " (on a cluster a step gets it from a Secret through container.env[].valueFrom."
    "secretKeyRef or container.envFrom; locally, export it before runbookctl run)"
)
"""Added to 'variable not set': where such a variable comes from (docs/executors.md#secrets)."""

MIN_PART_CHARS = 4
"""URL parts shorter than this are not redacted on their own (they would blank common words)."""
MAX_SECRET_FILE_BYTES = 1024 * 1024
"""A secret file larger than this is refused (a secret is a token or a key, not a data set)."""

_ATTEMPT_SECRETS: ContextVar[set[str] | None] = ContextVar("attempt_secrets", default=None)
"""Secret values (and URL parts) read during the current attempt (see `attempt_scope`)."""

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_QUERY_SPLIT = re.compile(r"[&;]")


def url_parts(value: str) -> set[str]:
    """Parts of a URL that may leak without the rest: userinfo, a non-numeric port, the whole
    path/query/fragment, each query value and each long path segment. Parsed by hand, because
    a malformed URL (the case that leaks) is what `urlsplit` chokes on."""
    match = _SCHEME.match(value)
    if match is None:
        return set()
    rest = value[match.end() :]
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    parts = {tail, tail.lstrip("/")}
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        parts.update({userinfo, *userinfo.split(":")})
    port = hostport.rpartition("]")[2].rpartition(":")[2] if ":" in hostport else ""
    if port and not port.isdigit():
        parts.add(port)
    path, _, query = tail.partition("?")
    query, _, fragment = query.partition("#")
    parts.update({query, fragment, *(s for s in path.split("/") if len(s) >= 8)})
    for pair in _QUERY_SPLIT.split(query):
        parts.add(pair.partition("=")[2])
    return {p for p in parts if len(p) >= MIN_PART_CHARS}


def remember(value: str) -> None:
    """Treat `value` (and its URL parts) as secret in the current attempt's result."""
    found = _ATTEMPT_SECRETS.get()
    if found is not None and value:
        found.add(value)
        found.update(url_parts(value))


@contextlib.contextmanager
def attempt_scope() -> Iterator[set[str]]:
    """Collect every secret read while the block runs (per task: concurrent inline attempts
    do not see each other's secrets)."""
    found: set[str] = set()
    token = _ATTEMPT_SECRETS.set(found)
    try:
        yield found
    finally:
        _ATTEMPT_SECRETS.reset(token)


def scrub_result(result: StepExecutorResult, secrets: Iterable[str]) -> StepExecutorResult:
    """`result` with every secret replaced (error, output, KPIs, evidence, citations); the
    same object when there is nothing to scrub."""
    secrets = frozenset(secrets)
    if not secrets:
        return result
    wire = result.model_dump(mode="json", by_alias=True)
    scrubbed = redact(wire, secrets)
    if scrubbed == wire:
        return result
    return type(result).model_validate(scrubbed)


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
            raise SecretError(f"{where}: environment variable {name} is not set{ENV_HINT}")
        remember(value)
        return value
    if kind == "file":
        value = _read_secret_file(name, where)
        remember(value)
        return value
    raise SecretError(f"{where}: unknown source {kind!r} (expected 'env' or 'file')")


def _read_secret_file(name: str, where: str) -> str:
    try:
        with Path(name).open("rb") as handle:
            data = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise SecretError(f"{where}: cannot read file {name}: {exc.strerror or exc}") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise SecretError(f"{where}: file {name} is larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"{where}: file {name} is not UTF-8 text") from None
    # Files written by `echo` end with a newline that is never part of the secret.
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")


def env_secrets(names: Iterable[str], environ: Mapping[str, str]) -> set[str]:
    """The values (with their URL parts) of the named variables that are set: a step's
    variables injected from Secrets (`container.env[].valueFrom.secretKeyRef`), to scrub from
    its result with `scrub_result` whatever the step did with them."""
    found: set[str] = set()
    for name in names:
        value = environ.get(name)
        if value:
            found.add(value)
            found.update(url_parts(value))
    return found


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
        """Treat `value` as secret too (e.g. a URL read from a `urlFrom` source), with its URL
        parts; also for the whole process (see `scrub_result`)."""
        if value:
            self._values.add(value)
            self._values.update(url_parts(value))
            remember(value)

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
