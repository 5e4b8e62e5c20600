"""Re-running a finished execution: which steps run again, which are reused (pure).

A re-run is a new execution that reuses the outputs of steps its parent finished with
SUCCEEDED and runs the others. Every step of the re-run's plan falls in one of three groups:

- **run** (selected): runs again, from PENDING, with the re-run's input;
- **reused**: not selected and SUCCEEDED in the parent: SUCCEEDED at once, with the parent's
  output (byte for byte: the same canonical JSON), KPIs and evidence, marked `reusedFrom`;
- **not selected**: neither (only possible with `from`/`only`): SKIPPED, blocked by
  `<not-selected>`, so it does not count as a success of the re-run.

Which steps are selected:

- default (neither `from` nor `only`): every step that did not SUCCEED in the parent, plus all
  of their descendants;
- `from: [s, …]`: those steps and everything downstream of them;
- `only: [s, …]`: exactly those steps.

A selected step must find every input it needs: each of its dependencies is selected too or
reused. When not (with `from`/`only`: an upstream step the parent did not finish), the re-run
is refused naming the step and the missing dependency. The default selection always passes.
The parent must be finished (COMPLETED, FAILED or CANCELLED), and the re-run must select at
least one step. Reused outputs are checked against the hashes the parent's ledger recorded
(`output_problems`): an output changed since is refused, never reused.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from immutables import Map

from runbook_engine.canonical import canonical_sha256
from runbook_engine.enums import ExecutionStatus, LogEventType, StepStatus
from runbook_engine.plan import Plan
from runbook_engine.problems import Problem
from runbook_engine.scheduler import new_execution, reindex
from runbook_engine.state import ExecutionState, StepState

NOT_SELECTED = "<not-selected>"
"""`blockedBy` of a step a re-run neither runs nor reuses."""

FINISHED_PHASES = frozenset(
    {ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)


class RerunRefused(ValueError):
    """The re-run cannot start; `problems` name the field and the reason."""

    def __init__(self, reason: str, problems: Sequence[Problem]) -> None:
        self.reason = reason
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class Selection:
    """The re-run's steps by group, each in definition order."""

    run: tuple[str, ...]
    reused: tuple[str, ...]
    not_selected: tuple[str, ...]


def parent_not_finished(phase: str | None) -> RerunRefused | None:
    """A running (or never started) parent cannot be re-run: its outcomes are not final."""
    if phase in {str(p) for p in FINISHED_PHASES}:
        return None
    return RerunRefused(
        "ParentNotFinished",
        [
            Problem(
                "spec.rerunOf",
                f"the parent execution is {phase or 'not started'}; a re-run needs it "
                "COMPLETED, FAILED or CANCELLED",
            )
        ],
    )


