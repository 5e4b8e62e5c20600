"""The buttons of the execution page: one registry, so approve/deny (issue: approvals) and
re-run from a step (issue: rerun) are added by appending an `Action` here, not by editing the
routes or templates.

An action says when it is offered (`offered`, from the execution object), which form fields it
needs (`fields`, e.g. a step id for re-run, a reason for deny), and what it does (`perform`: the
same API write the CLI makes, through the source, as the user). The route
`POST /executions/{ns}/{name}/actions/{action}` looks the action up by `key`, calls `perform`
and shows the apiserver's answer (a 403 says so).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from runbook_engine.enums import ControlAction


class Answer(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def message(self) -> str: ...


class Controls(Protocol):
    """What an action may ask of the source (ClusterSource implements it)."""

    def control(self, namespace: str, name: str, action: ControlAction) -> Any: ...

    def decide(self, namespace: str, name: str, step: str, decision: str, comment: str) -> Any: ...

    def rerun(self, namespace: str, name: str, rerun_from: list[str]) -> Any: ...


@dataclass(frozen=True, slots=True)
class Action:
    """A button. A step action (`steps` given) is offered per step, for the steps `steps`
    returns, with the step id in the form field `step`; `where` says where its buttons go:
    "head" (beside the execution's buttons, one row per step: few steps, e.g. those waiting
    for approval) or "step" (in the panel of the selected step). `optional` fields may be
    left empty (a comment)."""

    key: str
    label: str
    offered: Callable[[Mapping[str, Any]], bool]
    perform: Callable[[Controls, str, str, Mapping[str, str]], Any]
    fields: tuple[str, ...] = ()
    danger: bool = False
    optional: tuple[str, ...] = ()
    steps: Callable[[Mapping[str, Any]], list[str]] | None = None
    where: str = "head"


def _phase(obj: Mapping[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase") or "PENDING")


_LIVE = ("PENDING", "RUNNING", "PAUSED")


def _control(action: ControlAction) -> Callable[[Controls, str, str, Mapping[str, str]], Any]:
    def perform(source: Controls, namespace: str, name: str, _form: Mapping[str, str]) -> Any:
        return source.control(namespace, name, action)

    return perform


_FINISHED = ("COMPLETED", "FAILED", "CANCELLED")
MAX_STEP_FIELD = 253
MAX_COMMENT = 4096
"""A comment longer than this is refused here (the CRD bounds it too)."""


def awaiting(obj: Mapping[str, Any]) -> list[str]:
    """The steps waiting for a decision (the operator's `status.awaitingApproval`)."""
    text = str((obj.get("status") or {}).get("awaitingApproval") or "")
    return [s for s in text.split(",") if s][:100]


def _status_steps(obj: Mapping[str, Any]) -> list[str]:
    return [str(s.get("stepId")) for s in (obj.get("status") or {}).get("steps") or []]


class Refused(ValueError):
    """A form the console refuses before any write (a clear 422 with the field's name)."""


def _decide(decision: str) -> Callable[[Controls, str, str, Mapping[str, str]], Any]:
    """`runbookctl approve|deny NAME STEP -m COMMENT` (the same RunbookApproval, as the user)."""

    def perform(source: Controls, namespace: str, name: str, form: Mapping[str, str]) -> Any:
        comment = form.get("comment", "")
        if len(comment) > MAX_COMMENT:
            raise Refused(f"comment: at most {MAX_COMMENT} characters")
        # the step is checked by the operator (StepNotWaiting); not against a page that may
        # be stale here, or a decision made just as the status changed would be lost
        step = form.get("step", "")
        if not step or len(step) > MAX_STEP_FIELD:
            raise Refused("step: required (the step's id)")
        return source.decide(namespace, name, step, decision, comment)

    return perform


def _rerun(source: Controls, namespace: str, name: str, form: Mapping[str, str]) -> Any:
    """`runbookctl rerun NAME [--from STEP]` (the same RunbookExecution, as the user)."""
    step = form.get("step", "")
    if step and len(step) > MAX_STEP_FIELD:
        raise Refused("step: too long")
    return source.rerun(namespace, name, [step] if step else [])


ACTIONS: list[Action] = [
    Action(
        "pause",
        "Pause",
        lambda o: _phase(o) in ("PENDING", "RUNNING") and not (o.get("spec") or {}).get("paused"),
        _control(ControlAction.PAUSE),
    ),
    Action(
        "resume",
        "Resume",
        lambda o: _phase(o) == "PAUSED" or bool((o.get("spec") or {}).get("paused")),
        _control(ControlAction.RESUME),
    ),
    Action(
        "cancel",
        "Cancel",
        lambda o: _phase(o) in _LIVE and not (o.get("spec") or {}).get("cancel"),
        _control(ControlAction.CANCEL),
        danger=True,
    ),
    Action(
        "approve",
        "Approve",
        lambda o: bool(awaiting(o)),
        _decide("approve"),
        optional=("comment",),
        steps=awaiting,
    ),
    Action(
        "deny",
        "Deny",
        lambda o: bool(awaiting(o)),
        _decide("reject"),
        optional=("comment",),
        danger=True,
        steps=awaiting,
    ),
    Action("rerun", "Re-run", lambda o: _phase(o) in _FINISHED, _rerun),
    Action(
        "rerun-from",
        "Re-run from here",
        lambda o: _phase(o) in _FINISHED,
        _rerun,
        steps=_status_steps,
        where="step",
    ),
]


def find(key: str) -> Action | None:
    return next((a for a in ACTIONS if a.key == key), None)


def offered(obj: Mapping[str, Any]) -> list[Action]:
    """The execution's own buttons (not the per-step ones)."""
    return [a for a in ACTIONS if a.steps is None and a.offered(obj)]


def head_steps(obj: Mapping[str, Any]) -> dict[str, list[Action]]:
    """Step id -> the step actions offered for it in the page's head (approve/deny)."""
    out: dict[str, list[Action]] = {}
    for a in ACTIONS:
        if a.steps is not None and a.where == "head" and a.offered(obj):
            for sid in a.steps(obj):
                out.setdefault(sid, []).append(a)
    return out


def step_panel(obj: Mapping[str, Any], step: str) -> list[Action]:
    """The step actions offered in the panel of `step` (re-run from here)."""
    return [
        a
        for a in ACTIONS
        if a.steps is not None and a.where == "step" and a.offered(obj) and step in a.steps(obj)
    ]
