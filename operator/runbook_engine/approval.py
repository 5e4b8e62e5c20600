"""Approval steps (`actionType: APPROVAL`): their config and the decision rule (pure).

An APPROVAL step runs nothing: it waits for people. Every shell collects *decisions* (on a
cluster, RunbookApproval objects stamped with the authenticated user; locally, the OS user's
answer at a prompt, flags or a decisions file) and hands all of them, in a stable order, to
`evaluate`, which says for each whether it counts and why not, and whether the step is still
waiting, approved or rejected. The scheduler folds that in (runbook_engine.scheduler) and
applies `onTimeout` at the deadline. See docs/approvals.md.

Order matters (a user's second decision is a duplicate of the first): shells pass decisions
already recorded in the ledger first, in ledger order, then new ones by time (`in_order`), so
a verdict once recorded never changes on a later evaluation or after a restart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from runbook_engine.problems import Problem, problems_from_pydantic
from runbook_engine.timeutil import format_time
from runbook_engine.wire import CamelModel

APPROVAL = "APPROVAL"
"""The built-in action type: no executor, no Job; the engine waits for decisions."""
MAX_APPROVERS = 100
MAX_REQUIRED = 100
MAX_INSTRUCTIONS = 4096
MAX_COMMENT = 1024
MAX_NAME = 512
MAX_DECISIONS = 200
"""Decisions evaluated per step; later ones are refused (a flood cannot grow the ledger)."""

APPROVE = "approve"
REJECT = "reject"
DecisionValue = Literal["approve", "reject"]
Outcome = Literal["waiting", "approved", "rejected"]

# Why a decision is not counted: stable codes (for tools) with a human sentence beside them.
NOT_WAITING = "StepNotWaiting"
LATE = "AfterDeadline"
NOT_ELIGIBLE = "NotEligible"
REQUESTER = "RequesterExcluded"
DUPLICATE = "Duplicate"
TOO_MANY = "TooManyDecisions"


class Approvers(CamelModel):
    """Who may decide. Both empty: anyone the shell says may (on a cluster, RBAC's custom verb
    `approve` on the execution; locally, the OS user)."""

    users: list[str] = Field(default_factory=list, max_length=MAX_APPROVERS)
    groups: list[str] = Field(default_factory=list, max_length=MAX_APPROVERS)

    @field_validator("users", "groups")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name or len(name) > MAX_NAME:
                raise ValueError(f"names must be 1..{MAX_NAME} characters, got {name!r:.40}")
        return names

    @property
    def listed(self) -> bool:
        return bool(self.users or self.groups)


class ApprovalConfig(CamelModel):
    """The `config` of an APPROVAL step."""

    approvers: Approvers = Field(default_factory=Approvers)
    required: int = Field(default=1, ge=1, le=MAX_REQUIRED, description="Distinct approvals")
    allow_requester: bool = Field(
        default=False, description="May the authenticated creator of the execution decide?"
    )
    on_timeout: Literal["reject", "approve"] = "reject"
    instructions: str = Field(default="", max_length=MAX_INSTRUCTIONS)

    @model_validator(mode="after")
    def _reachable(self) -> ApprovalConfig:
        users = len(set(self.approvers.users))
        if self.approvers.users and not self.approvers.groups and self.required > users:
            raise ValueError(
                f"required ({self.required}) exceeds the {users} listed user(s) and no group "
                "is listed: the step could never be approved"
            )
        return self


def parse_config(config: Mapping[str, Any]) -> ApprovalConfig:
    """The step's config as an ApprovalConfig (raises pydantic's ValidationError)."""
    return ApprovalConfig.model_validate(dict(config))


def config_problems(config: Mapping[str, Any], prefix: str) -> list[Problem]:
    """Everything wrong with an APPROVAL step's config, each naming its field under `prefix`."""
    try:
        parse_config(config)
    except ValidationError as exc:
        problems = problems_from_pydantic(exc, prefix)
        # A model-level rule has no location of its own: it is about `required`.
        return [
            Problem(f"{prefix}.required", p.reason) if p.field == prefix else p for p in problems
        ]
    return []


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    """One person's decision, as a shell authenticated it."""

    id: str
    """Unique per execution: the RunbookApproval's name, or the local position."""
    user: str
    decision: DecisionValue
    time: datetime
    groups: tuple[str, ...] = ()
    comment: str = ""
    may_approve: bool | None = None
    """The shell's answer to "may this user approve this execution?" (RBAC's verb `approve`),
    used when the step lists no approvers. None: not asked (then nobody unlisted may)."""

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user,
            "groups": list(self.groups),
            "decision": self.decision,
            "comment": self.comment[:MAX_COMMENT],
            "time": format_time(self.time),
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a decision counts, and why not."""

    counted: bool
    code: str | None = None
    reason: str | None = None

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"counted": self.counted}
        if self.code:
            out["code"] = self.code
            out["reason"] = self.reason
        return out


COUNTED = Verdict(True)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The step's outcome so far and a verdict for every decision (in the order given)."""

    outcome: Outcome
    verdicts: tuple[tuple[ApprovalDecision, Verdict], ...] = ()
    approvals: tuple[ApprovalDecision, ...] = ()
    """The counted approvals, in order."""
    rejection: ApprovalDecision | None = None
    decided_at: datetime | None = field(default=None)

    def output(self, *, timed_out: bool = False) -> dict[str, Any]:
        """The step's output when it ends: what was decided and by whom."""
        counted = [*self.approvals, *([self.rejection] if self.rejection else [])]
        return {
            "outcome": "approved" if self.outcome == "approved" or timed_out else self.outcome,
            "timedOut": timed_out,
            "decisions": [d.wire() for d in counted],
        }


