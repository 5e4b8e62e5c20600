"""Where `verify` may take the ledger's public key from: the trust anchor (pure).

A checkpoint is only as good as the key it is checked with. The key must come from a place a
tenant cannot write, and that place must be found through something a tenant cannot write
either: never from `keyRef` inside the checkpoint (it lives in the ledger) nor from a label
search (anyone may label a ConfigMap in their own namespace).

The anchor is an annotation on the RunbookExecution CRD object, which only cluster admins (and
the operator, through one `get,patch` rule on that object) may change. Each operator installation
writes one annotation, keyed by its own namespace, so several installations (or test operators)
never overwrite each other:

    ledger-key.runbook-operator.dev/<operator namespace>:
        {"configMap": "runbook-operator-ledger-key", "watchNamespaces": ["team-a", "team-b"]}

An empty `watchNamespaces` means the whole cluster. An installation vouches only for the
namespaces it watches, so the key of a namespaced installation never verifies another team's
ledger. `runbookctl verify --key-namespace NS [--key-configmap NAME]` names an anchor
explicitly instead; `--public-key FILE` skips anchors altogether (docs/audit.md).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runbook_operator.apigroup import API_GROUP
from runbook_operator.config import DEFAULT_PUBLIC_KEY_CONFIGMAP

EXECUTIONS_CRD = f"runbookexecutions.{API_GROUP}"
"""The cluster-scoped object that carries the anchors."""
ANCHOR_PREFIX = f"ledger-key.{API_GROUP}/"
DEFAULT_KEY_CONFIGMAP = DEFAULT_PUBLIC_KEY_CONFIGMAP
MAX_ANCHORS = 256
"""Anchors read from the CRD at most (annotations are bounded to 256 KiB anyway)."""
MAX_ANCHOR_VALUE = 4096

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_NAMESPACE_GLOB = re.compile(r"^!?[-a-z0-9*?\[\]]{1,63}$")


class AnchorError(ValueError):
    """An anchor that cannot be used; the message names the field and why."""


@dataclass(frozen=True, slots=True)
class KeyAnchor:
    """A public-key ConfigMap verify trusts, and the namespaces whose ledgers it vouches for."""

    namespace: str
    configmap: str = DEFAULT_KEY_CONFIGMAP
    watch_namespaces: tuple[str, ...] = field(default=())
    """kopf namespace globs (`team-*`, `!team-x`); empty: every namespace."""

    def __post_init__(self) -> None:
        if not _DNS_LABEL.match(self.namespace):
            raise AnchorError(f"namespace: {self.namespace!r} is not a namespace name")
        if not _DNS_SUBDOMAIN.match(self.configmap):
            raise AnchorError(f"configMap: {self.configmap!r} is not a ConfigMap name")
        for pattern in self.watch_namespaces:
            if not isinstance(pattern, str) or not _NAMESPACE_GLOB.match(pattern):
                raise AnchorError(f"watchNamespaces: {pattern!r} is not a namespace glob")

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.configmap}"

    def covers(self, namespace: str) -> bool:
        """Whether this installation watches `namespace` (kopf's rule: each pattern is a glob,
        `!glob` matches every namespace but those)."""
        if not self.watch_namespaces:
            return True
        for pattern in self.watch_namespaces:
            if pattern.startswith("!"):
                if not fnmatch.fnmatchcase(namespace, pattern[1:]):
                    return True
            elif fnmatch.fnmatchcase(namespace, pattern):
                return True
        return False


def annotation_key(operator_namespace: str) -> str:
    return f"{ANCHOR_PREFIX}{operator_namespace}"


def anchor_value(anchor: KeyAnchor) -> str:
    return json.dumps(
        {"configMap": anchor.configmap, "watchNamespaces": list(anchor.watch_namespaces)},
        separators=(",", ":"),
    )


def anchor_patch(anchor: KeyAnchor) -> dict[str, Any]:
    """The merge patch of the CRD object that publishes `anchor`. A merge patch of one
    annotation key touches nothing else, so installations publishing at once never collide."""
    return {"metadata": {"annotations": {annotation_key(anchor.namespace): anchor_value(anchor)}}}


def withdraw_patch(operator_namespaces: Iterable[str]) -> dict[str, Any]:
    """The merge patch that removes the anchors of these operator namespaces."""
    return {"metadata": {"annotations": {annotation_key(ns): None for ns in operator_namespaces}}}


def withdraw_if_unchanged(operator_namespace: str, value: str) -> list[dict[str, Any]]:
    """A JSON patch removing one anchor only if it still holds `value` (else the apiserver
    answers 422 and nothing changes): a re-published anchor is never removed by mistake."""
    path = "/metadata/annotations/" + annotation_key(operator_namespace).replace("~", "~0").replace(
        "/", "~1"
    )
    return [{"op": "test", "path": path, "value": value}, {"op": "remove", "path": path}]


def parse_anchor(key: str, value: Any) -> KeyAnchor:
    """The anchor an annotation describes; AnchorError naming the annotation otherwise."""
    namespace = key.removeprefix(ANCHOR_PREFIX)
    try:
        if not isinstance(value, str) or len(value) > MAX_ANCHOR_VALUE:
            raise AnchorError(f"expected a JSON object of at most {MAX_ANCHOR_VALUE} characters")
        try:
            data = json.loads(value)
        except ValueError as exc:
            raise AnchorError(f"not JSON ({exc})") from None
        if not isinstance(data, Mapping):
            raise AnchorError("expected a JSON object")
        watch = data.get("watchNamespaces", [])
        if not isinstance(watch, list):
            raise AnchorError("watchNamespaces: expected a list")
        return KeyAnchor(namespace, str(data.get("configMap", "")), tuple(watch))
    except AnchorError as exc:
        raise AnchorError(f"annotation {key}: {exc}") from None


def anchors_of(crd: Mapping[str, Any]) -> tuple[list[KeyAnchor], list[str]]:
    """Every anchor annotated on the CRD object, and why any annotation was skipped."""
    annotations = (crd.get("metadata") or {}).get("annotations") or {}
    anchors: list[KeyAnchor] = []
    skipped: list[str] = []
    for key in sorted(k for k in annotations if k.startswith(ANCHOR_PREFIX)):
        if len(anchors) >= MAX_ANCHORS:
            skipped.append(f"more than {MAX_ANCHORS} anchors: the rest ignored")
            break
        try:
            anchors.append(parse_anchor(key, annotations[key]))
        except AnchorError as exc:
            skipped.append(str(exc))
    return anchors, skipped


def anchors_for(anchors: Sequence[KeyAnchor], namespace: str) -> list[KeyAnchor]:
    """The anchors that vouch for ledgers in `namespace`."""
    return [a for a in anchors if a.covers(namespace)]


HOW_TO_PASS = (
    "pass the operator's namespace with --key-namespace NS (and --key-configmap NAME if the "
    "chart's signing.publicKeyConfigMap was changed), or a public key you kept with "
    "--public-key FILE"
)


def no_anchor_message(namespace: str, reason: str) -> str:
    """What verify says when it has no trusted place to take the key from."""
    return (
        f"no trust anchor for the ledger's public key in namespace {namespace!r}: {reason}; "
        f"{HOW_TO_PASS}"
    )
