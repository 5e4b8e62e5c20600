"""Killing what ended attempts left behind, with one scan of /proc for many attempts.

Finding an attempt's leftovers (a daemon that started its own session) means reading the
environment of every process on the machine (runbook_executors.processes.leftovers): ~10 ms
on a small VM, more than a forked attempt itself costs. So attempts that end close together
share a scan: each waits for the first scan that *starts after it ended* (so nothing it left
can be missed), and that scan kills the leftovers of every attempt waiting for it. The scan
runs in a worker thread, so the runner keeps serving other attempts meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from runbook_executors import processes


def sweep(token_prefixes: Iterable[str]) -> list[int]:
    """Kill (and reap, when ours) every process carrying one of these attempt tokens."""
    return processes.kill_and_reap(processes.leftovers(token_prefixes))


class LeftoverSweeper:
    """`await after(token)` once an attempt's process has ended; returns once a scan that
    began after that call has killed whatever still carries the token."""

    def __init__(self, scan: Callable[[Iterable[str]], object] = sweep) -> None:
        self._scan = scan
        self._waiting: set[str] = set()
        self._next: asyncio.Future[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.scans = 0
        """Scans run so far (to see the sharing at work)."""

    async def after(self, token: str) -> None:
        self._waiting.add(token)
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        waiter = self._next
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        await asyncio.shield(waiter)

    async def _work(self) -> None:
        while self._next is not None:
            done, self._next = self._next, None
            tokens, self._waiting = self._waiting, set()
            self.scans += 1
            try:
                await asyncio.to_thread(self._scan, tokens)
            except Exception:  # the run's final sweep (every token) still follows
                pass
            finally:
                done.set_result(None)  # its waiters must never hang
