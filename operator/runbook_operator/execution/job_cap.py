"""The per-namespace cap on running step Jobs (RUNBOOK_MAX_RUNNING_JOBS_PER_NAMESPACE).

One operator serves every namespace, and one execution may run up to 1,000 steps at once: without
a cap one tenant fills the cluster's Job controller, scheduler and the operator's own threads.
A reconcile asks for a `turn` in its namespace: it learns how many attempts it may start
(`free`: the cap, less the namespace's running Jobs as the watch-fed ChildCache counts them,
less the Jobs other reconciles are creating right now), the engine starts at most that many,
and the turn reserves what was started until those Jobs are in the cache. Turns of one
namespace take a lock only around that decision (pure CPU, serialised by the GIL anyway), so
two reconciles never spend the same free slot.

An execution that had steps ready but no free slot is *held*: when a Job of its namespace
ends (the watch), is forgotten, or a reservation is let go unused, the held executions are
woken, longest-held first, as many as there are free slots; each woken reconcile that leaves
slots unused wakes the next (`Reservation.release`). No polling: a held execution sleeps
until then (or until the resync interval, the safety net for a missed watch event).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from runbook_operator.execution.locks import KeyedLocks


@dataclass
class Turn:
    """One reconcile's decision in its namespace: what it may start, what it did."""

    free: int | None
    """Attempts it may start; None: no cap."""
    started: int = 0
    held: bool = False
    """It left ready steps unstarted for want of a slot."""

    def took(self, started: int, *, held: bool) -> None:
        self.started, self.held = started, held


@dataclass
class Reservation:
    """Slots a reconcile took for Jobs it is creating; let go one by one as each Job reaches the
    cache (or fails), the rest when the reconcile ends. Letting go twice does nothing."""

    cap: JobCap | None
    namespace: str
    slots: int
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def release(self, slots: int | None = None) -> None:
        with self._lock:
            n = self.slots if slots is None else min(slots, self.slots)
            self.slots -= n
        if self.cap is not None:
            self.cap.unreserve(self.namespace, n)


@dataclass
class JobCap:
    limit: int
    """Running step Jobs per namespace; 0: no cap."""
    running: Callable[[str], int]
    """Running step Jobs of a namespace, as the watch shows them (ChildCache.running_jobs)."""
    wake: Callable[[str], None]
    """Wake the execution with this uid (its daemon reconciles it again)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _deciding: KeyedLocks = field(default_factory=KeyedLocks)
    _reserved: dict[str, int] = field(default_factory=dict)
    _held: dict[str, dict[str, None]] = field(default_factory=dict)
    """Namespace → uids of held executions, longest-held first (an ordered set)."""

    @contextmanager
    def turn(self, namespace: str, uid: str) -> Iterator[Turn]:
        """Decide inside: `turn.free` attempts may start; report with `turn.took(...)`. The
        slots started are then reserved: `reservation(turn)` lets them go."""
        if self.limit <= 0:
            yield Turn(None)
            return
        with self._deciding.hold(namespace):
            with self._lock:
                free = self._free(namespace)
            turn = Turn(free)
            yield turn
            with self._lock:
                if turn.started:
                    self._reserved[namespace] = self._reserved.get(namespace, 0) + turn.started
                held = self._held.setdefault(namespace, {})
                if turn.held:
                    held.setdefault(uid, None)
                else:
                    held.pop(uid, None)
                if not held:
                    del self._held[namespace]

    def reservation(self, namespace: str, turn: Turn) -> Reservation:
        return Reservation(self if turn.free is not None else None, namespace, turn.started)

    def unreserve(self, namespace: str, slots: int) -> None:
        """A reconcile let `slots` go (its Jobs are in the cache now, or were never made); then
        wake the held, if anything is free."""
        with self._lock:
            left = self._reserved.get(namespace, 0) - slots
            if left > 0:
                self._reserved[namespace] = left
            else:
                self._reserved.pop(namespace, None)
        self.capacity_freed(namespace)

    def capacity_freed(self, namespace: str) -> None:
        """A Job of `namespace` ended or was let go: wake as many held executions as there are
        free slots, longest-held first. Called from the watch threads."""
        with self._lock:
            held = self._held.get(namespace)
            if not held:
                return
            free = self._free(namespace)
            woken = list(held)[:free]
            for uid in woken:
                del held[uid]
            if not held:
                del self._held[namespace]
        for uid in woken:
            self.wake(uid)

    def forget(self, uid: str) -> None:
        """The execution is finished or gone: it waits for nothing any more."""
        with self._lock:
            for namespace, held in list(self._held.items()):
                held.pop(uid, None)
                if not held:
                    del self._held[namespace]

    def held(self) -> dict[str, list[str]]:
        """Held executions per namespace, longest-held first."""
        with self._lock:
            return {ns: list(uids) for ns, uids in self._held.items()}

    def reserved(self, namespace: str) -> int:
        """Slots taken for Jobs that are being made, not yet counted by the cache."""
        with self._lock:
            return self._reserved.get(namespace, 0)

    def _free(self, namespace: str) -> int:
        used = self.running(namespace) + self._reserved.get(namespace, 0)
        return max(0, self.limit - used)


__all__ = ["JobCap", "Reservation", "Turn"]
