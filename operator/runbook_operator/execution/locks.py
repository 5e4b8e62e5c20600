"""One lock per key (an execution uid, a namespace), kept only while someone holds or waits
for it, so a key seen once costs nothing afterwards."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class KeyedLocks:
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _held: dict[str, tuple[threading.Lock, int]] = field(default_factory=dict)

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._held.get(key) or (threading.Lock(), 0)
            self._held[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._held[key]
                if users == 1:
                    del self._held[key]
                else:
                    self._held[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._held)


__all__ = ["KeyedLocks"]
