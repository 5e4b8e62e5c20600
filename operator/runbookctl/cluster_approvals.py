"""`runbookctl approve|deny|approvals` (and `kubectl runbook ...`): decisions on a cluster.

`approve`/`deny` create a RunbookApproval in the execution's namespace and wait briefly for
the operator's verdict (counted, or refused and why). Who decided is the authenticated user:
admission stamps it (or checks the stamp this command writes from a SelfSubjectReview where no
MutatingAdmissionPolicy runs). `approvals` is the caller's inbox: the steps waiting for a
decision that the caller may give. docs/approvals.md.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from runbook_engine.approval import ApprovalConfig, parse_config
from runbook_engine.identity import Identity
from runbookctl.cluster import (
    ContextOpt,
    Format,
    FormatOpt,
    KubeconfigOpt,
    NameArg,
    NamespaceOpt,
    Target,
    _emit,
    _errors,
    _fail,
)

if TYPE_CHECKING:
    from runbook_operator.kube import Kube

VERDICT_WAIT_SECONDS = 15.0
StepArg = Annotated[str, typer.Argument(help="The APPROVAL step's id")]
CommentOpt = Annotated[str, typer.Option("--comment", "-m", help="Why (kept in the ledger)")]
WaitOpt = Annotated[
    float,
    typer.Option("--wait", help="Seconds to wait for the operator's verdict (0: do not wait)"),
]


def approval_manifest(
    execution: str, step: str, decision: str, comment: str, who: Identity
) -> dict[str, Any]:
    """A RunbookApproval; the created-by stamps name `who` (admission refuses anyone else)."""
    from runbook_operator.execution.stamps import CREATED_BY, CREATED_BY_GROUPS, CREATED_BY_UID

    return {
        "apiVersion": "runbook-operator.dev/v1alpha1",
        "kind": "RunbookApproval",
        "metadata": {
            "generateName": f"{execution[:200]}-{step[:40].lower().replace('_', '-')}-".replace(
                ".", "-"
            ),
            "labels": {"runbook-operator.dev/execution": execution[:63]},
            "annotations": {
                CREATED_BY: who.username,
                CREATED_BY_UID: who.uid or "",
                CREATED_BY_GROUPS: ",".join(who.groups),
            },
        },
        "spec": {
            "executionRef": {"name": execution},
            "stepId": step,
            "decision": decision,
            "comment": comment,
        },
    }


def create_decision(
    kube: Kube, namespace: str, execution: str, step: str, decision: str, comment: str
) -> tuple[str, Identity]:
    """Create the RunbookApproval as the caller (who the apiserver says they are): the write of
    `runbookctl approve|deny` and of the console's buttons. Returns its name and the caller."""
    from runbook_operator.kube import APPROVALS

    who = Identity.from_wire(kube.whoami())
    made = kube.create(
        APPROVALS, namespace, approval_manifest(execution, step, decision, comment, who)
    )
    return str(made["metadata"]["name"]), who


def _decide(decision: str) -> Any:
    def command(
        name: NameArg,
        step: StepArg,
        comment: CommentOpt = "",
        wait: WaitOpt = VERDICT_WAIT_SECONDS,
        namespace: NamespaceOpt = None,
        context: ContextOpt = None,
        kubeconfig: KubeconfigOpt = None,
    ) -> None:
        with _errors():
            target = Target(kubeconfig, context, namespace)
            target.execution(name)  # a clear "not found" before anything is created
            made_name, who = create_decision(
                target.kube, target.namespace, name, step, decision, comment
            )
            typer.echo(
                f"runbookapproval/{made_name}: {decision} of {name}/{step} as {who.username}"
            )
            status = _await_verdict(target, made_name, wait)
            if status is None:
                typer.echo("no verdict yet (the operator judges it when it next looks)")
            elif status.get("verdict") == "Counted":
                typer.echo("counted")
            else:
                _fail(f"refused ({status.get('code')}): {status.get('reason')}", 1)

    command.__doc__ = {
        "approve": "Approve a waiting APPROVAL step as you (a RunbookApproval; the operator judges it).",
        "reject": "Reject (deny) a waiting APPROVAL step as you: one eligible reject fails it.",
    }[decision]
    return command


def _await_verdict(target: Target, name: str, wait: float) -> Mapping[str, Any] | None:
    return await_verdict(target.kube, target.namespace, name, wait)


