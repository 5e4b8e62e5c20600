"""The local runner's fork server: attempts are forked from one warm process, and isolation holds.

Each attempt must still be its own process: a crash, a signal, an infinite loop, a memory
blow-up or a daemon in one step fails (or is cleaned up after) that step only, and nothing a
step changes in its process is seen by the next one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from runbook_engine.enums import ExecutionStatus, StepStatus
from runbook_executors import processes
from runbookctl.runner import FORK_SERVER_SUPPORTED, LocalRunner
from runbookctl.sweeper import LeftoverSweeper
from tests.unit.conftest import WriteRunbook
from tests.unit.helpers import pid_alive, wait_for
from tests.unit.runner.test_local_runner import make_runner

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not FORK_SERVER_SUPPORTED, reason="the fork server is Linux-only"),
]

FORK_STEPS = '''
"""CUSTOM functions for the fork server tests (run in a forked attempt process)."""
import ctypes, json, os, pathlib, resource, signal, sys, time

import runbook_executors
from runbook_executors import entrypoint

def _out(ctx):
    return pathlib.Path(ctx.config["dir"])

def whoami(ctx):
    """Where this attempt's process comes from."""
    parent = pathlib.Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\\0")
    own = pathlib.Path("/proc/self/cmdline").read_bytes().split(b"\\0")
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "parentCmdline": [p.decode() for p in parent if p],
        "ownCmdline": [p.decode() for p in own if p],
        "registryPreloaded": entrypoint._preloaded is not None,
    }

def pollute(ctx):
    """Change what a later step in the same process would see."""
    os.environ["LEAKED_ENV"] = "1"
    runbook_executors.LEAKED_GLOBAL = True
    sys.modules["leaked_module"] = sys
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    os.chdir("/")
    os.umask(0o077)
    return {"polluted": True}

def inspect(ctx):
    return {
        "env": "LEAKED_ENV" in os.environ,
        "global": hasattr(runbook_executors, "LEAKED_GLOBAL"),
        "module": "leaked_module" in sys.modules,
        "sigusr1Ignored": signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN,
        "cwdIsRoot": os.getcwd() == "/",
        "umask": os.umask(0o022),
    }

def segfault(ctx):
    ctypes.string_at(0)

def hard_exit(ctx):
    os._exit(5)

def oom_killed(ctx):
    """What the kernel's OOM killer does to a step that blew up its memory."""
    os.kill(os.getpid(), signal.SIGKILL)

def memory_blowup(ctx):
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (512 * 1024 * 1024, hard))
    hog = [bytearray(64 * 1024 * 1024) for _ in range(64)]
    return {"size": len(hog)}

def spin(ctx):
    (_out(ctx) / f"{ctx.step_id}.pid").write_text(str(os.getpid()))
    while True:
        pass

def noisy(ctx):
    chunk = "x" * 65536 + "\\n"
    for _ in range(160):  # 10 MiB on each stream
        sys.stdout.write(chunk)
        sys.stderr.write(chunk)
    sys.stdout.write("THE-END")
    sys.stdout.flush()
    os._exit(7)

def daemon(ctx):
    """Leave a process behind that forks without exec and starts its own session."""
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(120)
        os._exit(0)
    os.waitpid(pid, 0)
    deadline = time.time() + 10
    while time.time() < deadline:
        found = [
            p for p in os.listdir("/proc")
            if p.isdigit() and int(p) != os.getpid() and _token_of(int(p)) == _token_of(os.getpid())
        ]
        if found:
            (_out(ctx) / "daemon.pid").write_text(found[0])
            return {"daemon": int(found[0])}
        time.sleep(0.05)
    raise RuntimeError("no daemon found")

def _token_of(pid):
    try:
        items = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\\0")
    except OSError:
        return None
    for item in items:
        if item.startswith(b"RUNBOOK_ATTEMPT_TOKEN="):
            return item
    return None

def daemon_gone(ctx):
    pid = int((_out(ctx) / "daemon.pid").read_text())
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        state = "gone"
    return {"state": state}

def slow_once(ctx):
    (_out(ctx) / f"{ctx.step_id}.{ctx.attempt}.pid").write_text(str(os.getpid()))
    if ctx.attempt == 1:
        time.sleep(60)
    return {"attempt": ctx.attempt}
