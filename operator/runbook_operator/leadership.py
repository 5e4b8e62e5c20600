"""Who may reconcile a scope: the decisions about the operator's Lease, pure (no API, no clock).

One operator leads a scope (the watched namespaces) at a time; every other one stands by. The
scope's Lease (coordination.k8s.io/v1) lives in the lease namespace, named by a hash of the
scope, and carries the scope in an annotation so that an operator with a different but
overlapping scope (a glob and an exact namespace, two overlapping lists) can tell too
(docs/operator.md, "One active operator per scope"). election.py does the I/O; everything it
decides comes from here, from plain dicts and the times it passes in.

Time. A foreign lease counts as expired when either clock says so:
- its renewTime + leaseDurationSeconds + the skew margin lies in the past by our wall clock
  (fast for a lease left by an operator long gone; safe while clocks differ by less than the
  margin), or
- the lease has not changed (same resourceVersion) for leaseDurationSeconds by our monotonic
  clock since we first saw that version (client-go's rule: safe whatever the clocks say).
The leader stops (exits) when it could not renew for leaseDurationSeconds - the skew margin,
counted on its monotonic clock from the moment it sent its last successful renewal: before any
other operator can consider the lease expired by either rule.
"""

from __future__ import annotations

import enum
import fnmatch
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from runbook_operator.apigroup import API_GROUP

LEASE_PREFIX = "runbook-operator-"
SCOPE_ANNOTATION = f"{API_GROUP}/scope"
LABELS = {
    "app.kubernetes.io/managed-by": "runbook-operator",
    "app.kubernetes.io/component": "leader-election",
}
SELECTOR = ",".join(f"{k}={v}" for k, v in LABELS.items())
"""Every operator's Lease carries these labels (others list them to find overlapping scopes)."""
MAX_LEASE_SECONDS = 3600
"""A lease duration past this (a malformed or hostile object) is read as this."""
MAX_IDENTITY = 128
_GLOB = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Timing:
    """How long a lease lasts, how often the leader renews and a standby looks again."""

    duration_s: int = 15
    renew_s: int = 5
    retry_s: int = 2
    skew_s: int = 2
    """Clocks (and the leader's last in-flight request) may be this far apart."""

    def problems(self) -> list[str]:
        """What makes these timings unsafe or useless, as (setting, reason) messages."""
        out = []
        if self.duration_s > MAX_LEASE_SECONDS:
            out.append(f"RUNBOOK_LEASE_DURATION_SECONDS: at most {MAX_LEASE_SECONDS}")
        if self.renew_s < 1 or self.retry_s < 1 or self.skew_s < 1:
            out.append("RUNBOOK_LEASE_RENEW/RETRY/SKEW_SECONDS: each must be >= 1")
        if 2 * self.renew_s > self.duration_s - self.skew_s:
            out.append(
                "RUNBOOK_LEASE_RENEW_SECONDS: the leader must get two tries before it stops "
                f"(2 x renew <= duration - skew: 2 x {self.renew_s} > "
                f"{self.duration_s} - {self.skew_s})"
            )
        return out


# -- scope ------------------------------------------------------------------------------------


def scope_of(namespaces: Iterable[str]) -> tuple[str, ...]:
    """The watched namespaces as a canonical scope: sorted, unique; () is the whole cluster."""
    return tuple(sorted({n.strip() for n in namespaces if n.strip()}))


def lease_name(scope: tuple[str, ...]) -> str:
    """The scope's Lease: equal scopes meet at the same object, whatever order they were listed
    in (a DNS subdomain name of fixed length)."""
    digest = hashlib.sha256(json.dumps(list(scope)).encode()).hexdigest()[:16]
    return f"{LEASE_PREFIX}{digest}"


def describe(scope: tuple[str, ...]) -> str:
    return ", ".join(scope) if scope else "all namespaces"


def _literal(pattern: str) -> bool:
    return not (set(pattern) & _GLOB) and not pattern.startswith("!")


def _prefix(pattern: str) -> str:
    cut = min((i for i, c in enumerate(pattern) if c in _GLOB), default=len(pattern))
    return pattern[:cut]


