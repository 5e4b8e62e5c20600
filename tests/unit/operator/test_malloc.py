"""The operator caps glibc's malloc arenas before its threads start (runbook_operator.malloc).

Counted the way glibc reports them: malloc_info's XML has one <heap> per arena. Eight threads
that allocate at the same time get arenas of their own unless the cap holds."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)

PROGRAM = r"""
import ctypes, os, sys, tempfile, threading
from runbook_operator import malloc
if sys.argv[1] == "cap":
    assert malloc.cap_arenas()
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    for _ in range(200):
        blobs = [bytearray(4096) for _ in range(200)]
        del blobs
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
path = tempfile.mktemp()
f = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, f)
libc.fclose(f)
print(open(path).read().count("<heap nr="))
os.unlink(path)
"""


def arenas(mode: str, **env: str) -> int:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode],
        capture_output=True,
        text=True,
        check=True,
        env=clean | env,
    )
    return int(out.stdout.strip())


def test_threads_share_at_most_two_arenas_once_capped() -> None:
    assert arenas("cap") <= 2


def test_without_the_cap_the_same_threads_take_more() -> None:
    """The comparison that shows the test above measures something."""
    assert arenas("none") > 2


def test_the_environment_wins() -> None:
    code = "from runbook_operator import malloc; print(malloc.cap_arenas())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MALLOC_ARENA_MAX": "4"},
    )
    assert out.stdout.strip() == "False"


def test_the_operator_caps_them_first_thing() -> None:
    import inspect

    from runbook_operator import __main__ as entry

    body = inspect.getsource(entry.main).split("\n")
    first = next(line for line in body[1:] if line.strip())
    assert "malloc.cap_arenas()" in first
