"""APPROVAL steps in `runbookctl run`: where local decisions come from.

Locally the OS user runs everything, so the approver is the OS user: asked on a terminal (a
rich prompt with the step's instructions and context), or answering ahead of time with
`--approve STEP` / `--reject STEP`. A step needing more than one approval needs a decisions
file (`--decisions FILE`) listing the approvers. Without a terminal and without an answer, the
step fails with a message naming the flags; a run never waits for input nobody can give.

The rule itself (eligibility, quorum, duplicates) is the engine's (runbook_engine.approval):
the decisions go to the scheduler as an `ApprovalObserved` and are recorded in the ledger.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from runbook_engine.approval import (
    MAX_COMMENT,
    MAX_DECISIONS,
    ApprovalConfig,
    ApprovalDecision,
    DecisionValue,
    evaluate,
    parse_config,
)
from runbook_engine.contract import StepExecutorResult
from runbook_engine.identity import Identity
from runbook_engine.plan import Plan
from runbook_engine.problems import InvalidRunbook, Problem, problems_from_pydantic
from runbook_engine.scheduler import ApprovalObserved, AttemptFinished, Observation
from runbook_engine.state import ExecutionState
from runbook_engine.wire import CamelModel
from runbookctl.files import read_yaml_documents

CONTEXT_CHARS = 1500
"""Of each upstream output, the prompt shows this much JSON."""


class FileDecision(CamelModel):
    """One line of a decisions file."""

    step: str = Field(min_length=1, max_length=63)
    user: str = Field(min_length=1, max_length=512)
    groups: list[str] = Field(default_factory=list, max_length=64)
    decision: DecisionValue
    comment: str = Field(default="", max_length=MAX_COMMENT)


class DecisionsFile(CamelModel):
    decisions: list[FileDecision] = Field(max_length=MAX_DECISIONS)


def read_decisions(path: Path) -> list[FileDecision]:
    """A decisions file (YAML or JSON): `{decisions: [{step, user, groups, decision, comment}]}`.
    Raises InvalidRunbook naming the field of any problem."""
    docs = read_yaml_documents(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise InvalidRunbook(
            [Problem("", "must hold one object {decisions: [...]}")], source=str(path)
        )
    try:
        return DecisionsFile.model_validate(docs[0]).decisions
    except ValidationError as exc:
        raise InvalidRunbook(problems_from_pydantic(exc), source=str(path)) from None


Prompt = Callable[[str, ApprovalConfig, Mapping[str, Any]], tuple[DecisionValue, str] | None]
"""Asks the user on a terminal: (step id, config, context) → (decision, comment), or None."""


@dataclass
class LocalApprover:
    """Collects the decisions of one run's APPROVAL steps."""

    user: Identity
    approve: frozenset[str] = frozenset()
    reject: frozenset[str] = frozenset()
    file: Sequence[FileDecision] = ()
    prompt: Prompt | None = None
    """Set when stdin is a terminal (`rich_prompt`)."""
    clock: Callable[[], datetime] | None = None
    _counter: dict[str, int] = field(default_factory=dict)

    def problems(self, plan: Plan) -> list[str]:
        """Flags naming steps that are not APPROVAL steps of this runbook (a typo would make a
        run fail at the gate after everything before it ran)."""
        gates = {sid for sid in plan.order if plan.steps[sid].action_type == "APPROVAL"}
        out = []
        for flag, steps in (("--approve", self.approve), ("--reject", self.reject)):
            out += [
                f"{flag} {s}: no APPROVAL step {s!r} in this runbook" for s in sorted(steps - gates)
            ]
        out += [
            f"--decisions: step {d.step!r} is not an APPROVAL step of this runbook"
            for d in self.file
            if d.step not in gates
        ]
        both = self.approve & self.reject
        out += [f"--approve and --reject both name step {s!r}" for s in sorted(both)]
        return out

    def collect(
        self,
        plan: Plan,
        state: ExecutionState,
        step_id: str,
        attempt: int,
        now: datetime,
        requester: str | None,
    ) -> list[Observation]:
        """The decisions for a waiting step; plus a failure when they cannot settle it."""
        config = parse_config(plan.steps[step_id].config)
        decisions = [
            self._from_file(d, now, i) for i, d in enumerate(self.file) if d.step == step_id
        ]
        own: tuple[DecisionValue, str] | None = None
        if step_id in self.approve:
            own = ("approve", "--approve")
        elif step_id in self.reject:
            own = ("reject", "--reject")
        elif not decisions and self.prompt is not None:
            if config.required > len(decisions) + 1:
                return [self._unreachable(step_id, attempt, config, len(decisions))]
            own = self.prompt(step_id, config, _context(plan, state, step_id))
        if own is not None:
            decisions.append(self._own(step_id, own, now))
        observed = ApprovalObserved(step_id, attempt, tuple(decisions), requester, "this run")
        if not decisions:
            return [_fail(step_id, attempt, _nobody_to_ask(step_id, config))]
        started = state.steps[step_id].attempt_started_at or now
        deadline = started.replace(year=started.year + 1)  # the scheduler applies the real one
        settled = evaluate(
            config,
            decisions,
            step_id=step_id,
            requester=requester,
            opened_at=started,
            deadline=deadline,
            execution="this run",
        )
        if settled.outcome != "waiting":
            return [observed]
        counted = len(settled.approvals)
        return [observed, self._unreachable(step_id, attempt, config, counted)]

    def _own(self, step_id: str, own: tuple[DecisionValue, str], now: datetime) -> ApprovalDecision:
        n = self._counter[step_id] = self._counter.get(step_id, 0) + 1
        return ApprovalDecision(
            id=f"local-{self.user.username}-{n}",
            user=self.user.username,
            groups=self.user.groups,
            decision=own[0],
            time=now,
            comment=own[1],
            may_approve=True,  # the OS user may decide anything this process does
        )

    @staticmethod
    def _from_file(d: FileDecision, now: datetime, index: int) -> ApprovalDecision:
        return ApprovalDecision(
            id=f"file-{index}",
            user=d.user,
            groups=tuple(d.groups),
            decision=d.decision,
            time=now,
            comment=d.comment,
            may_approve=True,
        )

    @staticmethod
    def _unreachable(
        step_id: str, attempt: int, config: ApprovalConfig, counted: int
    ) -> Observation:
        return _fail(
            step_id,
            attempt,
            f"step {step_id} needs {config.required} approval(s) and only {counted} counted: "
            f"list several approvers in --decisions FILE (a terminal or --approve gives one, "
            f"yours)",
        )