def _suffix(pattern: str) -> str:
    cut = max((i for i, c in enumerate(pattern) if c in _GLOB or c == "]"), default=-1)
    return pattern[cut + 1 :]


def patterns_overlap(one: str, other: str) -> bool:
    """Could one namespace match both patterns (kopf's globs: `*`, `?`, `[...]`, `!` to
    exclude)? Exact for a literal name; for two globs, False only when their fixed prefixes
    or suffixes cannot both hold, else True: an overlap assumed costs a standby, one missed
    costs two leaders."""
    if one.startswith("!") or other.startswith("!"):
        return True  # "all but ..." overlaps nearly everything
    if _literal(one) and _literal(other):
        return one == other
    if _literal(one):
        return fnmatch.fnmatchcase(one, other)
    if _literal(other):
        return fnmatch.fnmatchcase(other, one)
    p1, p2, s1, s2 = _prefix(one), _prefix(other), _suffix(one), _suffix(other)
    prefixes_agree = p1.startswith(p2) or p2.startswith(p1)
    suffixes_agree = s1.endswith(s2) or s2.endswith(s1)
    return prefixes_agree and suffixes_agree


def scopes_overlap(one: tuple[str, ...], other: tuple[str, ...]) -> bool:
    """Could an execution be in both scopes? () is the whole cluster."""
    if not one or not other:
        return True
    return any(patterns_overlap(a, b) for a in one for b in other)


# -- reading a Lease --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Holding:
    """What a Lease says, read defensively (a missing or malformed field is "unknown")."""

    namespace: str
    name: str
    holder: str
    """"" when nobody holds it (never taken, or released)."""
    renewed: datetime | None
    duration_s: int
    transitions: int
    version: str
    scope: tuple[str, ...] | None
    """The holder's scope from the annotation; None when missing or unreadable."""

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"

    def until(self, skew_s: int = 0) -> datetime | None:
        """When it lapses by wall clock (the renewal time plus duration and `skew_s`)."""
        if self.renewed is None:
            return None
        return self.renewed + timedelta(seconds=self.duration_s + skew_s)


def parse_time(raw: Any) -> datetime | None:
    """A Lease MicroTime (RFC 3339, `Z` or offset); None when absent or not a time."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(when: datetime) -> str:
    """MicroTime as the apiserver writes it."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _int(raw: Any, default: int, low: int, high: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        return default
    return max(low, min(high, raw))


def _scope_annotation(meta: Mapping[str, Any]) -> tuple[str, ...] | None:
    raw = (meta.get("annotations") or {}).get(SCOPE_ANNOTATION)
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return scope_of(value)


def holding_of(lease: Mapping[str, Any], default_duration_s: int) -> Holding:
    meta = lease.get("metadata") or {}
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity")
    return Holding(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        holder=holder if isinstance(holder, str) else "",
        renewed=parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime")),
        duration_s=_int(spec.get("leaseDurationSeconds"), default_duration_s, 1, MAX_LEASE_SECONDS),
        transitions=_int(spec.get("leaseTransitions"), 0, 0, 2**31 - 1),
        version=str(meta.get("resourceVersion") or ""),
        scope=_scope_annotation(meta),
    )


@dataclass(frozen=True, slots=True)
class Sighting:
    """When this process first saw a version of a lease (its monotonic clock)."""

    version: str
    first_seen: float


def sighted(previous: Sighting | None, holding: Holding, mono: float) -> Sighting:
    """The sighting to keep: unchanged while the lease is unchanged, restarted when it moved."""
    if previous is not None and previous.version == holding.version:
        return previous
    return Sighting(holding.version, mono)


def expired(
    holding: Holding, now: datetime, mono: float, sighting: Sighting | None, timing: Timing
) -> bool:
    """Whether a lease can be taken from its holder (see the module's docstring)."""
    if not holding.holder:
        return True
    lapse = holding.until(timing.skew_s)
    if lapse is not None and now > lapse:
        return True
    return (
        sighting is not None
        and sighting.version == holding.version
        and mono - sighting.first_seen > holding.duration_s
    )


# -- deciding ---------------------------------------------------------------------------------


