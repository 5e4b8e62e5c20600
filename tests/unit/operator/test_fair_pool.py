"""The fair pool behind the reconcile workers and the Job creators: keys (namespaces) take turns.

Each test parks the pool's workers behind a gate first, queues calls while nothing runs, then
opens the gate and records the order the calls ran in.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future, wait
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook_operator.execution.fair_pool import FairPool

TIMEOUT = 10


@contextmanager
def parked(pool: FairPool) -> Iterator[threading.Event]:
    """Every worker of `pool` blocked on a gate (under keys of their own that leave the ring
    once taken); the gate opens at the end of the block."""
    gate = threading.Event()
    started = threading.Semaphore(0)

    def block() -> None:
        started.release()
        gate.wait(TIMEOUT)

    for i in range(pool.workers):
        pool.submit(f"gate-{i}", block)
    for _ in range(pool.workers):
        assert started.acquire(timeout=TIMEOUT)
    try:
        yield gate
    finally:
        gate.set()


def serve(keys: list[str], workers: int = 1) -> list[tuple[str, int]]:
    """Queue one call per entry of `keys` (the i-th call of a key is numbered i) while the
    workers are parked; return the order they ran in."""
    pool = FairPool(workers, "test")
    ran: list[tuple[str, int]] = []
    lock = threading.Lock()
    futures: list[Future[None]] = []

    def record(key: str, i: int) -> None:
        with lock:
            ran.append((key, i))

    seen: Counter[str] = Counter()
    with parked(pool):
        for key in keys:
            futures.append(pool.submit(key, record, key, seen[key]))
            seen[key] += 1
    _, not_done = wait(futures, TIMEOUT)
    assert not not_done
    pool.shutdown()
    return ran


def round_robin(keys: list[str]) -> list[tuple[str, int]]:
    """The model: in round r, each key with more than r calls runs its r-th, keys in the order
    they first arrived."""
    counts = Counter(keys)
    order = list(dict.fromkeys(keys))
    return [
        (key, r) for r in range(max(counts.values(), default=0)) for key in order if counts[key] > r
    ]


def test_keys_take_turns_instead_of_first_come_first_served() -> None:
    keys = ["a"] * 4 + ["b"] * 2 + ["c"]
    assert serve(keys) == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("a", 2), ("a", 3)]


def test_a_key_with_500_queued_calls_does_not_hold_back_another_keys_next_call() -> None:
    ran = serve(["busy"] * 500 + ["quiet"])
    assert ran.index(("quiet", 0)) == 1  # right after busy's first, not after all 500


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from("abcde"), max_size=40))
def test_the_order_is_round_robin_over_the_keys_in_order_of_arrival(keys: list[str]) -> None:
    assert serve(keys) == round_robin(keys)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=60))
def test_a_call_waits_for_at_most_one_call_of_each_other_key_per_call_ahead_of_it(
    keys: list[str],
) -> None:
    """Bounded wait: the i-th call of a key starts after at most i+1 calls of any other key."""
    ran = serve(keys)
    for at, (key, i) in enumerate(ran):
        before = Counter(k for k, _ in ran[:at] if k != key)
        assert all(n <= i + 1 for n in before.values()), (key, i, before)


def test_no_starvation_by_a_key_that_keeps_queueing() -> None:
    """A key whose calls queue the next call as they run never shuts out another key."""
    pool = FairPool(2, "test")
    order: list[str] = []
    lock = threading.Lock()
    endless = 0

    def greedy() -> None:
        nonlocal endless
        with lock:
            order.append("greedy")
            endless += 1
            again = endless < 2000
        if again:
            pool.submit("greedy", greedy)

    def polite() -> None:
        with lock:
            order.append("polite")

    with parked(pool):
        for _ in range(10):
            pool.submit("greedy", greedy)
        politeness = [pool.submit("polite", polite) for _ in range(20)]
    wait(politeness, TIMEOUT)
    with lock:
        last_polite = max(i for i, who in enumerate(order) if who == "polite")
        greedy_until_last = order[:last_polite].count("greedy")
    assert all(f.done() for f in politeness)
    # the polite key's 20 calls ran turn about with the greedy key's, not after its 2,000
    assert greedy_until_last <= 20 + pool.workers, order[: last_polite + 1]
    pool.shutdown()


def test_only_keys_with_queued_calls_are_kept() -> None:
    pool = FairPool(1, "test")
    with parked(pool):
        for i in range(100):
            pool.submit(f"ns-{i}", lambda: None)
        assert len(pool.pending()) == 100
    deadline = threading.Event()
    for _ in range(100):
        if not pool.pending():
            break
        deadline.wait(0.05)
    assert pool.pending() == {}
    pool.shutdown()


def test_a_lone_key_gets_every_worker() -> None:
    pool = FairPool(4, "test")
    running = threading.Semaphore(0)
    release = threading.Event()

    def hold() -> None:
        running.release()
        release.wait(TIMEOUT)

    futures = [pool.submit("only", hold) for _ in range(4)]
    for _ in range(4):  # all four at once: would time out with fewer threads
        assert running.acquire(timeout=TIMEOUT)
    release.set()
    wait(futures, TIMEOUT)
    pool.shutdown()


def test_results_and_errors_reach_the_caller_and_a_cancelled_call_never_runs() -> None:
    pool = FairPool(1, "test")
    ran: list[str] = []

    def boom() -> None:
        raise KeyError("boom")

    with parked(pool):
        result = pool.submit("a", lambda x: x * 2, 21)
        error = pool.submit("a", boom)
        cancelled = pool.submit("b", ran.append, "cancelled")
        assert cancelled.cancel()
    assert result.result(TIMEOUT) == 42
    with pytest.raises(KeyError, match="boom"):
        error.result(TIMEOUT)
    with pytest.raises(CancelledError):
        cancelled.result(TIMEOUT)
    pool.submit("a", lambda: None).result(TIMEOUT)
    assert ran == []
    pool.shutdown()


def test_shutdown_cancelling_what_has_not_started_refuses_more() -> None:
    pool = FairPool(1, "test")
    gate, started = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return gate.wait(TIMEOUT)

    running = pool.submit("a", hold)
    assert started.wait(TIMEOUT)
    queued = pool.submit("b", lambda: None)
    pool.shutdown(wait=False, cancel_futures=True)  # what the operator does at exit
    gate.set()
    assert running.result(TIMEOUT) is True
    assert queued.cancelled()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit("c", lambda: None)


def test_shutdown_without_cancelling_runs_what_is_queued_then_ends_the_workers() -> None:
    pool = FairPool(2, "test")
    ran: list[str] = []
    with parked(pool):
        futures = [pool.submit(key, ran.append, key) for key in ("a", "b", "a")]
        closing = threading.Thread(target=pool.shutdown)  # waits for the workers
        closing.start()
    closing.join(TIMEOUT)
    assert not closing.is_alive()
    assert all(f.done() and not f.cancelled() for f in futures)
    assert sorted(ran) == ["a", "a", "b"]
