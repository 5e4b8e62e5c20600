"""An in-memory API server behind `runbook_operator.kube.Kube`, for the Controller's unit tests.

It serves the verbs the controller, `kube.write_status` and `LedgerStore` use, with the rules
they rely on: AlreadyExists on create, a resourceVersion guard on replace and on a merge patch
that carries `metadata.resourceVersion` (Conflict), status written only through the `status`
subresource, NotFound on delete treated as success, an immutable ConfigMap's data refused.
resourceVersions are increasing integers; every call is recorded in order, with the body it sent.

Faults are injected by rule, counted from the moment the rule is added:
- `fail(verb, resource, nth)`: that call raises (Conflict unless told otherwise) and changes
  nothing; `times=None` keeps failing every matching call from then on;
- `meanwhile(verb, resource, action, nth)`: `action` (a concurrent writer) runs just before it;
- `crash_before_write(n)` / `crash_after_write(n)`: the operator process dies at its n-th write
  (`Crash`), before the write reaches the server or after it did but before the answer came
  back. Until `revive()` every call raises `Crash` too: a dead process does nothing more.

Not modelled: watches with latency (`watchers` get Job and pod changes at once), field
selectors, generateName, JSON patch, admission, garbage collection through ownerReferences.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runbook_operator import kube as k

from .kubefakes import job_uid

WRITE_VERBS = frozenset({"create", "replace", "patch", "delete"})
WITH_STATUS_SUBRESOURCE = frozenset(
    {k.EXECUTIONS.plural, k.RUNBOOKS.plural, k.JOBS.plural, k.PODS.plural}
)
"""Kinds whose status is written only through `/status` (a main-resource write keeps it)."""
CREATED_AT = "2026-01-01T00:00:00Z"
WATCHED = {k.JOBS.plural: "job", k.PODS.plural: "pod"}

Watcher = Callable[[str, str, Mapping[str, Any]], object]
"""(kind "job"|"pod", event type, object): what a watch stream delivers (ChildCache.observe)."""


class Crash(BaseException):
    """The operator process died here. A BaseException, so the controller's `except Exception`
    (which reports a failed reconcile) cannot catch it, as nothing catches a SIGKILL."""


def _uid_for(res: k.Resource, name: str, serial: int) -> str:
    """Jobs get the uid kubefakes.job_uid names, so the pods a test makes can point at them."""
    return job_uid(name) if res.plural == "jobs" else f"{res.plural}-uid-{serial}"


@dataclass(frozen=True, slots=True)
class Call:
    """One request as the server saw it."""

    seq: int
    verb: str
    resource: str
    namespace: str | None
    name: str | None
    subresource: str = ""
    selector: str | None = None
    body: Any = None
    outcome: str = "ok"
    """"ok", or the name of the error it raised ("Conflict", "AlreadyExists", "Crash", ...)."""
    applied: bool = False
    """A write that changed the stored objects (also true for one followed by a crash)."""

    @property
    def write(self) -> bool:
        return self.verb in WRITE_VERBS


Action = Callable[["FakeKube"], None]


@dataclass
class _Rule:
    verb: str
    resource: str
    nth: int
    times: int | None
    subresource: str | None
    name: Callable[[str | None], bool]
    error: k.KubeError | None = None
    action: Action | None = None
    seen: int = 0
    fired: int = 0

    def matches(self, verb: str, resource: str, subresource: str, name: str | None) -> bool:
        if verb != self.verb or resource != self.resource or not self.name(name):
            return False
        return self.subresource is None or subresource == self.subresource

    def due(self) -> bool:
        """Count this call; is it one the rule acts on?"""
        self.seen += 1
        if self.seen < self.nth or (self.times is not None and self.fired >= self.times):
            return False
        self.fired += 1
        return True


def _any_name(_: str | None) -> bool:
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def selected(labels: Mapping[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        key, sep, value = term.partition("=")
        if not sep or key.endswith("!") or value.startswith("="):
            raise ValueError(f"the fake serves key=value selectors only, not {term!r}")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


@dataclass
class FakeKube(k.Kube):
    """The objects of a few namespaces, kept as the API server keeps them. Thread-safe."""

    objects: dict[tuple[str, str | None, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    watchers: list[Watcher] = field(default_factory=list)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _uids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _rules: list[_Rule] = field(default_factory=list)
    _writes: int = 0
    _crash_at: tuple[int, bool] | None = None
    _dead: bool = False
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self.timeout = 0.0  # Kube.__init__ is not called: there is no API client

    def call(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        raise AssertionError(f"the fake serves the verbs, not raw requests ({method} {path})")

    # -- fault injection -----------------------------------------------------------------------
    def fail(
        self,
        verb: str,
        res: k.Resource,
        nth: int = 1,
        *,
        error: k.KubeError | None = None,
        times: int | None = 1,
        subresource: str | None = None,
        name: Callable[[str | None], bool] = _any_name,
    ) -> None:
        """From the `nth` matching call on, `times` of them (None: all) raise `error`."""
        error = error or k.Conflict(409, "Conflict", "injected: the object has been modified")
        self._rules.append(_Rule(verb, res.plural, nth, times, subresource, name, error=error))

    def meanwhile(
        self,
        verb: str,
        res: k.Resource,
        action: Action,
        nth: int = 1,
        *,
        subresource: str | None = None,
        name: Callable[[str | None], bool] = _any_name,
    ) -> None:
        """Run `action` (someone else writing) just before the `nth` matching call."""
        self._rules.append(_Rule(verb, res.plural, nth, 1, subresource, name, action=action))

    def crash_before_write(self, n: int) -> None:
        """The process dies as it sends its `n`-th write from now: the write never arrives."""
        self._crash_at = (self._writes + n, False)

    def crash_after_write(self, n: int) -> None:
        """The process dies right after its `n`-th write from now was stored."""
        self._crash_at = (self._writes + n, True)

    def revive(self) -> None:
        """A new operator process starts (the caller makes a new Controller)."""
        with self._lock:
            self._dead = False
            self._crash_at = None

    # -- direct access (the test, the kubelet, other clients: not recorded, never faulted) ------
    def put(self, res: k.Resource, namespace: str | None, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store `obj` as is (a new resourceVersion; uid and namespace filled in if missing)."""
        with self._lock:
            body = copy.deepcopy(dict(obj))
            meta = body.setdefault("metadata", {})
            key = (res.plural, namespace, str(meta["name"]))
            event = "MODIFIED" if key in self.objects else "ADDED"
            if namespace is not None:
                meta["namespace"] = namespace
            meta.setdefault("uid", _uid_for(res, str(meta["name"]), next(self._uids)))
            meta.setdefault("creationTimestamp", CREATED_AT)
            meta["resourceVersion"] = str(next(self._versions))
            self.objects[key] = body
            self._notify(res, event, body)
            return copy.deepcopy(body)

    def edit(
        self,
        res: k.Resource,
        namespace: str | None,
        name: str,
        change: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """Change a stored object in place through `change` (someone else's write)."""
        with self._lock:
            body = copy.deepcopy(self.objects[(res.plural, namespace, name)])
            before = copy.deepcopy(body.get("spec"))
            change(body)
            if "generation" in body["metadata"] and body.get("spec") != before:
                body["metadata"]["generation"] += 1
            return self.put(res, namespace, body)

    def stored(self, res: k.Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self.objects.get((res.plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def objects_of(self, res: k.Resource, namespace: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                copy.deepcopy(obj)
                for (plural, ns, _), obj in sorted(self.objects.items())
                if plural == res.plural and (namespace is None or ns == namespace)
            ]

    # -- what was asked ------------------------------------------------------------------------
    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.write]

    def created(self, res: k.Resource) -> list[str]:
        """Names of the objects of `res` that a create call made (a crash after it included)."""
        return [
            str(c.name)
            for c in self.calls
            if c.verb == "create" and c.resource == res.plural and c.applied
        ]

    def mark(self) -> int:
        """A position in `calls`, to look at what happened after it (`since`)."""
        return len(self.calls)

    def since(self, mark: int) -> list[Call]:
        return self.calls[mark:]

    # -- the verbs -----------------------------------------------------------------------------
    def get(self, res: k.Resource, namespace: str | None, name: str) -> dict[str, Any]:
        with self._lock:
            self._enter("get", res, namespace, name)
            obj = self.objects.get((res.plural, namespace, name))
            if obj is None:
                raise self._refuse(
                    "get",
                    res,
                    namespace,
                    name,
                    k.NotFound(404, "NotFound", f"{res.plural} {name!r} not found"),
                )
            self._record("get", res, namespace, name)
            return copy.deepcopy(obj)

    def list(
        self, res: k.Resource, namespace: str | None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            self._enter("list", res, namespace, None)
            items = [
                copy.deepcopy(obj)
                for (plural, ns, _), obj in sorted(self.objects.items())
                if plural == res.plural
                and (namespace is None or ns == namespace)
                and selected(obj["metadata"].get("labels") or {}, selector)
            ]
            self._record("list", res, namespace, None, selector=selector)
            return items

    def create(
        self, res: k.Resource, namespace: str | None, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        name = str(body["metadata"]["name"])
        with self._lock:
            self._enter("create", res, namespace, name, body)
            if (res.plural, namespace, name) in self.objects:
                error = k.AlreadyExists(
                    409, "AlreadyExists", f"{res.plural} {name!r} already exists"
                )
                raise self._refuse("create", res, namespace, name, error, body)
            obj = copy.deepcopy(dict(body))
            meta = obj["metadata"]
            meta.pop("resourceVersion", None)
            meta.pop("uid", None)
            if "spec" in obj:
                meta["generation"] = 1
            return self._store("create", res, namespace, name, obj, body)

    def replace(
        self, res: k.Resource, namespace: str | None, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        with self._lock:
            self._enter("replace", res, namespace, name, body)
            current = self._current("replace", res, namespace, name, body)
            if body["metadata"].get("name") != name:
                error = k.Invalid(422, "Invalid", "metadata.name: does not match the URL")
                raise self._refuse("replace", res, namespace, name, error, body)
            self._guard("replace", res, namespace, name, body, current)
            if current.get("immutable") and (
                body.get("data") != current.get("data") or not body.get("immutable")
            ):
                error = k.Invalid(
                    422, "Invalid", "data: field is immutable when `immutable` is set"
                )
                raise self._refuse("replace", res, namespace, name, error, body)
            obj = copy.deepcopy(dict(body))
            if res.plural in WITH_STATUS_SUBRESOURCE:
                obj["status"] = copy.deepcopy(current.get("status"))
            return self._store("replace", res, namespace, name, self._keep(current, obj), body)

    def patch(
        self,
        res: k.Resource,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str = "",
        content_type: str = k.MERGE_PATCH,
    ) -> dict[str, Any]:
        if content_type != k.MERGE_PATCH:
            raise AssertionError(f"the fake serves merge patches only, not {content_type}")
        with self._lock:
            self._enter("patch", res, namespace, name, body, subresource)
            current = self._current("patch", res, namespace, name, body, subresource)
            self._guard("patch", res, namespace, name, body, current, subresource)
            patch = copy.deepcopy(dict(body))
            (patch.get("metadata") or {}).pop("resourceVersion", None)
            if subresource == "status":
                obj = copy.deepcopy(current)
                obj["status"] = merge_patch(current.get("status") or {}, patch.get("status") or {})
            elif subresource:
                raise AssertionError(f"the fake has no subresource {subresource!r}")
            else:
                if res.plural in WITH_STATUS_SUBRESOURCE:
                    patch.pop("status", None)
                obj = self._keep(current, merge_patch(current, patch))
            return self._store("patch", res, namespace, name, obj, body, subresource)

    def delete(
        self,
        res: k.Resource,
        namespace: str | None,
        name: str,
        *,
        propagation: str = "Background",
        uid: str | None = None,
    ) -> None:
        with self._lock:
            self._enter("delete", res, namespace, name)
            key = (res.plural, namespace, name)
            current = self.objects.get(key)
            if current is None:  # Kube.delete: NotFound is success
                self._record("delete", res, namespace, name, outcome="NotFound")
                return
            if uid is not None and current["metadata"].get("uid") != uid:
                error = k.Conflict(409, "Conflict", "Precondition failed: UID in precondition")
                raise self._refuse("delete", res, namespace, name, error)
            if current["metadata"].get("finalizers"):
                marked = copy.deepcopy(current)
                marked["metadata"].setdefault("deletionTimestamp", CREATED_AT)
                self._store("delete", res, namespace, name, marked, None)
                return
            del self.objects[key]
            self._record("delete", res, namespace, name, applied=True)
            self._notify(res, "DELETED", current)
            self._after_write()

    # -- the server's rules --------------------------------------------------------------------
    def _enter(
        self,
        verb: str,
        res: k.Resource,
        namespace: str | None,
        name: str | None,
        body: Any = None,
        subresource: str = "",
    ) -> None:
        """Crash and fault rules that act before the call reaches the store."""
        if self._dead:
            raise Crash(f"the operator is dead ({verb} {res.plural}/{name})")
        for rule in list(self._rules):
            acts = rule.action is not None and rule.matches(verb, res.plural, subresource, name)
            if acts and rule.due() and rule.action is not None:
                rule.action(self)
        if verb in WRITE_VERBS:
            self._writes += 1
            if self._crash_at == (self._writes, False):
                self._dead = True
                self._record(verb, res, namespace, name, subresource, body=body, outcome="Crash")
                raise Crash(f"crash before write {self._writes}: {verb} {res.plural}/{name}")
        for rule in self._rules:
            refuses = rule.error is not None and rule.matches(verb, res.plural, subresource, name)
            if refuses and rule.due() and rule.error is not None:
                raise self._refuse(verb, res, namespace, name, rule.error, body, subresource)

    def _after_write(self) -> None:
        if self._crash_at == (self._writes, True):
            self._dead = True
            raise Crash(f"crash after write {self._writes}")

    def _refuse(
        self,
        verb: str,
        res: k.Resource,
        namespace: str | None,
        name: str | None,
        error: k.KubeError,
        body: Any = None,
        subresource: str = "",
    ) -> k.KubeError:
        self._record(
            verb, res, namespace, name, subresource, body=body, outcome=type(error).__name__
        )
        return type(error)(error.status, error.reason, error.message)

    def _current(
        self,
        verb: str,
        res: k.Resource,
        namespace: str | None,
        name: str,
        body: Any,
        subresource: str = "",
    ) -> dict[str, Any]:
        current = self.objects.get((res.plural, namespace, name))
        if current is None:
            error = k.NotFound(404, "NotFound", f"{res.plural} {name!r} not found")
            raise self._refuse(verb, res, namespace, name, error, body, subresource)
        return current

    def _guard(
        self,
        verb: str,
        res: k.Resource,
        namespace: str | None,
        name: str,
        body: Any,
        current: Mapping[str, Any],
        subresource: str = "",
    ) -> None:
        """A resourceVersion in the body must be the stored one."""
        wanted = ((body or {}).get("metadata") or {}).get("resourceVersion")
        if wanted is not None and str(wanted) != current["metadata"]["resourceVersion"]:
            error = k.Conflict(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {res.plural} {name!r}: the object has been "
                "modified; please apply your changes to the latest version and try again",
            )
            raise self._refuse(verb, res, namespace, name, error, body, subresource)

    @staticmethod
    def _keep(current: Mapping[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
        """What a write cannot change: uid, creation time; the generation moves with the spec."""
        meta = obj.setdefault("metadata", {})
        old = current["metadata"]
        for key in ("uid", "creationTimestamp", "deletionTimestamp", "namespace"):
            if key in old:
                meta[key] = old[key]
            else:
                meta.pop(key, None)
        if "generation" in old:
            changed = obj.get("spec") != current.get("spec")
            meta["generation"] = old["generation"] + (1 if changed else 0)
        return obj

    def _store(
        self,
        verb: str,
        res: k.Resource,
        namespace: str | None,
        name: str,
        obj: dict[str, Any],
        body: Any,
        subresource: str = "",
    ) -> dict[str, Any]:
        key = (res.plural, namespace, name)
        event = "MODIFIED" if key in self.objects else "ADDED"
        meta = obj["metadata"]
        if namespace is not None:
            meta["namespace"] = namespace
        meta.setdefault("uid", _uid_for(res, str(meta["name"]), next(self._uids)))
        meta.setdefault("creationTimestamp", CREATED_AT)
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[key] = obj
        self._record(verb, res, namespace, name, subresource, body=body, applied=True)
        self._notify(res, event, obj)
        self._after_write()
        return copy.deepcopy(obj)

    def _record(
        self,
        verb: str,
        res: k.Resource,
        namespace: str | None,
        name: str | None,
        subresource: str = "",
        *,
        selector: str | None = None,
        body: Any = None,
        outcome: str = "ok",
        applied: bool = False,
    ) -> None:
        self.calls.append(
            Call(
                seq=len(self.calls),
                verb=verb,
                resource=res.plural,
                namespace=namespace,
                name=name,
                subresource=subresource,
                selector=selector,
                body=copy.deepcopy(body),
                outcome=outcome,
                applied=applied,
            )
        )

    def _notify(self, res: k.Resource, event: str, obj: Mapping[str, Any]) -> None:
        kind = WATCHED.get(res.plural)
        if kind is None:
            return
        for watcher in list(self.watchers):
            watcher(kind, event, copy.deepcopy(obj))
