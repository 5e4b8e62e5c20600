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


@dataclass(frozen=True, slots=True)
class Action:
    key: str
    label: str
    offered: Callable[[Mapping[str, Any]], bool]
    perform: Callable[[Controls, str, str, Mapping[str, str]], Any]
    fields: tuple[str, ...] = ()
    danger: bool = False


def _phase(obj: Mapping[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase") or "PENDING")


_LIVE = ("PENDING", "RUNNING", "PAUSED")


def _control(action: ControlAction) -> Callable[[Controls, str, str, Mapping[str, str]], Any]:
    def perform(source: Controls, namespace: str, name: str, _form: Mapping[str, str]) -> Any:
        return source.control(namespace, name, action)

    return perform


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
    # Extension point: Action("approve", ...), Action("deny", ..., fields=("reason",)),
    # Action("rerun", ..., fields=("fromStep",)) append here when those features land.
]


def find(key: str) -> Action | None:
    return next((a for a in ACTIONS if a.key == key), None)


def offered(obj: Mapping[str, Any]) -> list[Action]:
    return [a for a in ACTIONS if a.offered(obj)]
