"""The local runner's side of the fork server (runbook_executors.forkserver).

Starting Python and importing the executors costs ~0.4 s per attempt on a small machine; the
fork server pays it once per run and forks a warm process per attempt instead. Isolation is the
same as with one interpreter per attempt: each attempt is its own process in its own session,
killed (its whole group) on timeout or cancel, and what it does to its memory dies with it.

If the server itself dies (killed, out of memory), its running attempts are reported lost and
the next attempt starts a new server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from runbook_executors import forkserver, processes

START_TIMEOUT_SECONDS = 60.0
"""How long the server may take to start and preload (a cold, busy machine)."""
SEND_TIMEOUT_SECONDS = 10.0


def kill_attempt(pid: int, sig: int) -> None:
    """Signal an attempt's process and its group (the process itself too: right after the fork
    it may not lead its own session yet)."""
    for kill, target in ((os.killpg, pid), (os.kill, pid)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(target, sig)


class Exit(NamedTuple):
    """How an attempt's process ended: `code` as asyncio's returncode (negative: a signal);
    `clean` when it reported, as it exited, that it left no process behind."""

    code: int
    clean: bool


class ForkServerGone(RuntimeError):
    """The fork server stopped (or never became ready): attempts through it are lost."""


class ForkServer:
    """One running fork server: `spawn` an attempt, await its `exit_code`, `close` at the end."""

    def __init__(
        self, proc: asyncio.subprocess.Process, requests: socket.socket, replies: socket.socket
    ) -> None:
        self.proc = proc
        self.requests = requests
        self.replies = replies
        self.pid: int | None = None
        """The server's pid once ready (the parent of every attempt's process)."""
        self._ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._spawned: dict[int, asyncio.Future[int]] = {}
        self._exits: dict[int, asyncio.Future[Exit]] = {}
        self._next_id = 0
        self._gone: str | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, env: Mapping[str, str], action_types: Iterable[str] = ()) -> ForkServer:
        """Start a server with `env` (plus the token placeholder) and wait until it is ready;
        it preloads what the executors of `action_types` need."""
        req_ours, req_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        rep_ours, rep_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server_env = dict(env)
        server_env[processes.ATTEMPT_ENV] = forkserver.PLACEHOLDER
        server_env[processes.PARENT_ENV] = str(os.getpid())
        try:
            proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-P", "-m", "runbook_executors.forkserver"),
                *(str(req_theirs.fileno()), str(rep_theirs.fileno()), *sorted(action_types)),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                env=server_env,
                pass_fds=(req_theirs.fileno(), rep_theirs.fileno()),
                start_new_session=True,
            )
        finally:
            req_theirs.close()
            rep_theirs.close()
        req_ours.settimeout(SEND_TIMEOUT_SECONDS)
        rep_ours.setblocking(False)
        server = cls(proc, req_ours, rep_ours)
        try:
            server.pid = await asyncio.wait_for(
                asyncio.shield(server._ready), START_TIMEOUT_SECONDS
            )
        except (TimeoutError, ForkServerGone):
            await server.close()
            raise ForkServerGone("the fork server did not start") from None
        return server

    @property
    def alive(self) -> bool:
        return self._gone is None

    async def spawn(
        self, *, context: str, result: str, env: Mapping[str, str], token: str, output: int
    ) -> int:
        """Fork one attempt writing its stdout and stderr to `output`; returns its pid."""
        if self._gone is not None:
            raise ForkServerGone(self._gone)
        self._next_id += 1
        request_id = self._next_id
        message = {
            "id": request_id,
            "context": context,
            "result": result,
            "env": dict(env),
            "token": token,
        }
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._spawned[request_id] = waiter
        try:
            socket.send_fds(self.requests, [json.dumps(message).encode()], [output])
        except OSError as exc:
            self._spawned.pop(request_id, None)
            raise ForkServerGone(f"cannot reach the fork server: {exc}") from None
        return await waiter

    async def exit_code(self, pid: int) -> Exit:
        """How the attempt's process ended, once the server has reaped it."""
        return await asyncio.shield(self._exit_future(pid))

    def exited(self, pid: int) -> bool:
        """True once the attempt has been reaped (its pid may then belong to another process)."""
        return self._exit_future(pid).done()

    def forget(self, pid: int) -> None:
        """Drop what is kept about an attempt whose outcome has been read."""
        self._exits.pop(pid, None)

    def _exit_future(self, pid: int) -> asyncio.Future[Exit]:
        if pid not in self._exits:
            self._exits[pid] = asyncio.get_running_loop().create_future()
        return self._exits[pid]

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        reason = "the fork server exited"
        try:
            while data := await loop.sock_recv(self.replies, 65536):
                self._dispatch(json.loads(data))
        except (OSError, ValueError) as exc:
            reason = f"the fork server's replies broke: {exc}"
        finally:
            self._fail_all(reason)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "ready" in message:
            if not self._ready.done():
                self._ready.set_result(int(message["ready"]))
        elif "code" in message:
            future = self._exits.get(int(message["pid"]))  # None: forgotten already
            if future is not None and not future.done():
                future.set_result(Exit(int(message["code"]), message.get("clean") is True))
        elif (waiter := self._spawned.pop(int(message.get("id") or 0), None)) is not None:
            if "pid" in message:
                pid = int(message["pid"])
                self._exit_future(pid)  # exists before its exit can arrive
                if waiter.cancelled():  # the attempt was stopped before it had a pid
                    kill_attempt(pid, signal.SIGKILL)
                else:
                    waiter.set_result(pid)
            elif not waiter.cancelled():
                waiter.set_exception(ForkServerGone(str(message.get("error"))))

    def _fail_all(self, reason: str) -> None:
        self._gone = reason
        waiting: list[asyncio.Future[Any]] = [
            self._ready,
            *self._spawned.values(),
            *self._exits.values(),
        ]
        for future in waiting:
            if not future.done():
                future.set_exception(ForkServerGone(reason))
                future.exception()  # retrieved: a lost attempt nobody awaits logs nothing
        self._spawned.clear()

    async def close(self) -> None:
        """End the server: close its request stream (it exits), kill it if it does not."""
        self.requests.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self.replies.close()
