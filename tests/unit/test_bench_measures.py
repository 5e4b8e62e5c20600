"""From one benchmark run's observations to its figures (pure: no cluster)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from benchmarks.figures import ARGO, OPERATOR
from benchmarks.measures import RunMeasures, figures_of, percentile, transitions
from benchmarks.recorder import Timeline, step_key
from benchmarks.shapes import chain, edges, fan_out_in

NS = "bench-op-x-0"


def run(system: str, shape: dict[str, list[str]], timeline: Timeline) -> RunMeasures:
    verbs = Counter({"create": 6, "patch": 3, "get": 9})
    return RunMeasures(
        system, "x", "kwok", shape, {"u0": NS}, timeline, 10.0, 1.5, 80.0, verbs, 2048, 3.0
    )


def test_a_transition_is_from_the_last_dependency_done_to_the_step_created() -> None:
    shape = {"a": [], "b": [], "c": ["a", "b"]}
    tl = Timeline(
        pod_created={(NS, "u0", s): t for s, t in {"a": 0.0, "b": 0.0, "c": 5.4}.items()},
        pod_done={(NS, "u0", "a"): 1.0, (NS, "u0", "b"): 5.0, (NS, "u0", "c"): 6.0},
        job_created={(NS, "u0", s): t for s, t in {"a": 0.0, "b": 0.0, "c": 5.25}.items()},
    )
    assert transitions(run(OPERATOR, shape, tl), tl.job_created) == [pytest.approx(250)]
    assert transitions(run(ARGO, shape, tl), tl.pod_created) == [pytest.approx(400)]


def test_a_step_never_seen_stops_the_benchmark() -> None:
    tl = Timeline(pod_done={(NS, "u0", "s000"): 1.0})
    with pytest.raises(SystemExit, match="no record of u0/s001"):
        transitions(run(ARGO, chain(2), tl), tl.pod_created)


def test_figures_per_attempt_and_targets_only_for_the_operator() -> None:
    shape = chain(3)
    created = {(NS, "u0", s): float(i) for i, s in enumerate(shape)}
    done = {(NS, "u0", s): i + 0.9 for i, s in enumerate(shape)}
    tl = Timeline(pod_created=created, pod_done=done, job_created=created)
    figs = {f.metric: f for f in figures_of(run(OPERATOR, shape, tl))[0]}
    assert figs["api_writes_per_attempt"].values == [3.0]  # (6 creates + 3 patches) / 3
    assert figs["api_requests_per_attempt"].values == [6.0]
    assert figs["step_jobs_per_min"].values == [pytest.approx(3 / 2.9 * 60)]
    assert figs["transition_ms_p50"].values == [pytest.approx(100)]
    assert figs["transition_ms_p50"].target == 200
    assert figs["status_kib"].target is None  # that target is for the 1,000-step fan-out
    argo = {f.metric: f for f in figures_of(run(ARGO, shape, tl))[0]}
    assert argo["transition_ms_p50"].target is None


def test_a_sharded_run_keys_each_unit_by_its_own_namespace() -> None:
    shape = chain(2)
    a, b = f"{NS}-s0", f"{NS}-s1"
    tl = Timeline(
        pod_done={(a, "u0", "s000"): 1.0, (b, "u1", "s000"): 2.0},
        job_created={(a, "u0", "s001"): 1.1, (b, "u1", "s001"): 2.3},
    ).of_namespaces([a, b])
    m = RunMeasures(
        OPERATOR, "x", "kwok", shape, {"u0": a, "u1": b}, tl, 10.0, 1.5, 80.0, Counter(), 1, 3.0,
    )  # fmt: skip
    assert transitions(m, tl.job_created) == [pytest.approx(100), pytest.approx(300)]
    assert not Timeline(pod_done=tl.pod_done).of_namespaces([NS]).pod_done


def test_percentile_is_nearest_rank() -> None:
    assert percentile([5, 1, 4, 2, 3], 50) == 3
    assert percentile(list(range(1, 101)), 99) == 99
    assert math.isnan(percentile([], 50))


def test_shapes_and_their_edges() -> None:
    assert edges(chain(3)) == [("s000", "s001"), ("s001", "s002")]
    fan = fan_out_in(5)
    assert len(fan) == 5 and fan["sink"] == ["m0000", "m0001", "m0002"]
    assert len(edges(fan)) == 6


def test_pods_and_jobs_of_either_system_map_to_their_step() -> None:
    ours = {
        "namespace": NS,
        "labels": {"runbook-operator.dev/execution": "u0", "runbook-operator.dev/step": "s001"},
    }
    argo = {
        "namespace": NS,
        "labels": {"workflows.argoproj.io/workflow": "u0"},
        "annotations": {"workflows.argoproj.io/node-name": "u0.s001"},
    }
    assert step_key(ours) == step_key(argo) == (NS, "u0", "s001")
    assert step_key({"namespace": NS, "labels": {}}) is None


def test_a_pod_is_done_when_its_containers_exited_0_even_before_its_phase_says_so() -> None:
    from benchmarks.recorder import pod_done

    exited = {"terminated": {"exitCode": 0}}
    assert pod_done({"status": {"phase": "Running", "containerStatuses": [{"state": exited}]}})
    assert pod_done({"status": {"phase": "Succeeded"}})
    failed = {"terminated": {"exitCode": 1}}
    assert not pod_done({"status": {"phase": "Running", "containerStatuses": [{"state": failed}]}})
    assert not pod_done({"status": {"phase": "Pending"}})


def test_one_step_units_give_executions_per_minute_and_no_transition_figures() -> None:
    shape = chain(1)
    units = {f"u{i}": NS for i in range(4)}
    created = {(NS, u, "s000"): float(i) for i, u in enumerate(units)}
    done = {(NS, u, "s000"): i + 0.5 for i, u in enumerate(units)}
    tl = Timeline(pod_created=created, pod_done=done, job_created=created)
    verbs = Counter({"create": 8})
    m = RunMeasures(OPERATOR, "cnoe", "kwok", shape, units, tl, 12.0, 1.0, 80.0, verbs, 10, 1.0)
    figures, samples = figures_of(m)
    figs = {f.metric: f for f in figures}
    assert figs["executions_per_min"].values == [pytest.approx(4 / 12 * 60)]
    assert not [k for k in figs if k.startswith(("transition_", "pod_to_pod_"))]
    assert samples == []
    assert figs["api_writes_per_attempt"].values == [2.0]


def test_the_cnoe_scenario_queues_five_thousand_behind_a_thousand() -> None:
    from benchmarks.cluster import SCENARIOS

    cnoe = next(sc for sc in SCENARIOS if sc.name.startswith("cnoe"))
    assert (cnoe.units, cnoe.queued, cnoe.total, len(cnoe.shape)) == (1000, 5000, 6000, 1)
    assert set(cnoe.systems) == {OPERATOR, ARGO}


def test_a_cleared_namespace_leaves_nothing_in_the_next_runs_timeline() -> None:
    """A broken run's namespace is cleared and made again under the same name: the events of
    its objects being deleted must not pass for the new run's (negative transitions were
    recorded so once)."""
    from benchmarks.recorder import Recorder

    rec = Recorder.__new__(Recorder)  # the handlers only: no watch threads
    rec.timeline, rec._prefix, rec._lock = Timeline(), "bench-", __import__("threading").Lock()
    labels = {"runbook-operator.dev/execution": "u0", "runbook-operator.dev/step": "a"}
    old = {"metadata": {"namespace": NS, "labels": labels}, "status": {"phase": "Succeeded"}}
    rec._pod(old, 1.0)
    rec.forget([NS])
    assert rec.timeline == Timeline()
    dying = {**old, "metadata": {**old["metadata"], "deletionTimestamp": "2026-12-03T00:00:00Z"}}
    events = iter([dying, old])
    rec._events = lambda lister: events  # type: ignore[method-assign]
    handled: list[dict[str, Any]] = []
    rec._run(lambda **_: None, lambda obj, now: handled.append(obj))
    assert handled == [old]
