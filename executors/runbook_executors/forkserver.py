"""A fork server for the local runner: Python starts and the executors are imported once, then
every attempt is a `fork()` of this warm process instead of a new interpreter.

    python -P -m runbook_executors.forkserver REQUEST_FD REPLY_FD [ACTION_TYPE...]

The runner (runbookctl.forking) starts it in its own session and talks over two
SOCK_SEQPACKET sockets (one JSON message each way per event):

- request `{"id", "context", "result", "env", "token"}` with one file descriptor attached (the
  write end of the attempt's output pipe) → reply `{"id", "pid"}` once forked;
- when an attempt's process ends (reaped here, its parent) → `{"pid", "code", "clean"}`
  (`code` as `asyncio`'s returncode: negative for a signal; `clean`: see CLEAN);
- `{"ready": pid}` once, after the preload.

Each attempt's process is the same as a `python -m runbook_executors run` one would be: its own
session (the runner kills its group on timeout or cancel), stdin from /dev/null, stdout and
stderr to the pipe, exactly the environment the runner sends, and then `entrypoint.main`. It
exits with `os._exit`, so nothing of this process (atexit handlers, buffers) runs twice. What a
step changes (globals, imported modules, os.environ, signal handlers) dies with its process: the
next attempt forks from this untouched server again.

The attempt token (processes.ATTEMPT_ENV) must be visible in /proc/PID/environ, which shows the
environment the process was *exec*ed with, not os.environ: this server is started with a
placeholder value of `TOKEN_SLOT` characters and each attempt writes its token over that
placeholder in its own memory, so a process it forks without exec (a daemonising step) still
carries the token and the runner's leftover sweep finds it.

The server stops when the runner closes the request socket, and (parent-death signal) when the
runner dies; its attempts then get their own parent-death signal (entrypoint._guard_processes).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import selectors
import signal
import socket
import sys
import traceback
from typing import Any, NoReturn

from runbook_executors import processes

TOKEN_SLOT = 512
"""Characters reserved for the attempt token in the server's initial environment."""
PLACEHOLDER = "~" * TOKEN_SLOT
MAX_MESSAGE = 1 << 20
"""Largest request (its environment included) read from the runner."""
CLEAN = b"c"
"""Written by an attempt's process as it exits when it has no child process left: as it is a
child subreaper, every live descendant would be its child, so nothing of the attempt is left
and the runner need not search /proc for leftovers. A step's own code could write it too, to
hide a daemon until the end of the run: the runner's final sweep does not depend on it."""
EXIT_INTERNAL = 70
"""An attempt's process failed before or around the entrypoint (a bug here, not the step's)."""


def preload(action_types: list[str]) -> None:
    """Import the executors and build the registry once, plus what the executors of
    `action_types` (the run's; all when empty) import lazily; then warm what every attempt
    does the first time (caches of abc, enum, pydantic, asyncio), so no attempt pays it."""
    import asyncio

    from runbook_engine.contract import StepExecutorContext, StepExecutorResult
    from runbook_executors import entrypoint

    entrypoint.preload_registry(action_types or None)
    with contextlib.suppress(Exception):  # only an optimisation
        ids = {"executionId": "w", "runbookId": "w", "stepId": "w", "actionType": "CUSTOM"}
        StepExecutorContext.model_validate({**ids, "attempt": 1})
        entrypoint.serialisable(StepExecutorResult(success=True, output={"w": 1}))
        asyncio.run(asyncio.sleep(0))


def _token_slot() -> int | None:
    """Address of the placeholder value in this process's initial environment block, or None.

    getenv() returns the string the kernel placed on the stack at exec as long as nobody has
    set the variable since (a set would point `environ` at a new heap copy)."""
    if os.environ.get(processes.ATTEMPT_ENV) != PLACEHOLDER:
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.getenv.restype = ctypes.c_void_p
        libc.getenv.argtypes = [ctypes.c_char_p]
        address = libc.getenv(processes.ATTEMPT_ENV.encode())
    except (OSError, AttributeError):
        return None
    if not address or ctypes.string_at(address, TOKEN_SLOT) != PLACEHOLDER.encode():
        return None
    return int(address)


