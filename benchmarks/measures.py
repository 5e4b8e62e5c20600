"""From one run's raw observations to figures: pure, so it is unit-tested.

Transition overhead of a step = when its controller created the step's unit of work (the
operator: the step's Job; Argo: the step's pod) minus when the last of its dependencies'
pods was seen Succeeded. The pod-to-pod variant also holds the Job controller's share.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from . import audit
from .figures import OPERATOR, Figure, Samples
from .recorder import Key, Timeline
from .shapes import Shape

# The targets for the operator: metric -> (target, scenario it applies to or None: all).
TARGETS: dict[str, tuple[float, str | None]] = {
    "transition_ms_p50": (200, None),
    "transition_ms_p99": (1000, None),
    "step_jobs_per_min": (600, None),
    "api_writes_per_attempt": (4, None),
    "status_kib": (256, "fanout-1000"),
    "peak_rss_mib": (200, "concurrent-100"),
}


@dataclass
class RunMeasures:
    system: str
    scenario: str
    group: str
    shape: Shape
    units: dict[str, str]
    """Each execution or workflow, and the namespace it ran in."""
    timeline: Timeline
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    verbs: Counter[str]
    status_bytes: int
    control_plane_cpu_s: float = math.nan
    """apiserver + etcd + controller-manager + scheduler + kwok, during the run."""

    @property
    def attempts(self) -> int:
        return len(self.units) * len(self.shape)

    def key(self, unit: str, step: str) -> Key:
        return (self.units[unit], unit, step)

    def created(self) -> dict[Key, float]:
        """The controller's own object per step: Job (operator) or pod (Argo)."""
        tl = self.timeline
        return tl.job_created if self.system == OPERATOR else tl.pod_created


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def transitions(m: RunMeasures, created: dict[Key, float]) -> list[float]:
    """Milliseconds from the last dependency's pod done to the step's object created."""
    out: list[float] = []
    done = m.timeline.pod_done
    for unit in m.units:
        for step, deps in m.shape.items():
            if not deps:
                continue
            missing = [d for d in deps if m.key(unit, d) not in done]
            if missing or m.key(unit, step) not in created:
                raise SystemExit(f"bench: {m.system} {m.scenario}: no record of {unit}/{step}")
            last = max(done[m.key(unit, d)] for d in deps)
            out.append((created[m.key(unit, step)] - last) * 1000)
    return out


def throughput_per_min(m: RunMeasures) -> float:
    """Step attempts per minute between the first object created and the last pod done."""
    created, done = m.created(), m.timeline.pod_done
    span = max(done.values()) - min(created.values())
    return m.attempts / span * 60 if span > 0 else math.nan


def figures_of(m: RunMeasures) -> tuple[list[Figure], list[Samples]]:
    """Every figure of one run (one value each; `merge` folds the repeats)."""
    trans = transitions(m, m.created())
    pod_trans = transitions(m, m.timeline.pod_created)
    values: dict[str, tuple[str, str, float]] = {
        "step_jobs_per_min": ("steps/min", "higher", throughput_per_min(m)),
        "makespan_s": ("s", "lower", m.wall_s),
        "executions_per_min": ("units/min", "higher", len(m.units) / m.wall_s * 60),
        "transition_ms_p50": ("ms", "lower", percentile(trans, 50)),
        "transition_ms_p95": ("ms", "lower", percentile(trans, 95)),
        "transition_ms_p99": ("ms", "lower", percentile(trans, 99)),
        "pod_to_pod_ms_p50": ("ms", "lower", percentile(pod_trans, 50)),
        "pod_to_pod_ms_p99": ("ms", "lower", percentile(pod_trans, 99)),
        "api_writes_per_attempt": ("req", "lower", audit.writes(m.verbs) / m.attempts),
        "api_requests_per_attempt": ("req", "lower", sum(m.verbs.values()) / m.attempts),
        "peak_rss_mib": ("MiB", "lower", m.peak_rss_mib),
        "cpu_s": ("s", "lower", m.cpu_s),
        "cpu_ms_per_step": ("ms", "lower", m.cpu_s / m.attempts * 1000),
        "control_plane_cpu_ms_per_step": ("ms", "lower", m.control_plane_cpu_s / m.attempts * 1000),
        "status_kib": ("KiB", "lower", m.status_bytes / 1024),
    }
    if not trans:  # one-step units: there is no transition to measure
        for metric in [k for k in values if k.startswith(("transition_", "pod_to_pod_"))]:
            del values[metric]
    for verb in sorted(m.verbs):
        values[f"api_{verb}_per_attempt"] = ("req", "lower", m.verbs[verb] / m.attempts)
    figures = [
        Figure(m.group, m.scenario, metric, m.system, unit, better, [value],  # type: ignore[arg-type]
               target=_target(m, metric))
        for metric, (unit, better, value) in values.items()
    ]  # fmt: skip
    samples = (
        [
            Samples(m.group, m.scenario, "transition_ms", m.system, "ms", trans),
            Samples(m.group, m.scenario, "pod_to_pod_ms", m.system, "ms", pod_trans),
        ]
        if trans
        else []
    )
    return figures, samples


def _target(m: RunMeasures, metric: str) -> float | None:
    if m.system != OPERATOR or metric not in TARGETS:
        return None
    target, scenario = TARGETS[metric]
    return target if scenario in (None, m.scenario) else None
