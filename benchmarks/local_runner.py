"""Before/after figures for the local runner's process isolation and for ledger verification.

    .venv/bin/python -m benchmarks.local_runner [--steps 100] [--exec-steps 20] [--repeat 3]

Prints, for each repeat: steps/s with one process per attempt forked from the fork server
(`runbookctl run`'s default), with one interpreter per attempt (before the fork server), and
in-process; then ledger verify entries/s, both in wall-clock time and in CPU time (on a shared
machine the CPU time of this process is the steadier figure). `make bench` records the same
measurements (benchmarks/engine.py); this is the quick way to compare two checkouts.
"""

from __future__ import annotations

import argparse
import statistics
import time

from .engine import bench_ledger, bench_runner, transforms


def _verify_cpu(count: int) -> float:
    """Entries verified per second of this process's CPU time."""
    from datetime import UTC, datetime, timedelta

    from runbook_engine.audit import AuditChain, AuditEvent, verify
    from runbook_engine.enums import LogEventType

    chain = AuditChain("bench-verify")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(count):
        chain.append(
            AuditEvent(
                f"e{i}",
                LogEventType.STEP_SUCCEEDED,
                f"s{i % 100}",
                {"attempt": 1, "durationMs": i % 1000, "outputHash": "ab" * 32},
            ),
            actor_id="bench",
            timestamp=t0 + timedelta(milliseconds=i),
        )
    start = time.process_time()
    result = verify(chain.entries)
    elapsed = time.process_time() - start
    if not result.valid:
        raise SystemExit(f"bench: the ledger does not verify ({result.error})")
    return count / elapsed


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.local_runner", description=__doc__)
    ap.add_argument("--steps", type=int, default=100, help="steps of the fork-server run")
    ap.add_argument("--exec-steps", type=int, default=20, help="steps of the exec-per-attempt run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-exec", action="store_true", help="leave out the slow exec run")
    args = ap.parse_args(argv)
    rows: dict[str, list[float]] = {}
    for i in range(args.repeat):
        fork = args.steps / bench_runner(args.steps, transforms, isolation="process")
        rows.setdefault(f"process, fork server ({args.steps} steps) steps/s", []).append(fork)
        if not args.skip_exec:
            seconds = bench_runner(args.exec_steps, transforms, "process", fork_server=False)
            label = f"process, interpreter per attempt ({args.exec_steps} steps) steps/s"
            rows.setdefault(label, []).append(args.exec_steps / seconds)
        inline = 1000 / bench_runner(1000)
        rows.setdefault("inline (1000 steps) steps/s", []).append(inline)
        _, wall = bench_ledger()
        rows.setdefault("ledger verify entries/s (wall)", []).append(wall)
        rows.setdefault("ledger verify entries/s (CPU)", []).append(_verify_cpu(100_000))
        print(f"repeat {i + 1}/{args.repeat} done", flush=True)
    for label, values in rows.items():
        spread = f"[{min(values):.4g}–{max(values):.4g}]"
        print(f"{label:58} median {statistics.median(values):10.4g} {spread}")


if __name__ == "__main__":
    main()