def stamp_token(slot: int | None, token: str) -> bool:
    """Write `token` over the placeholder (NUL-padded), so /proc/self/environ shows it."""
    raw = token.encode()
    if slot is None or len(raw) >= TOKEN_SLOT or b"\0" in raw:
        return False
    ctypes.memmove(slot, raw.ljust(TOKEN_SLOT, b"\0"), TOKEN_SLOT)
    return True


class Server:
    """The loop: fork on request, report each attempt's exit, stop with the runner."""

    def __init__(self, requests: socket.socket, replies: socket.socket) -> None:
        self.requests = requests
        self.replies = replies
        self.children: dict[int, int] = {}
        """pid of each running attempt → read end of its 'left nothing behind' pipe."""
        self.slot = _token_slot()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.selector = selectors.DefaultSelector()

    def send(self, message: dict[str, Any]) -> None:
        self.replies.sendall(json.dumps(message).encode())

    def serve(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner handles ^C, then closes us
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        signal.set_wakeup_fd(self.wake_w)
        selector = self.selector
        selector.register(self.requests, selectors.EVENT_READ)
        selector.register(self.wake_r, selectors.EVENT_READ)
        self.send({"ready": os.getpid()})
        while True:
            for key, _ in selector.select():
                if key.fileobj is self.requests:
                    if not self.take_request():
                        return
                else:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self.wake_r, 4096):
                            pass
                    self.reap()

    def take_request(self) -> bool:
        """Fork one attempt; False when the runner has gone (end of the request stream)."""
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.requests, MAX_MESSAGE, 4)
        except InterruptedError:
            return True
        if not data:
            return False
        try:
            request = json.loads(data)
            if len(fds) != 1:
                raise ValueError(f"expected one output descriptor, got {len(fds)}")
            clean_r, clean_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(clean_r)
                self.child(request, fds[0], clean_w)
            os.close(clean_w)
            os.set_blocking(clean_r, False)
            self.children[pid] = clean_r
            self.send({"id": request["id"], "pid": pid})
        except (ValueError, KeyError, TypeError, OSError) as exc:
            with contextlib.suppress(Exception):
                self.send({"id": request.get("id"), "error": f"{type(exc).__name__}: {exc}"})
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        return True

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            clean_r = self.children.pop(pid, None)
            if clean_r is not None:
                try:
                    clean = os.read(clean_r, 1) == CLEAN
                except OSError:
                    clean = False
                os.close(clean_r)
                code = os.waitstatus_to_exitcode(status)
                self.send({"pid": pid, "code": code, "clean": clean})

    def child(self, request: dict[str, Any], out_fd: int, clean_w: int) -> NoReturn:
        """In the forked attempt: become a fresh step process, run the entrypoint, exit."""
        code = EXIT_INTERNAL
        for fd in self.children.values():  # other attempts' pipes
            os.close(fd)
        try:
            os.setsid()
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.selector.close()  # the same epoll instance as ours: a step must not edit it
            for sock in (self.requests, self.replies):
                sock.close()
            for fd in (self.wake_r, self.wake_w):
                os.close(fd)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(out_fd, 1)
            os.dup2(out_fd, 2)
            for fd in (devnull, out_fd):
                if fd > 2:
                    os.close(fd)
            env = {str(k): str(v) for k, v in dict(request["env"]).items()}
            env[processes.PARENT_ENV] = str(
                os.getppid()
            )  # we die with the server, it with the runner
            os.environ.clear()
            os.environ.update(env)
            stamp_token(self.slot, str(request["token"]))
            from runbook_executors import entrypoint

            sys.argv = ["python -m runbook_executors", "run"]
            entrypoint.configure_logging()
            code = entrypoint.run(str(request["context"]), str(request["result"]), durable=False)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            with contextlib.suppress(Exception):
                traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            with contextlib.suppress(Exception):
                if not processes.has_children():
                    os.write(clean_w, CLEAN)
            os._exit(code)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or not all(a.isdigit() for a in args[:2]):
        print(
            "usage: python -m runbook_executors.forkserver REQUEST_FD REPLY_FD [ACTION_TYPE...]",
            file=sys.stderr,
        )
        return 2
    parent = os.environ.get(processes.PARENT_ENV, "")
    if parent.isdigit():
        processes.die_with_parent(int(parent))
    requests = socket.socket(fileno=int(args[0]))
    replies = socket.socket(fileno=int(args[1]))
    preload(args[2:])
    gc.freeze()  # what the preload built is never scanned in an attempt (no copy-on-write)
    Server(requests, replies).serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
