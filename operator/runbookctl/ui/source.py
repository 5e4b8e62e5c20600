"""What the console reads and writes on the cluster, as the user (their kubeconfig): the
CLI's cluster code (`runbookctl.cluster`, `cluster_view`) and the operator's ledger readers,
never a second copy of them. Every apiserver refusal comes back as an `Answer` to show."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runbook_engine.canonical import canonical_sha256
from runbook_engine.enums import ControlAction
from runbook_engine.plan import Plan
from runbook_engine.problems import InvalidRunbook
from runbook_operator import names
from runbook_operator.kube import (
    CONFIGMAPS,
    EXECUTIONS,
    NAMESPACES,
    PODS,
    RUNBOOKS,
    Kube,
    KubeError,
    NotFound,
)
from runbook_operator.ledger import find as ledger_find
from runbook_operator.ledger.checkpoint import SigningKeyError
from runbook_operator.ledger.segments import LedgerError, all_entries
from runbook_operator.steps import results
from runbookctl import cluster, cluster_view
from runbookctl.ui import model

LOG_BYTES = 64 * 1024
LOG_LINES = 500
VERDICT_WAIT_SECONDS = 5.0
"""How long an approve/deny waits for the operator's verdict before the page answers."""
MAX_INBOX_NAMESPACES = 50
"""The inbox across namespaces reads at most this many (pick one in the filter for others)."""
MAX_LIST_PAGES = 10
"""A filtered list reads at most this many API pages to fill one page of matches."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The apiserver's answer to a write: its HTTP status and message (403 says so)."""

    status: int
    message: str
    made: str | None = None
    """The object the write created, when the page should go there (a re-run)."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_token: str
    error: str | None = None


def _answer(exc: KubeError) -> Answer:
    return Answer(exc.status or 502, f"{exc.reason}: {exc}")


class ClusterSource:
    """The cluster, seen with one user's credentials (a Kube made from their kubeconfig)."""

    read_only = False
    verdict_wait = VERDICT_WAIT_SECONDS

    def __init__(self, kube: Kube, namespaces: list[str] | None = None) -> None:
        self.kube = kube
        self.fixed_namespaces = namespaces
        self._who: str | None = None

    # -- who and where ----------------------------------------------------------------------
    def whoami(self) -> str:
        if self._who is None:
            try:
                self._who = str(self.kube.whoami().get("username") or "?")
            except KubeError as exc:
                self._who = f"(unknown: {exc.reason})"
        return self._who

    def namespaces(self) -> list[str]:
        """The namespaces offered in the filter: the ones given, or all the user may list."""
        if self.fixed_namespaces:
            return list(self.fixed_namespaces)
        try:
            return sorted(str(n["metadata"]["name"]) for n in self.kube.list(NAMESPACES, None))
        except KubeError:
            return []

    # -- executions -------------------------------------------------------------------------
    def _list_page(
        self, namespace: str | None, limit: int, token: str
    ) -> tuple[list[dict[str, Any]], str]:
        query = {"limit": str(limit)}
        if token:
            query["continue"] = token
        data = self.kube.call("GET", EXECUTIONS.path(namespace), query=query)
        return list(data.get("items") or []), str(
            (data.get("metadata") or {}).get("continue") or ""
        )

    def list_executions(
        self, namespace: str, limit: int, token: str, filters: Mapping[str, str]
    ) -> Page:
        """One page of executions (server-side `limit`/`continue`); with filters, API pages are
        read until `limit` matches or MAX_LIST_PAGES pages (the token goes on from there).
        Without a namespace: cluster-wide, or over the namespaces given one after the other
        (the token is then `INDEX/CONTINUE`)."""
        scopes: list[str | None] = [namespace or None]
        if not namespace and self.fixed_namespaces:
            scopes = list(self.fixed_namespaces)
        index, _, cont = token.partition("/") if len(scopes) > 1 else ("0", "", token)
        at = int(index) if index.isdigit() and int(index) < len(scopes) else 0
        out: list[dict[str, Any]] = []
        now = datetime.now(UTC)
        try:
            for _ in range(MAX_LIST_PAGES):
                items, cont = self._list_page(scopes[at], limit - len(out), cont)
                out += [o for o in items if model.matches(execution_row(o, now), **filters)]
                if not cont:
                    if at + 1 >= len(scopes):
                        return Page(out, "")
                    at += 1
                if len(out) >= limit:
                    break
        except KubeError as exc:
            return Page(out, "", f"{exc.status} {exc.reason}: {exc}")
        return Page(out, f"{at}/{cont}" if len(scopes) > 1 else cont)

    def execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        return ledger_find.get_execution(self.kube, namespace, name)

    def pinned(self, namespace: str, obj: Mapping[str, Any]) -> tuple[Plan | None, str | None]:
        """The definition pinned at start (read from its ConfigMap), or why there is none."""
        from runbook_operator.execution.pinning import pinned_from_configmap

        meta = obj["metadata"]
        cm_name = (obj.get("status") or {}).get("definitionRef") or names.definition_configmap(
            str(meta["name"]), str(meta["uid"])
        )
        try:
            cm = self.kube.get(CONFIGMAPS, namespace, str(cm_name))
            return pinned_from_configmap(cm).plan, None
        except NotFound:
            return None, "no pinned definition yet (the execution has not started)"
        except KubeError as exc:
            return None, f"pinned definition not readable: {exc.reason}"
        except (ValueError, KeyError, InvalidRunbook) as exc:
            return None, f"pinned definition damaged: {exc}"

    def ledger(self, namespace: str, name: str, uid: str) -> tuple[list[Any], model.Badge]:
        """The audit entries and the badge, by the same check as `runbookctl verify NAME`."""
        try:
            found = ledger_find.find_ledgers(self.kube, namespace, name)
        except KubeError as exc:
            return [], model.badge_unknown(f"ledger not readable: {exc.reason}")
        mine = next((f for f in found if f.lid.uid == uid), None)
        if mine is None:
            return [], model.badge_unknown("no ledger yet")
        entries = all_entries(mine.segments)
        try:
            report = ledger_find.verify_execution(self.kube, namespace, name, uid=uid)
        except (LedgerError, SigningKeyError, KubeError) as exc:
            return entries, model.badge_unknown(f"not verified: {exc}")
        first = report.problems[0].seq if report.problems else None
        badge = model.badge_from_report(
            report.ok, first, report.checkpoint is not None, report.headline()
        )
        return entries, badge

    def output(self, namespace: str, obj: Mapping[str, Any], step: str) -> tuple[Any, str | None]:
        """A succeeded step's output, checked against the status's outputHash (as `runbookctl
        output`), or why there is none."""
        try:
            job, expected = cluster_view.result_source(obj, step)
            cm = self.kube.get(CONFIGMAPS, namespace, names.result_configmap(job))
            value = results.read_configmap(cm).output
        except LookupError as exc:
            return None, str(exc)
        except KubeError as exc:
            return None, f"result not readable: {exc.reason}"
        except results.ResultError as exc:
            return None, str(exc)
        if expected is not None and canonical_sha256(value) != expected:
            return None, f"the output does not match status outputHash {expected[:16]}…"
        return value, None

    def pod_logs(self, namespace: str, obj: Mapping[str, Any], step: str) -> tuple[str | None, str]:
        """The log of the pod of the step's last Job while it exists, else a note saying so."""
        entry = next(
            (s for s in (obj.get("status") or {}).get("steps") or [] if s.get("stepId") == step),
            None,
        )
        job = (entry or {}).get("jobName")
        if not job:
            return None, "no Job has run for this step"
        try:
            pods = self.kube.list(PODS, namespace, f"job-name={job}")
        except KubeError as exc:
            return None, f"pods not readable: {exc.reason}"
        if not pods:
            return None, (
                f"the pod of Job {job} is gone (Jobs are removed after their TTL): the log is no "
                "longer available; the audit log and the step's result still are"
            )
        pod = sorted(pods, key=lambda p: str(p["metadata"].get("creationTimestamp")))[-1]
        pod_name = str(pod["metadata"]["name"])
        path = PODS.path(namespace, pod_name, "log")
        try:
            text = self.kube.get_text(
                path, {"limitBytes": str(LOG_BYTES), "tailLines": str(LOG_LINES)}, LOG_BYTES
            )
        except KubeError as exc:
            return None, f"log of pod {pod_name} not readable: {exc.reason}"
        return text, f"pod {pod_name} (last {LOG_LINES} lines, at most {LOG_BYTES} bytes)"

    def control(self, namespace: str, name: str, action: ControlAction) -> Answer:
        """The same write as `runbookctl pause|resume|cancel NAME`, made as the user."""
        from runbook_engine.control import REQUEST_CHANGES

        try:
            obj = self.kube.get(EXECUTIONS, namespace, name)
            reason = cluster.control_refusal(namespace, obj, action)
            if reason is not None:
                return Answer(409, reason)
            change = dict(REQUEST_CHANGES[action])
            cluster.patch_spec(self.kube, namespace, obj, change)
        except KubeError as exc:
            return _answer(exc)
        fields = ", ".join(f"spec.{k}={str(v).lower()}" for k, v in change.items())
        return Answer(200, f"{action.lower()} requested ({fields})")

    def decide(self, namespace: str, name: str, step: str, decision: str, comment: str) -> Answer:
        """The same RunbookApproval as `runbookctl approve|deny NAME STEP -m COMMENT`, as the
        user; the operator's verdict appears on the page when it writes it."""
        from runbookctl.cluster_approvals import await_verdict, create_decision

        try:
            if self.execution(namespace, name) is None:
                return Answer(404, f"runbookexecution {name!r} not found in {namespace!r}")
            made, who = create_decision(self.kube, namespace, name, step, decision, comment)
        except KubeError as exc:
            return _answer(exc)
        said = f"runbookapproval/{made} created: {decision} of {step} as {who.username}"
        try:
            status = await_verdict(self.kube, namespace, made, self.verdict_wait)
        except KubeError as exc:
            return Answer(201, f"{said}; its verdict is not readable: {exc.reason}")
        if status is None:
            return Answer(201, f"{said}; no verdict yet (the table below shows it when it comes)")
        if status.get("verdict") == "Counted":
            return Answer(201, f"{said}; the operator counted it")
        return Answer(
            201, f"{said}; the operator refused it ({status.get('code')}): {status.get('reason')}"
        )

    def decisions(self, namespace: str, name: str) -> tuple[list[dict[str, Any]], str | None]:
        """The RunbookApprovals made on this execution, with the operator's verdicts."""
        from runbook_operator.kube import APPROVALS

        try:
            selector = f"runbook-operator.dev/execution={name[:63]}"
            items = self.kube.list(APPROVALS, namespace, selector)
        except KubeError as exc:
            if exc.status in (403, 404):  # not theirs to read, or no such kind: no table
                return [], None
            return [], f"decisions not readable: {exc.reason}"
        mine = [
            a
            for a in items
            if ((a.get("spec") or {}).get("executionRef") or {}).get("name") == name
        ]
        return sorted(mine, key=lambda a: str(a["metadata"].get("creationTimestamp", ""))), None

    def inbox(self, namespace: str) -> tuple[list[dict[str, str]], list[str]]:
        """What waits for the user (the rows of `runbookctl approvals`) in `namespace` or in
        each namespace offered; and the namespaces that could not be read, and why."""
        from runbook_engine.identity import Identity
        from runbookctl.cluster_approvals import inbox_rows

        problems: list[str] = []
        try:
            who = Identity.from_wire(self.kube.whoami())
        except KubeError as exc:
            return [], [f"who am I: {exc.reason}"]
        rows: list[dict[str, str]] = []
        for ns in [namespace] if namespace else self.namespaces()[:MAX_INBOX_NAMESPACES]:
            try:
                rows += [{**row, "namespace": ns} for row in inbox_rows(self.kube, ns, who)]
            except KubeError as exc:
                if exc.status != 403 or namespace:
                    problems.append(f"{ns}: {exc.status} {exc.reason}")
        return rows, problems

    def rerun(self, namespace: str, name: str, rerun_from: list[str]) -> Answer:
        """The same RunbookExecution as `runbookctl rerun NAME [--from STEP]`, as the user."""
        try:
            parent = self.execution(namespace, name)
            if parent is None:
                return Answer(404, f"runbookexecution {name!r} not found in {namespace!r}")
            refusal = cluster.rerun_refusal(parent)
            if refusal is not None:
                return Answer(409, refusal)
            manifest = cluster.rerun_manifest(
                parent, rerun_from=rerun_from, only=[], latest=False, new_input=None
            )
            made = self.kube.create(EXECUTIONS, namespace, manifest)
        except KubeError as exc:
            return _answer(exc)
        new = str(made["metadata"]["name"])
        return Answer(201, f"runbookexecution/{new} created (re-run of {name})", made=new)

    # -- runbooks ---------------------------------------------------------------------------
    def runbooks(self, namespace: str) -> tuple[list[dict[str, Any]], str | None]:
        try:
            items = self.kube.list(RUNBOOKS, namespace or None)
        except KubeError as exc:
            return [], f"{exc.status} {exc.reason}: {exc}"
        return sorted(
            items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])
        ), None

    def runbook(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.kube.get(RUNBOOKS, namespace, name)
        except NotFound:
            return None

    def recent_executions(
        self, namespace: str, runbook: str, limit: int = 20
    ) -> list[dict[str, Any]]:
        page = self.list_executions(namespace, 100, "", {"runbook": runbook})
        objs = sorted(page.items, key=lambda o: str(o["metadata"].get("creationTimestamp")))
        return list(reversed(objs))[:limit]

    def start(
        self, namespace: str, runbook: str, spec: Mapping[str, Any]
    ) -> tuple[Answer, str | None]:
        """Create a RunbookExecution of `runbook` as the user: (answer, the new name)."""
        body = {
            "apiVersion": EXECUTIONS.group_version,
            "kind": "RunbookExecution",
            "metadata": {"generateName": f"{runbook[:50]}-"},
            "spec": {**spec, "runbookRef": {"name": runbook}},
        }
        try:
            made = self.kube.create(EXECUTIONS, namespace, body)
        except KubeError as exc:
            return _answer(exc), None
        name = str(made["metadata"]["name"])
        return Answer(201, f"runbookexecution/{name} created"), name


def execution_row(obj: Mapping[str, Any], now: datetime) -> dict[str, str]:
    """`runbookctl get`'s columns plus namespace and message (for the text filter)."""
    row = cluster_view.execution_row(obj, now)
    row["namespace"] = str((obj.get("metadata") or {}).get("namespace", ""))
    row["message"] = str((obj.get("status") or {}).get("message") or "")
    return row