def _fail(step_id: str, attempt: int, error: str) -> AttemptFinished:
    return AttemptFinished(
        step_id, attempt, StepExecutorResult(success=False, error=error, retryable=False)
    )


def _nobody_to_ask(step_id: str, config: ApprovalConfig) -> str:
    more = (
        f"; it needs {config.required} approvals, so list the approvers in --decisions FILE"
        if config.required > 1
        else ""
    )
    return (
        f"step {step_id} waits for an approval and stdin is not a terminal: pass "
        f"--approve {step_id} or --reject {step_id}, or --decisions FILE{more}"
    )


def _context(plan: Plan, state: ExecutionState, step_id: str) -> dict[str, Any]:
    """What the approver sees: the outputs of the steps the gate depends on."""
    out = {}
    for dep in plan.dependencies[step_id]:
        if dep in state.outputs:
            text = json.dumps(dict(state.outputs[dep]), default=str, indent=1)
            out[dep] = text[:CONTEXT_CHARS] + ("…" if len(text) > CONTEXT_CHARS else "")
    return out


def rich_prompt(console: Any, user: str) -> Prompt:
    """A terminal prompt (rich): instructions, approvers, quorum, upstream outputs; then
    approve or reject and a comment."""
    from rich.panel import Panel
    from rich.prompt import Prompt as RichPrompt

    lock = threading.Lock()

    def ask(
        step_id: str, config: ApprovalConfig, context: Mapping[str, Any]
    ) -> tuple[DecisionValue, str] | None:
        with lock:
            lines = [config.instructions or "(no instructions)", ""]
            listed = config.approvers
            lines.append(
                f"approvers: users {', '.join(listed.users) or '-'}; groups "
                f"{', '.join(listed.groups) or '-'}; required {config.required}; "
                f"on timeout: {config.on_timeout}"
            )
            for dep, text in context.items():
                lines += ["", f"[{dep}]", text]
            console.print(Panel("\n".join(lines), title=f"approval: {step_id}"), markup=False)
            answer = RichPrompt.ask(
                f"{user}: approve step {step_id}?",
                choices=["approve", "reject"],
                console=console,
            )
            comment = RichPrompt.ask("comment", default="", console=console)
            return ("approve" if answer == "approve" else "reject"), comment[:MAX_COMMENT]

    return ask