'''


def steps(workdir: Path, *specs: tuple[str, str, dict[str, Any]]) -> list[dict[str, Any]]:
    """(id, function, extra step fields) → CUSTOM steps calling fork_steps.<function>."""
    (workdir / "fork_steps.py").write_text(FORK_STEPS)
    return [
        {"id": step_id, "config": {"function": f"fork_steps:{function}"}, **extra}
        for step_id, function, extra in specs
    ]


def run(runner: LocalRunner) -> Any:
    return asyncio.run(runner.run()).state


def test_attempts_are_forked_from_one_preloaded_server(
    write_runbook: WriteRunbook, workdir: Path
) -> None:
    path = write_runbook(steps(workdir, ("a", "whoami", {}), ("b", "whoami", {"dependsOn": ["a"]})))
    state = run(make_runner(path))
    assert state.status is ExecutionStatus.COMPLETED
    first, second = state.outputs["a"], state.outputs["b"]
    assert first["pid"] != second["pid"]  # one process per attempt...
    assert first["ppid"] == second["ppid"] != os.getpid()  # ...both forked by one server
    assert "runbook_executors.forkserver" in first["parentCmdline"]
    # forked, not exec'd: the attempt's process still has the server's command line, and
    # the registry built (and its executors imported) before the fork
    assert "runbook_executors.forkserver" in first["ownCmdline"]
    assert first["registryPreloaded"] and second["registryPreloaded"]


def test_what_a_step_changes_does_not_leak_into_the_next(
    write_runbook: WriteRunbook, workdir: Path
) -> None:
    path = write_runbook(
        steps(workdir, ("dirty", "pollute", {}), ("after", "inspect", {"dependsOn": ["dirty"]}))
    )
    state = run(make_runner(path))
    assert state.status is ExecutionStatus.COMPLETED
    assert "LEAKED_ENV" not in os.environ
    assert state.outputs["after"] == {
        "env": False,
        "global": False,
        "module": False,
        "sigusr1Ignored": False,
        "cwdIsRoot": False,
        "umask": os.umask(os.umask(0o022)),
    }


def test_crashes_signals_loops_and_blowups_fail_only_their_step(
    write_runbook: WriteRunbook, workdir: Path
) -> None:
    specs = [
        ("segv", "segfault", {}),
        ("exit", "hard_exit", {}),
        ("oom", "oom_killed", {}),
        ("memory", "memory_blowup", {}),
        ("loop", "spin", {"timeoutMs": 2000}),
        ("fine", "whoami", {}),
    ]
    path = write_runbook(steps(workdir, *specs), maxParallelSteps=6)
    runner = make_runner(path)
    state = run(runner)
    status = {step_id: state.steps[step_id].status for step_id, _, _ in specs}
    message = {step_id: state.steps[step_id].message or "" for step_id, _, _ in specs}
    assert status["fine"] is StepStatus.SUCCEEDED
    for failed in ("segv", "exit", "oom", "memory", "loop"):
        assert status[failed] is StepStatus.FAILED, (failed, message[failed])
    assert f"exited with code -{signal.SIGSEGV.value}" in message["segv"]
    assert "exited with code 5" in message["exit"]
    assert f"exited with code -{signal.SIGKILL.value}" in message["oom"]
    assert "MemoryError" in message["memory"]
    assert "timed out after 2000 ms" in message["loop"]
    spinner = int((workdir / "loop.pid").read_text())
    assert wait_for(lambda: not pid_alive(spinner), 10)


def test_huge_output_keeps_only_a_bounded_tail(write_runbook: WriteRunbook, workdir: Path) -> None:
    path = write_runbook(steps(workdir, ("noisy", "noisy", {})))
    state = run(make_runner(path))
    message = state.steps["noisy"].message or ""
    assert state.steps["noisy"].status is StepStatus.FAILED
    assert "exited with code 7" in message and message.endswith("THE-END")
    assert len(message) < 1000


def test_a_daemon_forked_without_exec_is_killed_after_its_attempt(
    write_runbook: WriteRunbook, workdir: Path
) -> None:
    path = write_runbook(
        steps(
            workdir, ("spawner", "daemon", {}), ("check", "daemon_gone", {"dependsOn": ["spawner"]})
        )
    )
    state = run(make_runner(path))
    assert state.status is ExecutionStatus.COMPLETED, state.message
    daemon = state.outputs["spawner"]["daemon"]
    # killed (and reaped by the runner, its subreaper) before the next step started
    assert state.outputs["check"]["state"] in ("gone", "Z")
    assert not pid_alive(daemon)


def test_a_killed_fork_server_loses_its_attempts_and_is_replaced(
    write_runbook: WriteRunbook, workdir: Path
) -> None:
    path = write_runbook(steps(workdir, ("slow", "slow_once", {"retryPolicy": {"maxAttempts": 2}})))
    runner = make_runner(path)
    killed: list[int] = []

    async def scenario() -> Any:
        task = asyncio.create_task(runner.run())
        while not (workdir / "slow.1.pid").exists():
            await asyncio.sleep(0.05)
        assert runner.fork_server is not None
        killed.append(runner.fork_server.proc.pid)
        os.kill(runner.fork_server.proc.pid, signal.SIGKILL)
        return await task

    state = asyncio.run(scenario()).state
    assert state.status is ExecutionStatus.COMPLETED
    assert state.outputs["slow"] == {"attempt": 2}
    first_attempt = int((workdir / "slow.1.pid").read_text())
    assert wait_for(lambda: not pid_alive(first_attempt), 10)  # died with its server
    assert any(
        e["eventType"] == "STEP_ATTEMPT_FAILED" and "fork server" in json.dumps(e["details"])
        for e in runner.chain.entries
    )


def test_has_children_sees_running_and_unreaped_children() -> None:
    pid = os.fork()
    if pid == 0:  # in a fresh child: pytest's own children do not count
        code = 1
        try:
            before = processes.has_children()
            grandchild = os.fork()
            if grandchild == 0:
                os._exit(0)
            during = processes.has_children()  # running, or exited and not reaped yet
            os.waitpid(grandchild, 0)
            code = 0 if (before, during, processes.has_children()) == (False, True, False) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_sweeps_are_shared_but_never_start_before_an_attempt_ended() -> None:
    scanned: list[set[str]] = []
    release = asyncio.Event()

    def scan(tokens: Any) -> None:
        scanned.append(set(tokens))

    async def scenario() -> None:
        sweeper = LeftoverSweeper(scan)
        first = asyncio.create_task(sweeper.after("a"))
        await asyncio.sleep(0)  # the first scan starts with "a" only
        later = [asyncio.create_task(sweeper.after(t)) for t in ("b", "c", "d")]
        await asyncio.gather(first, *later)
        release.set()
        assert sweeper.scans == len(scanned)

    asyncio.run(scenario())
    assert scanned[0] == {"a"}
    assert set().union(*scanned) == {"a", "b", "c", "d"}
    assert len(scanned) < 4  # b, c and d shared a scan
