"""The freshest known body of each execution the operator drives, so a reconcile need not GET it.

Every reconcile used to start with a GET of its execution: about one GET per step attempt in
`make bench`, where Argo's controller needs a fiftieth of that, because the watch has already
delivered the object. Here the body comes from the two places that know it: the watch (kopf's
event handler passes each event's body) and the answer to the operator's own status write.

Staleness is safe by construction (docs/operator.md, "Crash safety"): a status written from an
older body carries that body's resourceVersion, so the apiserver refuses it with Conflict if
the status moved meanwhile, and the controller drops the copy and reads afresh. A copy older
than the resync interval is not used at all, which bounds how long a missed watch event
(a reconnect) can go unseen, as the Job and pod cache does (execution/children.py).

Only executions whose daemon runs are kept (`track` … `forget`): memory follows what is live,
not the history of the namespace.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


def resource_version(body: Mapping[str, Any]) -> int:
    """etcd's resourceVersions are increasing integers; an opaque one counts as 0 (oldest)."""
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


@dataclass
class _Kept:
    body: Mapping[str, Any]
    version: int
    at: float


@dataclass
class ExecutionBodies:
    """uid → the newest body seen of that execution, while its daemon runs."""

    clock: Callable[[], float] = time.monotonic
    _kept: dict[str, _Kept | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def track(self, uid: str) -> None:
        """Keep bodies of `uid` from now on (its daemon started)."""
        with self._lock:
            self._kept.setdefault(uid, None)

    def forget(self, uid: str) -> None:
        """Keep nothing more of `uid` (its daemon ended, or it is finished or gone)."""
        with self._lock:
            self._kept.pop(uid, None)

    def drop(self, uid: str) -> None:
        """The copy of `uid` proved stale (a Conflict): the next reconcile reads afresh."""
        with self._lock:
            if uid in self._kept:
                self._kept[uid] = None

    def saw(self, body: Mapping[str, Any]) -> None:
        """A body from the watch or a write's answer: kept if tracked and not older."""
        uid = (body.get("metadata") or {}).get("uid")
        version = resource_version(body)
        with self._lock:
            if not uid or uid not in self._kept:
                return
            current = self._kept[uid]
            if current is None or version >= current.version:
                self._kept[uid] = _Kept(body, version, self.clock())

    def fresh(self, uid: str, max_age: float) -> Mapping[str, Any] | None:
        """The kept body of `uid` if there is one younger than `max_age` seconds."""
        with self._lock:
            kept = self._kept.get(uid)
            if kept is None or self.clock() - kept.at > max_age:
                return None
            return kept.body

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept)
