"""The console's approve/deny, inbox and re-run buttons: the HTTP layer with a source in
memory (what the page offers, what it asks the source to write, the apiserver's answer shown,
the redirect to a new execution), and ClusterSource over a recording Kube (the objects it
creates are the CLI's: `approval_manifest` and `rerun_manifest`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runbook_engine.identity import Identity
from runbook_operator.kube import APPROVALS, EXECUTIONS, KubeError, NotFound, Resource
from runbookctl.cluster import rerun_manifest
from runbookctl.cluster_approvals import approval_manifest
from runbookctl.ui import actions
from runbookctl.ui.source import Answer, ClusterSource

from .test_app import Memory, _client, _obj, _token

CREATED = Answer(201, "runbookapproval/x-gate-1 created")


def _waiting(name: str = "x") -> dict[str, Any]:
    obj = _obj(name, "RUNNING")
    obj["status"]["awaitingApproval"] = "gate"
    obj["status"]["steps"].append({"stepId": "gate", "status": "RUNNING", "attempt": 1})
    return obj


class Deciding(Memory):
    """Memory plus the approval and re-run writes it was asked for."""

    def __init__(self, answer: Answer = CREATED) -> None:
        super().__init__(answer)
        self.objects = {"x": _waiting(), "f": _obj("f", "FAILED")}
        self.decided: list[tuple[str, str, str, str, str]] = []
        self.reruns: list[tuple[str, str, list[str]]] = []

    def decide(self, namespace: str, name: str, step: str, decision: str, comment: str) -> Answer:
        self.decided.append((namespace, name, step, decision, comment))
        return self.answer

    def decisions(self, namespace: str, name: str) -> tuple[list[dict[str, Any]], str | None]:
        made = [
            {
                "metadata": {"name": f"{n}-{s}-1", "annotations": {}},
                "spec": {"decision": d, "stepId": s, "comment": c},
                "status": {"verdict": "Counted"},
            }
            for _, n, s, d, c in self.decided
            if n == name
        ]
        return made, None

    def inbox(self, namespace: str) -> tuple[list[dict[str, str]], list[str]]:
        row = {
            "namespace": "soc",
            "execution": "x",
            "step": "gate",
            "required": "1",
            "waitingSince": "",
            "onTimeout": "reject",
            "instructions": "<b>block?</b>",
        }
        return [row], ["other: 500 boom"]

    def rerun(self, namespace: str, name: str, rerun_from: list[str]) -> Answer:
        self.reruns.append((namespace, name, rerun_from))
        return Answer(201, "created", made="f-rerun-abc")


def test_a_waiting_step_offers_approve_and_deny_and_the_decision_is_written() -> None:
    source = Deciding()
    client = _client(source)
    page = client.get("/executions/soc/x").text
    assert 'id="action-approve-gate"' in page and 'id="action-deny-gate"' in page
    assert "action-rerun" not in page  # not finished
    token = _token(page)
    done = client.post(
        "/executions/soc/x/actions/approve",
        data={"csrf": token, "step": "gate", "comment": "<i>ok</i>"},
    )
    assert done.status_code == 200 and "the apiserver answered 201" in done.text
    assert source.decided == [("soc", "x", "gate", "approve", "<i>ok</i>")]
    assert "Counted" in done.text and "&lt;i&gt;ok&lt;/i&gt;" in done.text  # the verdict, escaped
    client.post("/executions/soc/x/actions/deny", data={"csrf": token, "step": "gate"})
    assert source.decided[-1] == ("soc", "x", "gate", "reject", "")


def test_a_decision_needs_a_step_and_a_bounded_comment() -> None:
    source = Deciding()
    client = _client(source)
    token = _token(client.get("/executions/soc/x").text)
    no_step = client.post("/executions/soc/x/actions/approve", data={"csrf": token})
    assert "answered 422" in no_step.text and "step: required" in no_step.text
    long = client.post(
        "/executions/soc/x/actions/approve",
        data={"csrf": token, "step": "gate", "comment": "x" * 5000},
    )
    assert "comment: at most 4096" in long.text and source.decided == []
    assert (
        client.post("/executions/soc/x/actions/approve", data={"step": "gate"}).status_code == 403
    )


def test_a_refused_decision_shows_the_403() -> None:
    source = Deciding(Answer(403, 'Forbidden: User "bob" cannot create runbookapprovals'))
    client = _client(source)
    token = _token(client.get("/executions/soc/x").text)
    page = client.post(
        "/executions/soc/x/actions/approve", data={"csrf": token, "step": "gate"}
    ).text
    assert "answered 403 Forbidden" in page and "cannot create runbookapprovals" in page


def test_the_inbox_lists_what_waits_and_is_in_the_nav() -> None:
    client = _client(Deciding())
    page = client.get("/approvals")
    assert page.status_code == 200
    assert 'href="/approvals"' in page.text and 'data-key="soc/x/gate"' in page.text
    assert "&lt;b&gt;block?&lt;/b&gt;" in page.text and "other: 500 boom" in page.text
    assert 'href="/executions/soc/x#decide"' in page.text


def test_a_finished_execution_offers_rerun_and_rerun_from_a_step() -> None:
    source = Deciding()
    client = _client(source)
    page = client.get("/executions/soc/f?step=s1").text
    assert 'id="action-rerun"' in page and 'id="action-rerun-from"' in page
    assert "action-approve" not in page and "action-pause" not in page
    token = _token(page)
    whole = client.post(
        "/executions/soc/f/actions/rerun", data={"csrf": token}, follow_redirects=False
    )
    assert whole.status_code == 303 and whole.headers["location"] == "/executions/soc/f-rerun-abc"
    client.post(
        "/executions/soc/f/actions/rerun-from",
        data={"csrf": token, "step": "s1"},
        follow_redirects=False,
    )
    assert source.reruns == [("soc", "f", []), ("soc", "f", ["s1"])]
    assert actions.step_panel(_obj("r", "RUNNING"), "s1") == []


class RecordingKube:
    """The few Kube calls ClusterSource's writes make; records what they create."""

    def __init__(self, objects: Mapping[str, dict[str, Any]], refuse: bool = False) -> None:
        self.objects = dict(objects)
        self.refuse = refuse
        self.created: list[tuple[str, str, dict[str, Any]]] = []
        self.verdict: dict[str, str] = {"verdict": "Counted"}

    def whoami(self) -> dict[str, Any]:
        return {"username": "alice", "uid": "u-1", "groups": ["sre", "system:authenticated"]}

    def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any]:
        if res is EXECUTIONS and name in self.objects:
            return self.objects[name]
        if res is APPROVALS and name == "made-1":
            return {"status": self.verdict}
        raise NotFound(404, "NotFound", f"{name} not found")

    def create(self, res: Resource, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.refuse:
            raise KubeError(403, "Forbidden", "alice cannot create")
        self.created.append((res.plural, namespace, body))
        return {**body, "metadata": {**body["metadata"], "name": "made-1"}}


def test_cluster_source_creates_the_objects_the_cli_creates() -> None:
    failed = {**_obj("f", "FAILED"), "spec": {"runbookRef": {"name": "rb"}, "legalBasis": "x"}}
    kube = RecordingKube({"x": _waiting(), "f": failed, "r": _obj("r", "RUNNING")})
    source = ClusterSource(kube)  # type: ignore[arg-type]
    answer = source.decide("soc", "x", "gate", "approve", "fine")
    assert answer.status == 201 and "as alice" in answer.message
    assert answer.message.endswith("the operator counted it")
    who = Identity.from_wire(kube.whoami())
    assert kube.created[-1] == (
        APPROVALS.plural,
        "soc",
        approval_manifest("x", "gate", "approve", "fine", who),
    )
    made = source.rerun("soc", "f", ["s1"])
    assert made.made == "made-1"
    expected = rerun_manifest(failed, rerun_from=["s1"], only=[], latest=False, new_input=None)
    assert kube.created[-1] == (EXECUTIONS.plural, "soc", expected)
    assert source.rerun("soc", "r", []).status == 409  # not finished: refused before a write
    assert source.decide("soc", "gone", "gate", "approve", "").status == 404
    kube.verdict = {"verdict": "Refused", "code": "NotEligible", "reason": "not listed"}
    said = source.decide("soc", "x", "gate", "reject", "").message
    assert said.endswith("the operator refused it (NotEligible): not listed")
    kube.verdict = {}
    source.verdict_wait = 0
    assert "no verdict yet" in source.decide("soc", "x", "gate", "approve", "").message
    refused = ClusterSource(RecordingKube({"x": _waiting()}, refuse=True))  # type: ignore[arg-type]
    assert refused.decide("soc", "x", "gate", "approve", "").status == 403
