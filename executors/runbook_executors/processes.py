"""Process hygiene on Linux: no step leaves processes behind, even ones that start a session.

A step may start a grandchild that calls setsid(): killing the step's process group misses it,
and when its parent exits it is re-parented to init and runs on. Two kernel features close that
gap without root: a *child subreaper* (PR_SET_CHILD_SUBREAPER) adopts such orphans instead of
init, so they can be found among its children; a *parent-death signal* (PR_SET_PDEATHSIG) stops
a step whose runner was killed with SIGKILL. Every process of an attempt also inherits
`ATTEMPT_ENV`, so leftovers of one attempt are told apart from those of another.

Elsewhere than Linux these functions do nothing (and say so by returning False / empty).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import sys
from collections.abc import Iterable
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
ATTEMPT_ENV = "RUNBOOK_ATTEMPT_TOKEN"
"""Inherited by every process of one attempt; its value names the runner and the attempt."""
PARENT_ENV = "RUNBOOK_PARENT_PID"
"""Set by the local runner: the step process stops itself when that process dies."""

_PROC = Path("/proc")


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return int(_libc().prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process instead of init."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def has_children() -> bool:
    """True while this process has a child (running, or exited and not yet reaped). For a
    child subreaper, False means no descendant at all is left."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> bool:
    """Get `sig` when the parent dies; exits at once if it is already gone (the race)."""
    ok = _prctl(PR_SET_PDEATHSIG, int(sig))
    if ok and os.getppid() != parent_pid:
        os._exit(128 + int(sig))
    return ok


def _ppid(pid: int) -> int | None:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir(_PROC) if name.isdigit()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children first)."""
    parents = {p: _ppid(p) for p in _pids()}
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == current and p not in found]
        found.extend(kids)
        frontier.extend(kids)
    return found


def tokened(pids: Iterable[int], token_prefix: str | Iterable[str]) -> list[int]:
    """Those of `pids` whose ATTEMPT_ENV value starts with `token_prefix` (or with any of
    several prefixes). Raw os calls: the runner scans every process of the machine with this."""
    prefixes = [token_prefix] if isinstance(token_prefix, str) else list(token_prefix)
    needles = tuple(f"{ATTEMPT_ENV}={prefix}".encode() for prefix in prefixes)
    if not needles:
        return []
    found = []
    for pid in pids:
        try:
            fd = os.open(f"/proc/{pid}/environ", os.O_RDONLY)
        except OSError:
            continue
        try:
            environ = _read_all(fd)
        except OSError:
            continue
        finally:
            os.close(fd)
        if any(item.startswith(needles) for item in environ.split(b"\0")):
            found.append(pid)
    return found


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def kill_and_reap(pids: Iterable[int]) -> list[int]:
    """SIGKILL each process; reap those that are our children. Returns the pids signalled."""
    killed = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    me = os.getpid()
    for pid in killed:
        if _ppid(pid) == me:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)
    return killed


def leftovers(token_prefix: str | Iterable[str]) -> list[int]:
    """Processes (other than this one) still carrying an attempt token with this prefix (or any
    of several): orphans adopted by this subreaper, and any that escaped elsewhere."""
    me = os.getpid()
    return tokened((p for p in _pids() if p != me), token_prefix)


def stop_descendants(grace: float = 1.0) -> None:
    """SIGTERM every descendant, SIGKILL those still there after `grace` seconds."""
    import time

    me = os.getpid()
    found = descendants(me)
    for pid in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in found):
        time.sleep(0.05)
    kill_and_reap(p for p in [*found, *descendants(me)] if _alive(p))


def _alive(pid: int) -> bool:
    """Running (a zombie or a reaped process is not)."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :][:1] != "Z"