def _downstream(plan: Plan, roots: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for root in roots:
        out.add(root)
        out.update(plan.descendants(root))
    return out


def select(
    plan: Plan,
    parent: Mapping[str, StepStatus],
    *,
    rerun_from: Collection[str] = (),
    only: Collection[str] = (),
) -> Selection:
    """The groups of the re-run's steps (module docstring), or RerunRefused.

    `parent` maps the parent's step ids to their final status; a step of `plan` the parent did
    not have (a re-run with `latest`) counts as not SUCCEEDED."""
    if rerun_from and only:
        raise RerunRefused("InvalidRerun", [Problem("spec", "give from or only, not both")])
    for what, chosen in (("from", rerun_from), ("only", only)):
        unknown = sorted(s for s in chosen if s not in plan.steps)
        if unknown:
            raise RerunRefused(
                "InvalidRerun",
                [Problem(f"spec.{what}", f"unknown step(s) {', '.join(map(repr, unknown))}")],
            )

    def succeeded(sid: str) -> bool:
        return parent.get(sid) is StepStatus.SUCCEEDED

    if only:
        chosen = set(only)
    elif rerun_from:
        chosen = _downstream(plan, rerun_from)
    else:
        chosen = _downstream(plan, (s for s in plan.order if not succeeded(s)))
    run = tuple(s for s in plan.order if s in chosen)
    reused = tuple(s for s in plan.order if s not in chosen and succeeded(s))
    not_selected = tuple(s for s in plan.order if s not in chosen and not succeeded(s))
    if not run:
        raise RerunRefused(
            "NothingToRerun",
            [
                Problem(
                    "spec",
                    "every step SUCCEEDED in the parent: name the steps to run again with "
                    "from or only",
                )
            ],
        )
    usable = chosen | set(reused)
    problems = [
        Problem(
            f"spec.{'only' if only else 'from'}",
            f"step {sid!r} needs the output of {dep!r}, which the parent did not produce "
            f"(it ended {parent.get(dep, 'absent')}); select {dep!r} too",
        )
        for sid in run
        for dep in plan.dependencies[sid]
        if dep not in usable
    ]
    if problems:
        raise RerunRefused("InputMissing", problems)
    return Selection(run, reused, not_selected)


def recorded_output_hashes(entries: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Step id → the output hash the parent's ledger recorded (STEP_SUCCEEDED, or STEP_REUSED
    when the parent was a re-run itself); the last one wins."""
    out: dict[str, str] = {}
    wanted = {str(LogEventType.STEP_SUCCEEDED), str(LogEventType.STEP_REUSED)}
    for entry in entries:
        if entry.get("eventType") in wanted and entry.get("stepId"):
            digest = (entry.get("details") or {}).get("outputHash")
            if isinstance(digest, str):
                out[str(entry["stepId"])] = digest
    return out


def output_problems(
    reused: Iterable[str],
    outputs: Mapping[str, Any],
    recorded: Mapping[str, str],
) -> list[Problem]:
    """Why the parent's outputs of `reused` steps cannot be reused: missing, or not hashing to
    what the parent's ledger recorded (changed after the parent wrote it)."""
    problems = []
    for sid in reused:
        want = recorded.get(sid)
        if want is None:
            problems.append(
                Problem(f"steps.{sid}", "the parent's ledger records no output for this step")
            )
            continue
        if sid not in outputs:
            problems.append(Problem(f"steps.{sid}", "the parent's output of this step is gone"))
            continue
        try:
            have = canonical_sha256(outputs[sid])
        except (TypeError, ValueError) as exc:
            problems.append(Problem(f"steps.{sid}", f"the parent's output is not JSON: {exc}"))
            continue
        if have != want:
            problems.append(
                Problem(
                    f"steps.{sid}",
                    f"the parent's output hashes to {have[:16]}…, not to the {want[:16]}… its "
                    "ledger recorded: it was changed after the step ran",
                )
            )
    return problems


@dataclass(frozen=True, slots=True)
class RerunLink:
    """What the re-run's first ledger entry records of its parent and of how it was asked."""

    parent_execution_id: str
    parent_head: str
    parent_count: int
    parent_checkpoint: Mapping[str, Any] | None
    input_source: str
    """``parent`` (spec.input absent: the parent's input) or ``given`` (spec.input replaces it)."""
    definition: str
    """``pinned`` (the parent's definition) or ``latest`` (the Runbook as it is now)."""
    selection: Selection
    rerun_from: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    parent_name: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "executionId": self.parent_execution_id,
            "ledgerHead": self.parent_head,
            "ledgerCount": self.parent_count,
            "inputSource": self.input_source,
            "definition": self.definition,
            "from": list(self.rerun_from),
            "only": list(self.only),
            "run": list(self.selection.run),
            "reused": list(self.selection.reused),
            "notSelected": list(self.selection.not_selected),
        }
        if self.parent_name is not None:
            out["name"] = self.parent_name
        if self.parent_checkpoint is not None:
            out["checkpoint"] = dict(self.parent_checkpoint)
        out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class ParentRecord:
    """What a re-run takes from its parent: final step states, outputs, artifacts, KPIs."""

    execution_id: str
    steps: Mapping[str, StepState]
    outputs: Mapping[str, Mapping[str, Any]]
    artifacts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    kpis: Mapping[str, Any] = field(default_factory=dict)
    kpi_steps: Mapping[str, str] = field(default_factory=dict)
    """KPI name → the step that set it."""

    @classmethod
    def of(cls, state: ExecutionState) -> ParentRecord:
        order = state.order or tuple(state.steps)
        kpi_steps = {
            name: order[pos] for name, pos in state.kpi_sources.items() if 0 <= pos < len(order)
        }
        return cls(
            state.execution_id,
            dict(state.steps),
            dict(state.outputs),
            dict(state.artifacts),
            dict(state.kpis),
            kpi_steps,
        )

    @property
    def statuses(self) -> dict[str, StepStatus]:
        return {sid: step.status for sid, step in self.steps.items()}


def rerun_execution(
    plan: Plan,
    execution_id: str,
    now: datetime,
    parent: ParentRecord,
    link: RerunLink,
) -> ExecutionState:
    """The re-run's PENDING state: reused steps SUCCEEDED with the parent's outputs, steps not
    selected SKIPPED, the rest PENDING. Its first scheduling records `link` and the reuse."""
    fresh = new_execution(plan, execution_id, now)
    steps = dict(fresh.steps)
    outputs: dict[str, Mapping[str, Any]] = {}
    artifacts: dict[str, Mapping[str, Any]] = {}
    for sid in link.selection.reused:
        was = parent.steps[sid]
        steps[sid] = StepState(
            step_id=sid,
            status=StepStatus.SUCCEEDED,
            attempt=was.attempt,
            started_at=was.started_at,
            attempt_started_at=was.attempt_started_at,
            finished_at=was.finished_at,
            message=f"reused from {parent.execution_id}",
            output_hash=canonical_sha256(parent.outputs[sid]),
            reused_from=parent.execution_id,
        )
        outputs[sid] = parent.outputs[sid]
        if sid in parent.artifacts:
            artifacts[sid] = parent.artifacts[sid]
    for sid in link.selection.not_selected:
        steps[sid] = StepState(sid).with_outcome(
            StepStatus.SKIPPED,
            now,
            message="not selected for this re-run",
            blocked_by=NOT_SELECTED,
        )
    reused = set(link.selection.reused)
    kpis = {k: v for k, v in parent.kpis.items() if parent.kpi_steps.get(k) in reused}
    sources = {k: plan.position[parent.kpi_steps[k]] for k in kpis}
    state = fresh.evolve(
        steps=Map(steps),
        outputs=Map(outputs),
        artifacts=Map(artifacts),
        kpis=kpis,
        kpi_sources=sources,
        rerun=link.wire(),
    )
    return reindex(plan, state)
