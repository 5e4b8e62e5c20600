"""APPROVAL steps: config validation, the decision rule (examples and properties) and the
scheduler's handling (waiting, approve, reject, timeout, pause, cancel, ledger)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook_engine import approval
from runbook_engine.approval import ApprovalConfig, ApprovalDecision, evaluate, in_order
from runbook_engine.audit import AuditChain, verify
from runbook_engine.contract import StepExecutorResult
from runbook_engine.driver import Actors, drive
from runbook_engine.enums import ExecutionStatus, LogEventType, StepStatus
from runbook_engine.problems import InvalidRunbook
from runbook_engine.scheduler import (
    ApprovalObserved,
    AttemptFinished,
    AwaitApproval,
    StartAttempt,
    StopAttempt,
    new_execution,
)

from .sim import T0, make_plan, request_for, step

OPEN = T0
DEADLINE = T0 + timedelta(hours=1)
SRE = ApprovalConfig.model_validate(
    {"approvers": {"groups": ["sre"]}, "required": 2, "allowRequester": False}
)


def d(
    user: str,
    decision: str = "approve",
    *,
    at: float = 10,
    groups: tuple[str, ...] = ("sre",),
    did: str | None = None,
    may: bool | None = None,
    comment: str = "",
) -> ApprovalDecision:
    return ApprovalDecision(
        id=did or f"{user}-{decision}-{at}",
        user=user,
        decision=decision,  # type: ignore[arg-type]
        time=T0 + timedelta(seconds=at),
        groups=groups,
        comment=comment,
        may_approve=may,
    )


def judge(config: ApprovalConfig, *decisions: ApprovalDecision, requester: str = "rita"):  # type: ignore[no-untyped-def]
    return evaluate(
        config, decisions, step_id="gate", requester=requester, opened_at=OPEN, deadline=DEADLINE
    )


# --- config ---------------------------------------------------------------------------------


def test_defaults_are_one_approval_requester_excluded_reject_on_timeout() -> None:
    config = approval.parse_config({})
    assert (config.required, config.allow_requester, config.on_timeout) == (1, False, "reject")
    assert not config.approvers.listed


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        ({"required": 0}, "config.required", "greater than or equal to 1"),
        ({"onTimeout": "maybe"}, "config.onTimeout", "reject"),
        ({"approvers": {"users": ["a"]}, "required": 2}, "config.required", "could never"),
        ({"approvers": {"users": [""]}}, "config.approvers.users", "1..512"),
        ({"approvers": {"roles": ["x"]}}, "config.approvers.roles", "Extra inputs"),
        ({"instructions": "x" * 5000}, "config.instructions", "4096"),
        ({"quorum": 2}, "config.quorum", "Extra inputs"),
    ],
)
def test_a_bad_config_is_refused_naming_the_field(
    config: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidRunbook) as caught:
        make_plan(step("gate", action="APPROVAL", config=config))
    problems = {p.field: p.reason for p in caught.value.problems}
    assert f"steps[0].{field}" in problems, problems
    assert words in problems[f"steps[0].{field}"]


def test_an_approval_step_takes_no_retry_policy() -> None:
    with pytest.raises(InvalidRunbook, match=r"steps\[0\].retryPolicy: an APPROVAL step"):
        make_plan(step("gate", action="APPROVAL", retry={"maxAttempts": 2}))


def test_approval_is_known_to_a_shell_listing_its_executors() -> None:
    from runbook_engine.model import RunbookDefinition
    from runbook_engine.plan import compile_plan

    doc = {"id": "x", "steps": [step("gate", action="APPROVAL")]}
    compile_plan(RunbookDefinition.model_validate(doc), known_action_types={"TRANSFORM"})


# --- the decision rule ------------------------------------------------------------------------


def test_quorum_of_group_with_requester_and_outsider_refused() -> None:
    result = judge(
        SRE,
        d("rita", at=1),  # the requester, in sre
        d("mallory", at=2, groups=("dev",)),
        d("sam", at=3),
        d("sam", at=4, did="sam-again"),
        d("sue", at=5),
    )
    verdicts = {dec.id: v for dec, v in result.verdicts}
    assert verdicts["rita-approve-1"].code == approval.REQUESTER
    assert verdicts["mallory-approve-2"].code == approval.NOT_ELIGIBLE
    assert verdicts["sam-approve-3"].counted
    assert verdicts["sam-again"].code == approval.DUPLICATE
    assert verdicts["sue-approve-5"].counted
    assert result.outcome == "approved"
    assert [a.user for a in result.approvals] == ["sam", "sue"]
    assert result.output()["decisions"][0]["user"] == "sam"


def test_one_eligible_reject_rejects_and_later_decisions_are_refused() -> None:
    result = judge(SRE, d("sam"), d("sue", "reject", at=11, comment="no"), d("tom", at=12))
    assert result.outcome == "rejected"
    assert result.rejection is not None and result.rejection.user == "sue"
    last = result.verdicts[-1][1]
    assert last.code == approval.NOT_WAITING and "already rejected" in (last.reason or "")


def test_an_ineligible_reject_changes_nothing() -> None:
    result = judge(SRE, d("mallory", "reject", groups=()))
    assert result.outcome == "waiting"
    assert result.verdicts[0][1].code == approval.NOT_ELIGIBLE


def test_decisions_before_the_step_waited_or_after_the_deadline_are_refused() -> None:
    early = d("sam", at=-5)
    late = d("sue", at=3600)
    result = judge(SRE, early, late)
    assert [v.code for _, v in result.verdicts] == [approval.NOT_WAITING, approval.LATE]
    # whole-second apiserver time in the same second the step opened still counts
    opened = OPEN + timedelta(milliseconds=700)
    same_second = evaluate(
        SRE, [d("sam", at=0)], step_id="g", requester=None, opened_at=opened, deadline=DEADLINE
    )
    assert same_second.verdicts[0][1].counted


def test_no_approvers_listed_means_the_shell_says_who_may() -> None:
    anyone = approval.parse_config({})
    assert judge(anyone, d("ann", may=True)).outcome == "approved"
    refused = judge(anyone, d("ann", may=None), d("bob", may=False))
    assert refused.outcome == "waiting"
    assert all("verb `approve`" in (v.reason or "") for _, v in refused.verdicts)


def test_allow_requester_lets_the_requester_decide() -> None:
    config = ApprovalConfig.model_validate(
        {"approvers": {"users": ["rita"]}, "allowRequester": True}
    )
    assert judge(config, d("rita", groups=())).outcome == "approved"


def test_listed_users_need_no_group() -> None:
    config = ApprovalConfig.model_validate({"approvers": {"users": ["alice"]}})
    assert judge(config, d("alice", groups=())).outcome == "approved"


def test_recorded_decisions_keep_their_place() -> None:
    first = d("sam", at=20, did="b")
    second = d("sam", at=10, did="a")  # earlier, but arrived after `first` was recorded
    ordered = in_order([second, first], recorded=["b"])
    assert [x.id for x in ordered] == ["b", "a"]
    assert in_order([first, second]) == [second, first]


decision_strategy = st.builds(
    d,
    st.sampled_from(["rita", "sam", "sue", "tom", "mallory"]),
    st.sampled_from(["approve", "reject"]),
    at=st.integers(-10, 4000).map(float),
    groups=st.sampled_from([("sre",), ("dev",), (), ("sre", "dev")]),
    did=st.uuids().map(str),
    may=st.sampled_from([None, True, False]),
)
config_strategy = st.builds(
    lambda users, groups, required, allow: ApprovalConfig.model_validate(
        {
            "approvers": {"users": users, "groups": groups},
            "required": min(required, len(set(users))) if users and not groups else required,
            "allowRequester": allow,
        }
    ),
    st.lists(st.sampled_from(["rita", "sam", "sue"]), max_size=3, unique=True),
    st.lists(st.sampled_from(["sre", "dev"]), max_size=2, unique=True),
    st.integers(1, 4),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(config_strategy, st.lists(decision_strategy, max_size=12))
def test_properties_of_the_rule(config: ApprovalConfig, decisions: list[ApprovalDecision]) -> None:
    result = judge(config, *decisions)
    counted = [dec for dec, v in result.verdicts if v.counted]
    # every decision gets exactly one verdict, in order; refusals carry a reason
    assert [dec for dec, _ in result.verdicts] == decisions
    assert all(v.counted or (v.code and v.reason) for _, v in result.verdicts)
    # at most one counted decision per user; the requester only when allowed
    assert len({c.user for c in counted}) == len(counted)
    assert config.allow_requester or all(c.user != "rita" for c in counted)
    # nothing counted outside the window
    assert all(OPEN <= c.time < DEADLINE for c in counted)
    # outcome follows from the counted decisions, and nothing counts after it
    rejects = [c for c in counted if c.decision == "reject"]
    approvals = [c for c in counted if c.decision == "approve"]
    if rejects:
        assert result.outcome == "rejected" and counted[-1] == rejects[0]
    elif len(approvals) >= config.required:
        assert result.outcome == "approved" and len(approvals) == config.required
    else:
        assert result.outcome == "waiting"
    # a prefix's verdicts are the prefix of the whole's (new decisions never change old ones)
    half = judge(config, *decisions[: len(decisions) // 2])
    assert half.verdicts == result.verdicts[: len(half.verdicts)]


# --- in the scheduler -----------------------------------------------------------------------


class Run:
    """Drives the scheduler by hand, as a shell would."""

    def __init__(self, *steps: dict[str, Any], **request: Any) -> None:
        self.plan = make_plan(*steps)
        self.request = request_for(self.plan, **request)
        self.state = new_execution(self.plan, "ex-1", T0)
        self.chain = AuditChain("ex-1")
        self.actions: list[Any] = []
        self.wakeup = None

    def at(self, seconds: float, *observations: Any, **request: Any) -> Run:
        if request:
            self.request = self.request.model_copy(update=request)
        result = drive(
            self.plan,
            self.request,
            self.state,
            self.chain,
            observations,
            T0 + timedelta(seconds=seconds),
            Actors("test"),
        )
        self.state = result.state
        self.actions = list(result.decision.actions)
        self.wakeup = result.decision.next_wakeup
        return self

    def decide(self, seconds: float, *decisions: ApprovalDecision, requester: str = "rita") -> Run:
        attempt = self.state.steps["gate"].attempt
        return self.at(seconds, ApprovalObserved("gate", attempt, tuple(decisions), requester))

    def status(self, sid: str) -> StepStatus:
        return self.state.steps[sid].status

    def entries(self, kind: LogEventType) -> list[dict[str, Any]]:
        return [e for e in self.chain.entries if e["eventType"] == kind]


GATE = step(
    "gate",
    action="APPROVAL",
    timeoutMs=60_000,
    config={"approvers": {"groups": ["sre"]}, "required": 2, "instructions": "Block?"},
)
AFTER = step("act", "gate")


def test_an_approval_step_waits_without_a_job_and_completes_on_quorum() -> None:
    run = Run(GATE, AFTER).at(0)
    assert run.actions == [AwaitApproval("gate", 1, T0 + timedelta(seconds=60))]
    assert run.wakeup == T0 + timedelta(seconds=60)
    requested = run.entries(LogEventType.APPROVAL_REQUESTED)
    assert requested[0]["details"]["instructions"] == "Block?"
    assert requested[0]["details"]["required"] == 2
    run.decide(5, d("rita", at=1), d("sam", at=2))
    assert run.status("gate") is StepStatus.RUNNING
    run.decide(6, d("rita", at=1), d("sam", at=2), d("sue", at=5))
    assert run.status("gate") is StepStatus.SUCCEEDED
    assert [type(a) for a in run.actions] == [StartAttempt]  # `act` starts
    assert run.state.outputs["gate"]["outcome"] == "approved"
    assert [x["user"] for x in run.state.outputs["gate"]["decisions"]] == ["sam", "sue"]
    decisions = run.entries(LogEventType.APPROVAL_DECISION)
    assert [(e["details"]["user"], e["details"]["counted"]) for e in decisions] == [
        ("rita", False),
        ("sam", True),
        ("sue", True),
    ]  # each decision recorded once although it was observed twice
    assert decisions[0]["details"]["code"] == approval.REQUESTER
    assert verify(run.chain.entries).valid


def test_a_reject_fails_the_step_and_skips_its_dependents() -> None:
    run = Run(GATE, AFTER).at(0).decide(3, d("sam", "reject", at=2, comment="too broad"))
    assert run.status("gate") is StepStatus.FAILED
    assert run.status("act") is StepStatus.SKIPPED
    assert run.state.status is ExecutionStatus.FAILED
    assert "rejected by sam: too broad" in (run.state.steps["gate"].message or "")


def test_a_reject_with_skip_on_failure_lets_dependents_run() -> None:
    run = Run({**GATE, "skipOnFailure": True}, AFTER).at(0)
    run.decide(3, d("sam", "reject", at=2))
    assert run.status("gate") is StepStatus.SKIPPED
    assert [type(a) for a in run.actions] == [StartAttempt]


def test_timeout_rejects_by_default_at_the_deadline() -> None:
    run = Run(GATE, AFTER).at(0).decide(3, d("sam", at=2))
    run.at(59.999)
    assert run.status("gate") is StepStatus.RUNNING
    run.at(60)
    assert run.status("gate") is StepStatus.FAILED
    assert "onTimeout: reject" in (run.state.steps["gate"].message or "")
    assert not [a for a in run.actions if isinstance(a, StopAttempt)]


def test_timeout_approves_when_configured_keeping_the_partial_decisions() -> None:
    gate = {**GATE, "config": {**GATE["config"], "onTimeout": "approve"}}
    run = Run(gate, AFTER).at(0)
    run.at(60, ApprovalObserved("gate", 1, (d("sam", at=2),), "rita"))
    assert run.status("gate") is StepStatus.SUCCEEDED
    output = run.state.outputs["gate"]
    assert output["timedOut"] is True and [x["user"] for x in output["decisions"]] == ["sam"]


def test_pause_does_not_hold_the_clock_and_decisions_still_count() -> None:
    run = Run(GATE, AFTER).at(0).at(1, paused=True)
    assert run.state.status is ExecutionStatus.PAUSED
    assert run.wakeup == T0 + timedelta(seconds=60)
    run.decide(2, d("sam", at=2), d("sue", at=2))
    assert run.status("gate") is StepStatus.SUCCEEDED
    assert run.status("act") is StepStatus.PENDING  # paused: nothing new starts
    timed = Run(GATE, AFTER).at(0).at(1, paused=True).at(60)
    assert timed.status("gate") is StepStatus.FAILED


def test_cancel_ends_the_wait() -> None:
    run = Run(GATE, AFTER).at(0).at(5, cancel=True)
    assert run.status("gate") is StepStatus.CANCELLED
    assert run.state.status is ExecutionStatus.CANCELLED
    assert run.actions == []  # no Job to stop


def test_decisions_for_a_step_not_waiting_are_ignored_by_the_scheduler() -> None:
    run = Run(step("first"), {**GATE, "dependsOn": ["first"]}).at(0)
    run.at(1, ApprovalObserved("gate", 0, (d("sam"),), None))
    assert run.status("gate") is StepStatus.PENDING
    assert run.entries(LogEventType.APPROVAL_DECISION) == []


def test_a_failed_attempt_result_ends_an_approval_step() -> None:
    """A shell that cannot ask (no TTY, no flag) fails the step with its reason."""
    run = Run(GATE).at(0)
    run.at(1, AttemptFinished("gate", 1, StepExecutorResult(success=False, error="pass --approve")))
    assert run.status("gate") is StepStatus.FAILED
    assert run.state.steps["gate"].message and "--approve" in run.state.steps["gate"].message
