"""Few malloc arenas for the operator's threads (glibc only; elsewhere nothing is done).

glibc gives threads that allocate at the same time arenas of their own, up to 8 per core. The
operator runs a pool of reconcile threads, Job creators and watch threads that all decode
JSON: memory freed in one arena is not reused by another, so the process kept up to 2.5x the
memory its Python objects needed (`make bench` fanout-1000: 307 MiB peak RSS with ~100 MiB
traced by tracemalloc; 225 MiB with two arenas, docs/benchmarks.md bottleneck 15). The GIL
lets one thread run Python at a time, so more arenas buy almost no parallelism here.
`mallopt(M_ARENA_MAX)` must run before the threads exist; the environment variable
MALLOC_ARENA_MAX, when set, wins (an operator tuning it knows better).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8
"""glibc's mallopt parameter number for the arena cap (malloc.h)."""
ARENAS = 2


def cap_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas; True when done (False: not glibc, or set by the environment)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))


__all__ = ["ARENAS", "cap_arenas"]
