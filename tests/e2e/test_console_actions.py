"""The console's approve and re-run buttons in a real headless Chromium against the real
cluster, acting as an impersonated approver (docs/ui.md): the inbox lists the waiting step,
Approve on the execution page creates the RunbookApproval the CLI creates, the operator counts
it and the page shows the step SUCCEEDED live; on a failed execution "Re-run from here" creates
the re-run object `runbookctl rerun --from` creates and the browser lands on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from runbook_operator.kube import Kube

from .conftest import Cluster, wait_for
from .operator_env import (  # fixtures (own_operator, project_crds) come from conftest.py
    OperatorProcess,
    Runbooks,
    impersonating,
    shell_step,
    transform,
    wait_authorized,
)
from .test_approvals import GROUP_OF, SAM, ensure_crds, gate, grant, verdict
from .test_console import Console, _click, _dag, _open, _shot, _wait_text, browser  # noqa: F401

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def rb(cluster: Cluster, own_operator: tuple[OperatorProcess, str]) -> Runbooks:
    op, ns = own_operator
    ensure_crds(cluster)
    grant(cluster, ns)
    # what the console reads besides the runbook objects: pinned definitions, pods' logs
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    rbac.create_namespaced_role(
        ns,
        {
            "metadata": {"name": "console-reader"},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps", "pods"], "verbs": ["get", "list"]}
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "console-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "console-reader",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": SAM}],
        },
    )
    wait_authorized(cluster, ns, SAM, verb="get", resource="configmaps", group="")
    return Runbooks(cluster, ns, op.tail)


@pytest.fixture
def console(cluster: Cluster, rb: Runbooks) -> Iterator[Console]:
    served = Console(Kube(impersonating(cluster, SAM, GROUP_OF[SAM])), [rb.namespace])
    yield served
    served.stop()


def test_approve_from_the_inbox_and_rerun_a_failed_step(
    cluster: Cluster,
    rb: Runbooks,
    console: Console,
    browser: WebDriver,  # noqa: F811
) -> None:
    ns = rb.namespace
    # -- approve: the inbox lists the gate, the page's Approve counts and completes it --------
    rb.runbook(
        "gated",
        [
            transform("prepare"),
            gate(approvers={"users": [SAM]}, required=1),
            transform("act", "gate"),
        ],
    )
    rb.execute("gated-1", "gated")
    rb.wait("gated-1", lambda s: s.get("awaitingApproval") == "gate", 120, "waiting at the gate")

    browser.get(console.url(f"/approvals?namespace={ns}"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#inbox tr[data-key]")
    assert [r.get_attribute("data-key") for r in rows] == [f"{ns}/gated-1/gate"]
    _shot(browser, "approvals")
    rows[0].find_element(By.TAG_NAME, "a").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "action-approve-gate"))

    _open(browser, console.url(f"/executions/{ns}/gated-1"))
    _shot(browser, "approve")
    browser.find_element(By.ID, "comment-gate").send_keys("looks right")
    _click(browser, "action-approve-gate")
    answer = browser.find_element(By.ID, "answer").text
    assert "answered 201" in answer and f"as {SAM}" in answer, answer
    assert "the operator counted it" in answer, answer  # the verdict, waited for briefly
    approvals = client.CustomObjectsApi(cluster.api).list_namespaced_custom_object(
        "runbook-operator.dev", "v1alpha1", ns, "runbookapprovals"
    )["items"]
    assert [
        (a["spec"]["stepId"], a["spec"]["decision"], a["spec"]["comment"]) for a in approvals
    ] == [("gate", "approve", "looks right")]
    assert verdict(cluster, ns, approvals[0]["metadata"]["name"])["verdict"] == "Counted"
    _wait_text(browser, "#phase", "COMPLETED", 120)  # live: no reload
    assert _dag(browser)["gate"] == "SUCCEEDED"
    assert "Counted" in browser.find_element(By.ID, "decisions").text

    # -- re-run from the failed step: the new execution is the CLI's re-run object -----------
    rb.runbook(
        "flaky", [transform("prepare"), shell_step("boom", "raise SystemExit(3)", "prepare")]
    )
    rb.execute("flaky-1", "flaky")
    assert rb.wait_phase("flaky-1", "FAILED", "COMPLETED", timeout=180)["phase"] == "FAILED"
    _open(browser, console.url(f"/executions/{ns}/flaky-1?step=boom"))
    _shot(browser, "rerun")
    browser.find_element(By.ID, "action-rerun-from").click()
    WebDriverWait(browser, 30).until(
        lambda d: "/executions/" + ns + "/flaky-1-rerun-" in d.current_url
    )
    new = browser.current_url.rsplit("/", 1)[-1]
    made = wait_for(
        lambda: client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            "runbook-operator.dev", "v1alpha1", ns, "runbookexecutions", new
        ),
        30,
        0.3,
        "the re-run object",
    )
    assert made["spec"]["rerunOf"] == {"name": "flaky-1"} and made["spec"]["from"] == ["boom"]
    assert made["metadata"]["annotations"]["runbook-operator.dev/created-by"] == SAM
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "phase"))
