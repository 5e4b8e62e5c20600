"""Operator vs Argo Workflows on the same cluster: the same DAGs, pods on kwok nodes.

Each (scenario, system, repeat) runs in a namespace of its own with a freshly started
controller, so peak RSS, CPU seconds and the audit-log slice belong to that run alone.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from runbook_operator import leadership

from . import audit, workloads
from .controllers import Controllers, control_plane_cpu_s, start_argo, start_operator
from .environment import BenchEnv, ensure_namespace, prepare
from .figures import ARGO, OPERATOR, Figure, Samples
from .measures import RunMeasures, figures_of
from .recorder import Recorder, Timeline
from .shapes import Shape, chain, fan_out_in

PREFIX = "bench-"
USERS = {OPERATOR: "bench:runbook-operator", ARGO: "bench:argo-workflow-controller"}
TERMINAL = {
    OPERATOR: {"COMPLETED", "FAILED", "CANCELLED"},
    ARGO: {"Succeeded", "Failed", "Error"},
}
SUCCESS = {OPERATOR: "COMPLETED", ARGO: "Succeeded"}
FAILURES: list[str] = []
"""Runs that broke (their figures are left out); the report lists them."""


@dataclass(frozen=True)
class Scenario:
    name: str
    units: int  # executions (operator) or workflows (Argo), all submitted at once
    shape: Shape
    kwok: bool = True
    systems: tuple[str, ...] = (OPERATOR, ARGO)
    timeout_s: float = 1800
    shards: int = 1
    """Operator replicas, each watching a namespace of its own (the units are dealt out)."""
    queued: int = 0
    """Units created right after the first `units`, while those run: they queue behind them
    in the controller (the CNOE-shaped scenario). All of them count as the run's units."""

    @property
    def total(self) -> int:
        return self.units + self.queued

    @property
    def group(self) -> str:
        return "kwok" if self.kwok else "kubelet"


SCENARIOS = (
    Scenario("chains-20x50", 20, chain(50)),
    Scenario("fanout-1000", 1, fan_out_in(1000)),
    Scenario("concurrent-100", 100, chain(10)),
    # The shape of CNOE's published Argo Workflows scalability test: many one-step workflows
    # at once and more queued behind them; executions per minute and the time to drain.
    Scenario("cnoe-1000-5000", 1000, chain(1), queued=5000, timeout_s=3600),
    # Scaling out: the same load over two operators, as two chart releases would run it.
    Scenario("concurrent-100-2-shards", 100, chain(10), systems=(OPERATOR,), shards=2),
    # The same kind of chain with real pods: how much of a step is pod start-up.
    Scenario("chains-2x10", 2, chain(10), kwok=False, systems=(OPERATOR,)),
)


BENCH_SCOPE = (f"{PREFIX}op-*",)
"""Every namespace the benchmark's own operators watch (one glob, or shards within it)."""
OPERATOR_LABEL = "app.kubernetes.io/name=runbook-operator"


