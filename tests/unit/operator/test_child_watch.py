"""The operator's own Job/pod watches: label-selected, continued from the last version, listed
again when the version expired, and waking an execution only for events that matter."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from runbook_operator import kube as k
from runbook_operator.execution.child_watch import SELECTOR, ChildWatch, scopes
from runbook_operator.execution.children import ChildCache

from .kubefakes import REF, job, pod, terminated


def _versioned(obj: dict[str, Any], version: int, namespace: str = "ns1") -> dict[str, Any]:
    obj["metadata"] = {**obj["metadata"], "resourceVersion": str(version), "namespace": namespace}
    return obj


@dataclass
class FakeKube:
    """Scripted LIST answers and WATCH streams; records what was asked."""

    lists: list[tuple[list[dict[str, Any]], str]]
    watches: list[list[dict[str, Any]] | Exception]
    asked: list[tuple[str, str | None, str, str]] = field(default_factory=list)

    def list_versioned(self, res: k.Resource, ns: str | None, selector: str) -> Any:
        self.asked.append(("list", ns, selector, ""))
        return self.lists.pop(0)

    def watch(self, res: k.Resource, ns: str | None, selector: str, version: str) -> Iterator[Any]:
        self.asked.append(("watch", ns, selector, version))
        script = self.watches.pop(0)
        if isinstance(script, Exception):
            raise script
        yield from script


class Done(Exception):
    pass


def _run(kube: FakeKube, cache: ChildCache, namespaces: tuple[str, ...] = ("ns1",)) -> list[str]:
    woken: list[str] = []
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if not kube.watches:
            raise Done

    watcher = ChildWatch(kube, cache, namespaces, woken.append, sleep=sleep)  # type: ignore[arg-type]
    _, ours = scopes(namespaces)
    with pytest.raises(Done):
        watcher.run("pod", k.PODS, "ns1", ours)
    return woken


def test_events_that_change_an_outcome_wake_the_execution_once() -> None:
    cache = ChildCache()
    cache.prime(REF.uid, [], [])
    started = _versioned(pod("a", 1, {"running": {}}), 5)
    ended = _versioned(pod("a", 1, terminated('{"success": true}')), 6)
    kube = FakeKube(
        lists=[([started], "5")],
        watches=[
            [
                {"type": "MODIFIED", "object": started},  # nothing new: no wake
                {"type": "MODIFIED", "object": ended},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
            ],
            Done(),
        ],
    )
    assert _run(kube, cache) == [REF.uid]
    # Continued from the bookmark's version, never without the server-side selector.
    assert ("watch", "ns1", SELECTOR, "5") in kube.asked
    assert ("watch", "ns1", SELECTOR, "9") in kube.asked
    assert all(a[2] == SELECTOR for a in kube.asked)


def test_an_expired_version_lists_again() -> None:
    cache = ChildCache()
    kube = FakeKube(
        lists=[([], "5"), ([], "12")],
        watches=[k.Gone(410, "Expired", "too old"), Done()],
    )
    _run(kube, cache)
    assert [a[0] for a in kube.asked] == ["list", "watch", "list", "watch"]
    assert kube.asked[-1][3] == "12"


def test_an_api_failure_backs_off_and_lists_again() -> None:
    cache = ChildCache()
    kube = FakeKube(
        lists=[([], "1"), ([], "2")],
        watches=[k.KubeError(0, "Unreachable", "refused"), Done()],
    )
    _run(kube, cache)
    assert [a[0] for a in kube.asked] == ["list", "watch", "list", "watch"]


def test_globs_watch_the_cluster_and_keep_only_matching_namespaces() -> None:
    where, ours = scopes(("team-*",))
    assert where == [None]
    assert ours("team-a") and not ours("kube-system")
    exact, everything = scopes(("a", "b"))
    assert exact == ["a", "b"] and everything("anything")
    assert scopes(())[0] == [None]


def test_a_job_in_a_namespace_not_watched_is_ignored() -> None:
    cache = ChildCache()
    cache.prime(REF.uid, [], [])
    failed = _versioned(job("a", 1, conditions=["Failed"]), 3, namespace="kube-system")
    woken: list[str] = []
    watcher = ChildWatch(FakeKube([], []), cache, ("team-*",), woken.append)  # type: ignore[arg-type]
    _, ours = scopes(("team-*",))
    watcher.seen("job", "ADDED", failed, ours)
    assert woken == [] and cache.get(REF.uid, 60) == ([], [])


def test_watch_lines_are_split_and_bounded() -> None:
    lines = list(k._lines([b'{"a":1}\n{"b"', b':2}\n\n{"c":3}']))
    assert lines == [b'{"a":1}', b'{"b":2}', b'{"c":3}']
    with pytest.raises(ValueError, match="longer than"):
        list(k._lines([b"x" * (k.WATCH_LINE_MAX + 1)]))


def test_the_running_jobs_gauge_is_derived_from_the_cache() -> None:
    cache = ChildCache()
    cache.prime(REF.uid, [job("a", 1), job("b", 1, conditions=["Complete"])], [])
    assert cache.running_jobs() == 1
    cache.forget(REF.uid)
    assert cache.running_jobs() == 1  # its execution is forgotten, the Job still runs
    cache.observe("job", "DELETED", job("a", 1))
    assert cache.running_jobs() == 0 and cache.size() == 0
