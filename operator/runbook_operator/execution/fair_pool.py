"""A thread pool that serves its callers' keys (namespaces) in turn, not first come first served.

One operator serves every namespace through a few shared threads: the reconcile workers and the
Job creators. With a plain FIFO pool a tenant that queues 500 reconciles, or one reconcile that
creates 1,000 Jobs, puts every other tenant's next call behind all of them. Here each key has its
own FIFO queue and the workers take one call from each key with work, round-robin: a key that
arrives with one call waits for at most one call of each other busy key, however long their
queues are. Work-conserving: a lone key gets every worker.

Bounded: only keys with queued calls are kept (an idle namespace costs nothing), and a call
waits for at most one call per other key ahead of it in the ring. Threads are started on
demand up to `workers` and are daemons: a call cut off when the operator exits is one more
crash the reconcile is built to survive (docs/architecture.md).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class _Call:
    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]


class FairPool:
    """`submit(key, fn, *args)` runs `fn(*args)` on one of `workers` threads; keys take turns."""

    def __init__(self, workers: int, name: str = "fair") -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.name = name
        self._ring: OrderedDict[str, deque[_Call]] = OrderedDict()
        """Keys with queued calls, in the order they are served next."""
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._queued = 0
        self._closed = False

    def submit(self, key: str, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        """Queue `fn(*args)` behind `key`'s earlier calls; a new key joins the end of the ring."""
        future: Future[Any] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self.name}: submit after shutdown")
            queue = self._ring.get(key)
            if queue is None:
                queue = self._ring[key] = deque()
            queue.append(_Call(future, fn, args))
            self._queued += 1
            if self._queued > self._idle and len(self._threads) < self.workers:
                self._start_thread()
            self._cond.notify()
        return future

    def pending(self) -> dict[str, int]:
        """Queued (not yet started) calls per key; keys without any are not kept."""
        with self._cond:
            return {key: len(queue) for key, queue in self._ring.items()}

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more calls (as ThreadPoolExecutor.shutdown): the queued ones still run, or with
        `cancel_futures` are cancelled; with `wait`, return once the workers have ended."""
        with self._cond:
            self._closed = True
            if cancel_futures:
                for queue in self._ring.values():
                    for call in queue:
                        call.future.cancel()
                self._ring.clear()
                self._queued = 0
            self._cond.notify_all()
            threads = list(self._threads)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _next(self) -> _Call | None:
        """The first call of the key whose turn it is (that key moves to the end of the ring),
        or None once shut down."""
        with self._cond:
            while not self._ring:
                if self._closed:
                    return None
                self._idle += 1
                try:
                    self._cond.wait()
                finally:
                    self._idle -= 1
            key, queue = next(iter(self._ring.items()))
            call = queue.popleft()
            self._queued -= 1
            if queue:
                self._ring.move_to_end(key)
            else:
                del self._ring[key]
            return call

    def _work(self) -> None:
        while (call := self._next()) is not None:
            if not call.future.set_running_or_notify_cancel():
                continue  # cancelled while queued (its caller stopped waiting)
            try:
                result = call.fn(*call.args)
            except BaseException as exc:  # the caller gets it, as from a ThreadPoolExecutor
                call.future.set_exception(exc)
            else:
                call.future.set_result(result)


__all__ = ["FairPool"]