def await_verdict(kube: Kube, namespace: str, name: str, wait: float) -> Mapping[str, Any] | None:
    """The RunbookApproval's status once the operator wrote its verdict, or None after `wait`
    seconds (`runbookctl approve` and the console's buttons)."""
    from runbook_operator.kube import APPROVALS

    deadline = time.monotonic() + wait
    while True:
        status = kube.get(APPROVALS, namespace, name).get("status") or {}
        if status.get("verdict"):
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.5)


def may_decide(
    config: ApprovalConfig,
    who: Identity,
    requester: str | None,
    rbac_allows: bool | None,
) -> bool:
    """Could `who`'s decision count (eligibility and the requester rule; not duplicates)?"""
    if not config.allow_requester and requester == who.username:
        return False
    listed = config.approvers
    if listed.listed:
        return who.username in listed.users or bool(set(who.groups) & set(listed.groups))
    return bool(rbac_allows)


def _inbox_rows(target: Target, who: Identity) -> list[dict[str, str]]:
    return inbox_rows(target.kube, target.namespace, who)


def inbox_rows(kube: Kube, namespace: str, who: Identity) -> list[dict[str, str]]:
    """The APPROVAL steps in `namespace` waiting for a decision `who` may give and has not
    given: `runbookctl approvals` and the console's inbox."""
    from runbook_operator.execution import pinning
    from runbook_operator.execution.stamps import Stamps
    from runbook_operator.kube import APPROVALS, CONFIGMAPS, EXECUTIONS, NotFound

    mine = {
        (str(a["spec"]["executionRef"]["name"]), str(a["spec"].get("stepId")))
        for a in kube.list(APPROVALS, namespace)
        if (a["metadata"].get("annotations") or {}).get("runbook-operator.dev/created-by")
        == who.username
    }
    rows = []
    executions = kube.list(EXECUTIONS, namespace)
    for obj in sorted(executions, key=lambda o: str(o["metadata"].get("creationTimestamp", ""))):
        status = obj.get("status") or {}
        waiting = [s for s in str(status.get("awaitingApproval") or "").split(",") if s]
        if not waiting or not status.get("definitionRef"):
            continue
        name = str(obj["metadata"]["name"])
        try:
            cm = kube.get(CONFIGMAPS, namespace, str(status["definitionRef"]))
            plan = pinning.pinned_from_configmap(cm).plan
        except (NotFound, ValueError, KeyError):
            continue
        creator = Stamps.of(obj["metadata"].get("annotations") or {}, False, False).creator
        steps = {s["stepId"]: s for s in status.get("steps", [])}
        for sid in waiting:
            if sid not in plan.steps or (name, sid) in mine:
                continue
            config = parse_config(plan.steps[sid].config)
            allowed = None if config.approvers.listed else _self_allowed(kube, namespace, name)
            if not may_decide(config, who, creator.username if creator else None, allowed):
                continue
            rows.append(
                {
                    "execution": name,
                    "step": sid,
                    "required": str(config.required),
                    "waitingSince": str(steps.get(sid, {}).get("startedAt") or ""),
                    "onTimeout": config.on_timeout,
                    "instructions": config.instructions,
                }
            )
    return rows


def _self_allowed(kube: Kube, namespace: str, execution: str) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "group": "runbook-operator.dev",
                "resource": "runbookexecutions",
                "verb": "approve",
                "namespace": namespace,
                "name": execution,
            }
        },
    }
    made = kube.call("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review)
    return bool((made.get("status") or {}).get("allowed"))


def inbox_table(rows: Sequence[Mapping[str, str]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("EXECUTION", "STEP", "REQUIRED", "WAITING SINCE", "ON TIMEOUT", "INSTRUCTIONS"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["execution"],
            row["step"],
            row["required"],
            row["waitingSince"],
            row["onTimeout"],
            row["instructions"][:80],
        )
    return table


def approvals(
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    output: FormatOpt = Format.table,
) -> None:
    """Your inbox: APPROVAL steps waiting for a decision that you may give (and have not)."""
    with _errors():
        target = Target(kubeconfig, context, namespace)
        who = Identity.from_wire(target.kube.whoami())
        rows = _inbox_rows(target, who)
        if not rows and output is Format.table:
            typer.echo(f"Nothing waits for {who.username} in namespace {target.namespace}.")
            return
        _emit(rows, output, lambda: inbox_table(rows))


def register(app: typer.Typer) -> None:
    app.command("approve")(_decide("approve"))
    app.command("deny")(_decide("reject"))
    app.command("reject", hidden=True)(_decide("reject"))
    app.command("approvals")(approvals)