def other_operators(api: client.ApiClient, scope: tuple[str, ...] = BENCH_SCOPE) -> list[str]:
    """Runbook operators already reconciling namespaces of `scope`, anywhere in the cluster:
    a live leadership Lease whose scope overlaps (any lease namespace: a chart install, a
    local `python -m runbook_operator`, another benchmark), or a chart Deployment with ready
    pods watching an overlapping scope (an operator from before Leases)."""
    now = datetime.now(UTC)
    timing = leadership.Timing()
    objs = _custom(api)
    found = []
    leases: Any = objs.list_cluster_custom_object(
        "coordination.k8s.io", "v1", "leases", label_selector=leadership.SELECTOR
    )
    for lease in leases["items"]:
        held = leadership.holding_of(lease, timing.duration_s)
        if leadership.expired(held, now, 0.0, None, timing):
            continue
        if held.scope is None or leadership.scopes_overlap(scope, held.scope):
            said = leadership.standby_message(held, timing.skew_s)
            found.append(said.removeprefix("standing by: "))
    deployments: Any = objs.list_cluster_custom_object(
        "apps", "v1", "deployments", label_selector=OPERATOR_LABEL
    )
    for deploy in deployments["items"]:
        if not (deploy.get("status") or {}).get("readyReplicas"):
            continue
        containers = deploy["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for c in containers for e in c.get("env") or []}
        watched = leadership.scope_of((env.get("RUNBOOK_NAMESPACES") or "").split(","))
        if leadership.scopes_overlap(scope, watched):
            meta = deploy["metadata"]
            where = f"{meta['namespace']}/{meta['name']}"
            found.append(f"Deployment {where} (scope: {leadership.describe(watched)})")
    return found


def refuse_if_others_reconcile(api: client.ApiClient) -> None:
    """Honest figures: another operator would reconcile the benchmark's executions too (its
    Jobs beside ours, its API calls and CPU in our figures). Say what to stop, and stop."""
    others = other_operators(api)
    if others:
        listed = "\n  ".join(dict.fromkeys(others))
        raise SystemExit(
            "bench: another runbook operator reconciles the namespaces the benchmark uses "
            f"({', '.join(BENCH_SCOPE)}):\n  {listed}\n"
            "Its Jobs and API calls would mix with the measured operator's. Stop it first "
            "(`make undeploy` for the chart deployed by `make deploy`; or end that "
            "`python -m runbook_operator` or other `make bench`), then run `make bench` again. "
            "A Lease left by a killed operator lapses by itself within "
            f"{leadership.Timing().duration_s + leadership.Timing().skew_s} s."
        )


def _custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


SUBMITTERS = 8
"""Clients creating units side by side: 6,000 creates one by one would take the client longer
than the controllers need to start them, and nothing would queue."""


def _submit(api: client.ApiClient, system: str, sc: Scenario, spaces: list[str]) -> dict[str, str]:
    """Create the units, dealt out over `spaces`: the first `sc.units` at once, then the
    `sc.queued` rest. Each unit's namespace by name."""
    objs = _custom(api)
    where = {f"u{i:0{max(3, len(str(sc.total - 1)))}d}": spaces[i % len(spaces)]
             for i in range(sc.total)}  # fmt: skip
    if system == OPERATOR:
        rb = workloads.runbook(sc.name, sc.shape)
        for ns in spaces:
            objs.create_namespaced_custom_object(
                workloads.GROUP, workloads.VERSION, ns, "runbooks", rb
            )

    def create(name: str) -> None:
        ns = where[name]
        if system == OPERATOR:
            body = workloads.execution(name, sc.name)
            objs.create_namespaced_custom_object(
                workloads.GROUP, workloads.VERSION, ns, "runbookexecutions", body
            )
        else:
            body = workloads.workflow(name, sc.shape)
            objs.create_namespaced_custom_object("argoproj.io", "v1alpha1", ns, "workflows", body)

    names = list(where)
    if sc.total <= 100:
        for name in names:
            create(name)
        return where
    with ThreadPoolExecutor(SUBMITTERS) as pool:
        list(pool.map(create, names[: sc.units]))
        list(pool.map(create, names[sc.units :]))
    return where


def _list_units(api: client.ApiClient, system: str, ns: str) -> list[dict[str, Any]]:
    got: Any
    if system == OPERATOR:
        got = _custom(api).list_namespaced_custom_object(
            workloads.GROUP, workloads.VERSION, ns, "runbookexecutions"
        )
    else:
        got = _custom(api).list_namespaced_custom_object("argoproj.io", "v1alpha1", ns, "workflows")
    return list(got["items"])


def _phase(system: str, unit: dict[str, Any]) -> str:
    return str((unit.get("status") or {}).get("phase") or "")


def _wait_done(
    api: client.ApiClient, system: str, sc: Scenario, spaces: list[str]
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + sc.timeout_s
    # Listing thousands of units four times a second would load the apiserver being measured.
    every = min(5.0, max(0.25, sc.total / 2000))
    while time.monotonic() < deadline:
        units = [u for ns in spaces for u in _list_units(api, system, ns)]
        if len(units) == sc.total and all(_phase(system, u) in TERMINAL[system] for u in units):
            bad = [u["metadata"]["name"] for u in units if _phase(system, u) != SUCCESS[system]]
            if bad:
                raise SystemExit(f"bench: {system} {sc.name}: {bad[:5]} did not succeed")
            return units
        time.sleep(every)
    raise SystemExit(f"bench: {system} {sc.name}: not done after {sc.timeout_s:.0f} s")


def _delete_namespace(api: client.ApiClient, ns: str, timeout: float = 600) -> None:
    core = client.CoreV1Api(api)
    core.delete_namespace(ns)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            core.read_namespace(ns)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.5)
    raise SystemExit(f"bench: namespace {ns} still there after {timeout:.0f} s")


def _clear_leftover(api: client.ApiClient, ns: str) -> None:
    """A broken run leaves its namespace for a look (`make bench` said which); the next run
    of that scenario starts clean. Its executions' finalizers go first: no operator runs."""
    try:
        client.CoreV1Api(api).read_namespace(ns)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    objs = _custom(api)
    for unit in _list_units(api, OPERATOR, ns):
        objs.patch_namespaced_custom_object(
            workloads.GROUP, workloads.VERSION, ns, "runbookexecutions",
            unit["metadata"]["name"], {"metadata": {"finalizers": None}},
        )  # fmt: skip
    _delete_namespace(api, ns)


def _start(
    env: BenchEnv, system: str, sc: Scenario, spaces: list[str], folder: Path
) -> Controllers:
    if system == OPERATOR:
        kc = env.kubeconfig("bench-operator")
        # One replica watches them all by glob; shards each watch one namespace, exactly.
        watch = [f"{PREFIX}op-*"] if sc.shards == 1 else spaces
        return Controllers(
            [
                start_operator(kc, folder / f"shard-{i}", ns, "bench-home", kwok=sc.kwok)
                for i, ns in enumerate(watch)
            ]
        )
    return Controllers(
        [start_argo(env.argo_binary, env.kubeconfig("bench-argo"), folder, "bench-home")]
    )


def run_once(env: BenchEnv, rec: Recorder, system: str, sc: Scenario, index: int) -> RunMeasures:
    """One scenario, one system, one repeat: submit, wait, measure, clean up."""
    ns = f"{PREFIX}{'op' if system == OPERATOR else 'argo'}-{sc.name}-{index}"
    spaces = [ns] if sc.shards == 1 else [f"{ns}-s{i}" for i in range(sc.shards)]
    for space in spaces:
        _clear_leftover(env.api, space)
        ensure_namespace(env.api, space)
    rec.forget(spaces)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        ctl = _start(env, system, sc, spaces, Path(tmp))
        try:
            start, cpu0, t0 = audit.offset(env.audit_log), ctl.cpu_s(), time.monotonic()
            plane0 = control_plane_cpu_s(env.cluster_dir)
            where = _submit(env.api, system, sc, spaces)
            units = _wait_done(env.api, system, sc, spaces)
            wall, cpu, rss = time.monotonic() - t0, ctl.cpu_s() - cpu0, ctl.peak_rss_mib()
            plane = control_plane_cpu_s(env.cluster_dir) - plane0
            time.sleep(1.0)  # the audit log is written after the response; let it catch up
            verbs = audit.count_verbs(
                env.audit_log, start, audit.offset(env.audit_log), USERS[system], spaces
            )
            status_bytes = max(len(_json(u.get("status") or {})) for u in units)
            for space in spaces:
                _delete_namespace(env.api, space)
        except BaseException:
            ctl.print_logs()
            raise
        finally:
            ctl.stop()
    timeline = rec.timeline.of_namespaces(spaces)
    return RunMeasures(
        system, sc.name, sc.group, sc.shape, where, timeline, wall, cpu, rss, verbs,
        status_bytes, plane,
    )  # fmt: skip


def _json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _plan(
    repeat: int, argo_repeat: int, systems: tuple[str, ...]
) -> Iterator[tuple[str, Scenario, int]]:
    for sc in SCENARIOS:
        for system in sc.systems:
            if system in systems:
                for i in range(repeat if system == OPERATOR else argo_repeat):
                    yield system, sc, i


def run(
    repeat: int,
    progress: Any,
    *,
    argo_repeat: int = 1,
    systems: tuple[str, ...] = (OPERATOR, ARGO),
    only: Callable[[Scenario], bool] = lambda sc: True,
) -> tuple[list[Figure], list[Samples]]:
    """Every scenario for both systems (Argo's runs are long: `argo_repeat` of them)."""
    plan = [(s, sc, i) for s, sc, i in _plan(repeat, argo_repeat, systems) if only(sc)]
    task = progress.add_task("cluster: preparing", total=len(plan))
    env = prepare()
    refuse_if_others_reconcile(env.api)
    figures: list[Figure] = []
    samples: list[Samples] = []
    with Recorder(env.api, PREFIX) as rec:
        for system, sc, i in plan:
            progress.update(task, description=f"cluster: {system} {sc.name} #{i + 1}")
            try:
                f, s = figures_of(run_once(env, rec, system, sc, i))
            except SystemExit as failed:  # one broken run: say so, keep the others' figures
                FAILURES.append(f"{system} {sc.name} #{i + 1}: {failed}")
                progress.console.print(f"[red]{FAILURES[-1]}")
                f, s = [], []
            figures += f
            samples += s
            progress.advance(task)
    return figures, samples


__all__ = ["SCENARIOS", "Scenario", "Timeline", "run"]
