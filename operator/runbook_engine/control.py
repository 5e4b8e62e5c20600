"""Control requests (pause, resume, cancel): one rule for every shell.

Control is a level on the request (`paused`, `cancel`), as `kubectl patch` sets it on a cluster;
the scheduler converges to it. What a shell refuses up front, and how, lives here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from runbook_engine.enums import ControlAction, ExecutionStatus
from runbook_engine.model import ExecutionRequest

REQUEST_CHANGES: Mapping[ControlAction, Mapping[str, bool]] = MappingProxyType(
    {
        ControlAction.PAUSE: MappingProxyType({"paused": True}),
        ControlAction.RESUME: MappingProxyType({"paused": False}),
        ControlAction.CANCEL: MappingProxyType({"cancel": True}),
    }
)
"""The request fields each action sets (also the `spec` merge patch on a cluster)."""


class ControlError(RuntimeError):
    """A pause/resume/cancel that cannot apply in the execution's current phase."""


def refusal(action: ControlAction, status: ExecutionStatus, execution_id: str) -> str | None:
    """Why `action` cannot apply now, or None. A finished execution takes no control."""
    if status.terminal:
        return f"cannot {action.lower()}: execution {execution_id} is already {status}"
    return None


def apply_control(
    request: ExecutionRequest, action: ControlAction, status: ExecutionStatus, execution_id: str
) -> ExecutionRequest:
    """The request with `action`'s level set; raises ControlError when it cannot apply."""
    reason = refusal(action, status, execution_id)
    if reason is not None:
        raise ControlError(reason)
    return request.model_copy(update=dict(REQUEST_CHANGES[action]))