def not_waiting(step_id: str, why: str) -> Verdict:
    return Verdict(False, NOT_WAITING, f"step {step_id!r} is not waiting for a decision: {why}")


def _eligible(config: ApprovalConfig, d: ApprovalDecision, execution: str) -> Verdict | None:
    listed = config.approvers
    if listed.listed:
        if d.user in listed.users or set(d.groups) & set(listed.groups):
            return None
        return Verdict(
            False,
            NOT_ELIGIBLE,
            f"{d.user} is not an eligible approver (users: {', '.join(listed.users) or '-'}; "
            f"groups: {', '.join(listed.groups) or '-'})",
        )
    if d.may_approve:
        return None
    return Verdict(
        False,
        NOT_ELIGIBLE,
        f"{d.user} may not approve {execution}: no approvers are listed, so the verb `approve` "
        "on the runbookexecution is needed (role runbook-approver)",
    )


def evaluate(
    config: ApprovalConfig,
    decisions: Sequence[ApprovalDecision],
    *,
    step_id: str,
    requester: str | None,
    opened_at: datetime,
    deadline: datetime,
    execution: str = "this execution",
) -> Evaluation:
    """Judge `decisions` in the order given (see `in_order`).

    Refused, never counted: a decision from before the step waited or at/after its deadline,
    after the outcome was reached, from someone not eligible, from the requester (unless
    allowRequester), a user's second decision, and any beyond MAX_DECISIONS. One counted
    reject rejects; `required` counted approvals from distinct users approve.
    """
    opened = opened_at.replace(microsecond=0)  # apiserver timestamps have whole seconds
    outcome: Outcome = "waiting"
    verdicts: list[tuple[ApprovalDecision, Verdict]] = []
    approvals: list[ApprovalDecision] = []
    rejection: ApprovalDecision | None = None
    decided_at: datetime | None = None
    decided_by: dict[str, str] = {}
    for index, d in enumerate(decisions):
        verdict: Verdict | None
        if index >= MAX_DECISIONS:
            verdict = Verdict(False, TOO_MANY, f"more than {MAX_DECISIONS} decisions on one step")
        elif outcome != "waiting":
            verdict = not_waiting(step_id, f"already {outcome}")
        elif d.time < opened:
            verdict = not_waiting(step_id, f"decided at {format_time(d.time)}, before it waited")
        elif d.time >= deadline:
            verdict = Verdict(False, LATE, f"decided after the deadline {format_time(deadline)}")
        elif not config.allow_requester and requester is not None and d.user == requester:
            verdict = Verdict(
                False, REQUESTER, f"{d.user} started the execution (allowRequester: false)"
            )
        elif (verdict := _eligible(config, d, execution)) is not None:
            pass
        elif d.user in decided_by:
            verdict = Verdict(False, DUPLICATE, f"{d.user} already decided ({decided_by[d.user]})")
        else:
            verdict = COUNTED
            decided_by[d.user] = d.id
            if d.decision == REJECT:
                outcome, rejection, decided_at = "rejected", d, d.time
            else:
                approvals.append(d)
                if len(approvals) >= config.required:
                    outcome, decided_at = "approved", d.time
        verdicts.append((d, verdict))
    return Evaluation(outcome, tuple(verdicts), tuple(approvals), rejection, decided_at)


def in_order(
    decisions: Iterable[ApprovalDecision], recorded: Sequence[str] = ()
) -> list[ApprovalDecision]:
    """Decisions already recorded (ids in ledger order) first, then the rest by (time, id):
    the order `evaluate` needs so a recorded verdict never changes."""
    position = {decision_id: i for i, decision_id in enumerate(recorded)}
    known = [d for d in decisions if d.id in position]
    new = [d for d in decisions if d.id not in position]
    known.sort(key=lambda d: position[d.id])
    new.sort(key=lambda d: (d.time, d.id))
    return known + new


def deadline_of(opened_at: datetime, timeout_ms: int) -> datetime:
    return opened_at + timedelta(milliseconds=timeout_ms)


def request_details(config: ApprovalConfig, deadline: datetime) -> dict[str, Any]:
    """What the ledger records when the step starts waiting (APPROVAL_REQUESTED)."""
    return {
        "approvers": {
            "users": list(config.approvers.users),
            "groups": list(config.approvers.groups),
        },
        "required": config.required,
        "allowRequester": config.allow_requester,
        "onTimeout": config.on_timeout,
        "instructions": config.instructions,
        "deadline": format_time(deadline),
    }