class Action(enum.Enum):
    CREATE = "create"
    """No Lease yet: create it, holding it (AlreadyExists: someone was first, look again)."""
    TAKE = "take"
    """Free or expired: replace it with us as holder, guarded by its resourceVersion."""
    RENEW = "renew"
    """Ours already (a restart with the same identity, e.g. the same pod): renew it."""
    STAND_BY = "stand-by"
    """Held by a live operator: wait and look again."""


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    holding: Holding | None


def decide(
    lease: Mapping[str, Any] | None,
    identity: str,
    now: datetime,
    mono: float,
    sighting: Sighting | None,
    timing: Timing,
) -> Decision:
    """What to do with the scope's Lease, as read (None: it does not exist)."""
    if lease is None:
        return Decision(Action.CREATE, None)
    holding = holding_of(lease, timing.duration_s)
    if holding.holder == identity:
        return Decision(Action.RENEW, holding)
    if expired(holding, now, mono, sighting, timing):
        return Decision(Action.TAKE, holding)
    return Decision(Action.STAND_BY, holding)


def rivals(
    leases: Iterable[Mapping[str, Any]],
    own_name: str,
    scope: tuple[str, ...],
    identity: str,
    now: datetime,
    mono: float,
    sightings: Mapping[str, Sighting],
    timing: Timing,
) -> list[Holding]:
    """Other scopes' live Leases held by someone else whose scope overlaps ours (a Lease whose
    scope cannot be read counts as overlapping). `sightings` by lease name."""
    out = []
    for lease in leases:
        holding = holding_of(lease, timing.duration_s)
        if holding.name == own_name or holding.holder in ("", identity):
            continue
        if expired(holding, now, mono, sightings.get(holding.name), timing):
            continue
        if holding.scope is None or scopes_overlap(scope, holding.scope):
            out.append(holding)
    return out


# -- writing a Lease --------------------------------------------------------------------------


def claimed(
    namespace: str,
    name: str,
    scope: tuple[str, ...],
    identity: str,
    now: datetime,
    timing: Timing,
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The Lease with us as holder, renewed `now`: a new one (`current` None), or `current`
    replaced (its resourceVersion kept, so a concurrent writer makes the write conflict)."""
    stamp = format_time(now)
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": dict(LABELS),
        "annotations": {SCOPE_ANNOTATION: json.dumps(list(scope))},
    }
    spec: dict[str, Any] = {
        "holderIdentity": identity,
        "leaseDurationSeconds": timing.duration_s,
        "acquireTime": stamp,
        "renewTime": stamp,
        "leaseTransitions": 0,
    }
    if current is not None:
        held = holding_of(current, timing.duration_s)
        old_spec = current.get("spec") or {}
        meta["resourceVersion"] = held.version
        if held.holder == identity and old_spec.get("acquireTime"):
            spec["acquireTime"] = old_spec["acquireTime"]
            spec["leaseTransitions"] = held.transitions
        else:
            spec["leaseTransitions"] = held.transitions + 1
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": spec,
    }


def released(current: Mapping[str, Any], identity: str, now: datetime) -> dict[str, Any] | None:
    """The Lease handed back (no holder: the next operator takes it at once), or None when it
    is not ours to release."""
    spec = dict(current.get("spec") or {})
    if spec.get("holderIdentity") != identity:
        return None
    spec.pop("holderIdentity", None)
    spec["renewTime"] = format_time(now)
    spec["leaseDurationSeconds"] = 1
    meta = dict(current.get("metadata") or {})
    return {**current, "metadata": meta, "spec": spec}


def renewal_deadline(sent_at: float, timing: Timing) -> float:
    """The monotonic time by which the leader must have renewed again, or stop: its lease,
    renewed by a request sent at `sent_at`, may look expired to others from
    `sent_at + duration` on; the skew margin keeps the leader's stop before that."""
    return sent_at + timing.duration_s - timing.skew_s


def standby_message(holding: Holding, skew_s: int) -> str:
    until = holding.until(skew_s)
    when = format_time(until) if until else "unknown"
    scope = f" (its scope: {describe(holding.scope)})" if holding.scope is not None else ""
    return f"standing by: lease {holding.where} held by {holding.holder} until {when}{scope}"


def valid_identity(identity: str) -> bool:
    return 0 < len(identity) <= MAX_IDENTITY and identity.isprintable()
