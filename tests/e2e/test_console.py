"""`runbookctl ui` in a real headless Chromium (Debian's chromium + chromium-driver, Selenium)
against the real cluster: the console acts with the credentials it is given (an impersonated
view-only user gets the apiserver's 403), live updates arrive by server-sent events, the ledger
badge turns TAMPERED, and a step message `<script>alert(1)</script>` stays text.

Screenshots of every page go to $RUNBOOK_SCREENSHOTS (default _out/screenshots), kept by CI
(docs/ui.md shows them). The browser is installed by hack/browser/install.sh.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from kubernetes import client
from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from runbook_engine.audit import AuditChain, AuditEvent
from runbook_engine.canonical import canonical_sha256
from runbook_engine.contract import StepExecutorResult
from runbook_engine.enums import LogEventType
from runbook_engine.model import ExecutionRequest
from runbook_operator import names
from runbook_operator.execution.pinning import pin
from runbook_operator.kube import CONFIGMAPS, EXECUTIONS, Kube
from runbook_operator.ledger.find import find_ledgers
from runbook_operator.ledger.segments import ENTRIES_KEY
from runbook_operator.ledger.store import LedgerStore
from runbook_operator.names import ExecutionRef
from runbook_operator.steps import results
from runbookctl.ui.app import build_app
from runbookctl.ui.live import Hub
from runbookctl.ui.source import ClusterSource

from .conftest import REPO_ROOT, Cluster, wait_for

# The fixtures (operator, rb, …) come from conftest.py. Importing a session fixture here again
# would make pytest start a second session operator for this module, leading the same scope.
from .operator_env import (
    Runbooks,
    impersonating,
    shell_step,
    transform,
    wait_authorized,
)

pytestmark = [pytest.mark.e2e]
SCREENSHOTS = Path(os.environ.get("RUNBOOK_SCREENSHOTS", REPO_ROOT / "_out" / "screenshots"))
XSS = "<script>alert(1)</script>"
T = TypeVar("T")


# -- the browser and the server ------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("chromium and chromium-driver are not installed: run hack/browser/install.sh")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium fetch a driver
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1100",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Console:
    """`runbookctl ui`'s app served on 127.0.0.1 from a thread, with the given credentials."""

    def __init__(self, kube: Kube, namespaces: list[str]) -> None:
        self.hub = Hub(kube, namespaces)
        app = build_app(ClusterSource(kube, namespaces), hub=self.hub)
        self.port = _free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, 30, 0.1, "the console to listen")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.hub.stop()
        self.server.should_exit = True
        self.thread.join(10)


def _shot(driver: WebDriver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script(
        "window.scrollTo(0, 0); return document.documentElement.scrollHeight"
    )
    driver.set_window_size(1400, min(max(int(height) + 40, 800), 4000))
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    driver.set_window_size(1400, 1100)


def _no_alert(driver: WebDriver) -> None:
    try:
        alert = driver.switch_to.alert
        text = alert.text
        alert.dismiss()
    except NoAlertPresentException:
        return
    raise AssertionError(f"a script from the cluster ran in the page: alert({text!r})")


def _fresh(read: Callable[[], T]) -> T:
    """`read()` again when a live update replaced the element under it."""
    for _ in range(20):
        try:
            return read()
        except StaleElementReferenceException:
            time.sleep(0.05)
    return read()


def _text(driver: WebDriver, css: str) -> str:
    return _fresh(lambda: str(driver.find_element(By.CSS_SELECTOR, css).text))


def _wait_text(driver: WebDriver, css: str, want: str, timeout: float) -> None:
    def shows(d: WebDriver) -> bool:
        def read() -> bool:
            found = d.find_elements(By.CSS_SELECTOR, css)
            return bool(found) and found[0].text == want

        return _fresh(read)

    try:
        WebDriverWait(driver, timeout, 0.05).until(shows)
    except TimeoutException:
        got = _fresh(lambda: [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)])
        raise AssertionError(f"{css} shows {got}, not {want!r}, after {timeout} s") from None


def _dag(driver: WebDriver) -> dict[str, str]:
    def read() -> dict[str, str]:
        nodes = driver.find_elements(By.CSS_SELECTOR, "#dag .node")
        return {
            str(n.get_attribute("data-step")): str(n.get_attribute("data-status")) for n in nodes
        }

    return _fresh(read)


def _until_after_reload(driver: WebDriver, predicate: Any, timeout: float) -> None:
    """Reload until `predicate()` holds (what is not pushed live: a pod's log)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError("condition not met after reloading")
        time.sleep(1)
        driver.refresh()
        _settled(driver)


def _settled(driver: WebDriver) -> None:
    """Wait until the execution page subscribed and re-read itself once (it replaces its
    elements then: a test holding one would find it stale)."""
    WebDriverWait(driver, 30, 0.05).until(
        lambda d: (
            int(d.execute_script("return document.body && document.body.dataset.synced || 0") or 0)
            >= 1
        )
    )


def _open(driver: WebDriver, url: str) -> None:
    driver.get(url)
    _settled(driver)


def _click(driver: WebDriver, button_id: str) -> None:
    """Press a button (a form POST) and wait for the page with the apiserver's answer."""
    before = driver.find_element(By.TAG_NAME, "html")
    _fresh(lambda: driver.find_element(By.ID, button_id).click())
    try:
        WebDriverWait(driver, 30).until(expected_conditions.staleness_of(before))
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "answer"))
    except TimeoutException:
        raise AssertionError(f"no answer shown: {driver.page_source[:3000]}") from None
    _settled(driver)


# -- live: the operator runs it ------------------------------------------------------------------
def _viewer_role(cluster: Cluster, namespace: str, user: str) -> None:
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    rules = [
        client.V1PolicyRule(
            api_groups=["runbook-operator.dev"],
            resources=["runbooks", "runbookexecutions"],
            verbs=["get", "list", "watch"],
        ),
        client.V1PolicyRule(
            api_groups=[""], resources=["configmaps", "pods", "pods/log"], verbs=["get", "list"]
        ),
    ]
    rbac.create_namespaced_role(
        namespace, client.V1Role(metadata=client.V1ObjectMeta(name="console-viewer"), rules=rules)
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="console-viewer"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="console-viewer"
            ),
            subjects=[client.RbacV1Subject(kind="User", name=user)],
        ),
    )
    wait_authorized(
        cluster,
        namespace,
        user,
        verb="list",
        resource="runbookexecutions",
        group="runbook-operator.dev",
    )


def test_live_execution_controls_as_the_user(
    cluster: Cluster,
    rb: Runbooks,
    browser: WebDriver,
) -> None:
    ns = rb.namespace
    rb.runbook(
        "console-live",
        [
            transform("prepare"),
            shell_step(
                "slow",
                "import time; print('hello from slow', flush=True); time.sleep(600)",
                "prepare",
            ),
            transform("after", "slow"),
        ],
    )
    rb.execute("live-1", "console-live")
    rb.wait(
        "live-1",
        lambda s: any(
            x["stepId"] == "slow" and x["status"] == "RUNNING" for x in s.get("steps", [])
        ),
        180,
        "slow RUNNING",
    )
    admin = Console(Kube.connect(cluster.kubeconfig), [ns])
    viewer_name = f"viewer-{uuid.uuid4().hex[:6]}"
    _viewer_role(cluster, ns, viewer_name)
    viewer = Console(Kube(impersonating(cluster, viewer_name)), [ns])
    try:
        driver = browser
        # list → open the execution
        driver.get(admin.url("/executions"))
        row = driver.find_element(By.CSS_SELECTOR, f'tr[data-key="{ns}/live-1"]')
        assert "RUNNING" in row.text
        _shot(driver, "executions")
        row.find_element(By.LINK_TEXT, "live-1").click()
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "dag"))
        _settled(driver)
        assert _dag(driver) == {"prepare": "SUCCEEDED", "slow": "RUNNING", "after": "PENDING"}
        # no checkpoint is signed before the end: the chain verifies, unsigned so far
        assert _text(driver, "#ledger-badge") in ("OK", "OK, unsigned")
        # the step panel: attempts, and the log of the pod while it exists
        _fresh(lambda: driver.find_element(By.CSS_SELECTOR, '#dag .node[data-step="slow"]').click())
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "step"))
        _settled(driver)
        _until_after_reload(driver, lambda: "hello from slow" in _text(driver, "#step-log"), 60)
        _shot(driver, "execution")

        # a user who may read but not patch: the button shows the apiserver's 403
        _open(driver, viewer.url(f"/executions/{ns}/live-1"))
        _click(driver, "action-pause")
        answer = _text(driver, "#answer")
        assert "403" in answer and "Forbidden" in answer, answer
        assert not rb.get("live-1")["spec"].get("paused")
        _shot(driver, "forbidden")

        # pause from the page: spec.paused is patched, the page shows PAUSED by the live update
        _open(driver, admin.url(f"/executions/{ns}/live-1"))
        WebDriverWait(driver, 10).until(lambda d: _text(d, "#live-state") == "live")
        _click(driver, "action-pause")
        assert "200" in _text(driver, "#answer")
        assert rb.get("live-1")["spec"]["paused"] is True
        rb.wait_phase("live-1", "PAUSED", timeout=60)
        _wait_text(driver, "#phase", "PAUSED", 2)
        _shot(driver, "paused")

        # resume, then cancel
        _click(driver, "action-resume")
        assert rb.get("live-1")["spec"]["paused"] is False
        rb.wait_phase("live-1", "RUNNING", timeout=60)
        _wait_text(driver, "#phase", "RUNNING", 2)
        _click(driver, "action-cancel")
        assert rb.get("live-1")["spec"]["cancel"] is True
        rb.wait_phase("live-1", "CANCELLED", timeout=120)
        _wait_text(driver, "#phase", "CANCELLED", 2)
        assert _dag(driver)["slow"] == "CANCELLED"
        # a finished execution offers only a re-run, never pause/resume/cancel
        offered = {
            b.get_attribute("id") for b in driver.find_elements(By.CSS_SELECTOR, "#actions button")
        }
        assert offered == {"action-rerun"}, offered
        # the Gantt chart has a bar per attempt; the audit log records who asked
        bar_steps = _fresh(
            lambda: {
                b.get_attribute("data-step")
                for b in driver.find_elements(By.CSS_SELECTOR, "#gantt .bar")
            }
        )
        assert bar_steps >= {"prepare", "slow"}
        assert "EXECUTION_CANCELLED" in _text(driver, "#audit")
        _shot(driver, "cancelled")

        # the runbook page: graph, recent executions, the run form
        driver.get(admin.url(f"/runbooks/{ns}/console-live"))
        assert {
            n.get_attribute("data-step")
            for n in driver.find_elements(By.CSS_SELECTOR, "#dag .node")
        } == {"prepare", "slow", "after"}
        assert "live-1" in _text(driver, "#recent")
        _shot(driver, "runbook")
        # "run" as the read-only user: the form's create is refused by the apiserver, shown
        driver.get(viewer.url(f"/runbooks/{ns}/console-live"))
        before = driver.find_element(By.TAG_NAME, "html")
        driver.find_element(By.ID, "run-button").click()
        WebDriverWait(driver, 30).until(expected_conditions.staleness_of(before))
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "answer"))
        assert "answered 403 Forbidden" in _text(driver, "#answer")
        driver.get(admin.url(f"/runbooks?namespace={ns}"))
        assert "console-live" in _text(driver, "#runbooks")
        _shot(driver, "runbooks")
        _no_alert(driver)
        # every page this test opened was fed by the one watch of the namespace
        assert admin.hub.watches_started == 1 and viewer.hub.watches_started == 1
    finally:
        admin.stop()
        viewer.stop()


# -- made by hand: the report, XSS, a tampered ledger ------------------------------------------
def _history(ref: ExecutionRef) -> AuditChain:
    """The audit log of the hand-made run: probe fails once, retries after a backoff, fails."""
    t0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    chain = AuditChain(ref.execution_id)
    events: list[tuple[int, LogEventType, str | None, dict[str, Any]]] = [
        (0, LogEventType.EXECUTION_STARTED, None, {}),
        (0, LogEventType.STEP_STARTED, "collect", {"attempt": 1}),
        (0, LogEventType.STEP_STARTED, "probe", {"attempt": 1}),
        (
            1,
            LogEventType.STEP_ATTEMPT_FAILED,
            "probe",
            {"attempt": 1, "error": "exit code 3", "retryAt": "2026-01-15T10:00:02.000Z"},
        ),
        (2, LogEventType.STEP_SUCCEEDED, "collect", {"attempt": 1}),
        (2, LogEventType.STEP_STARTED, "probe", {"attempt": 2}),
        (3, LogEventType.STEP_STARTED, "generate_report", {"attempt": 1}),
        (4, LogEventType.STEP_SUCCEEDED, "generate_report", {"attempt": 1}),
        (5, LogEventType.STEP_FAILED, "probe", {"attempt": 2, "error": XSS}),
        (5, LogEventType.EXECUTION_FAILED, None, {}),
    ]
    for i, (second, kind, step, details) in enumerate(events):
        event = AuditEvent(key=f"e{i}", event_type=kind, step_id=step, details=details)
        chain.append(event, actor_id="system:test", timestamp=t0 + timedelta(seconds=second))
    return chain


def _hand_made(kube: Kube, namespace: str) -> str:
    """An execution as the operator would leave it: pinned definition, a report step's result,
    a failed step whose message is a script, and an unsigned ledger."""
    runbook = {
        "apiVersion": "runbook-operator.dev/v1alpha1",
        "kind": "Runbook",
        "metadata": {"name": "attribution"},
        "spec": {
            "id": "attribution",
            "steps": [
                {"id": "collect", "actionType": "TRANSFORM"},
                {"id": "probe", "actionType": "TRANSFORM"},
                {
                    "id": "generate_report",
                    "actionType": "GENERATE_REPORT",
                    "dependsOn": ["collect"],
                },
            ],
        },
    }
    body = {
        "apiVersion": "runbook-operator.dev/v1alpha1",
        "kind": "RunbookExecution",
        "metadata": {"name": "handmade"},
        "spec": {"runbookRef": {"name": "attribution"}},
    }
    obj = kube.create(EXECUTIONS, namespace, body)
    uid = str(obj["metadata"]["uid"])
    ref = ExecutionRef(namespace, "handmade", uid)
    cm = pin(runbook, ExecutionRequest.model_validate(body["spec"]), ref)
    assert isinstance(cm, dict)
    kube.create(CONFIGMAPS, namespace, cm)
    markdown = (
        "# Attribution report\n\nActor **APT-Example**, confidence 0.8.\n\n"
        "| indicator | source |\n|---|---|\n| 203.0.113.7 | passive DNS |\n\n"
        "<script>alert(3)</script> <img src=x onerror=alert(4)> [click](javascript:alert(5))\n"
    )
    output = {"markdown": markdown}
    job = names.job_name("handmade", uid, "generate_report", 1)
    raw, sha = results.encode(StepExecutorResult(success=True, output=output))
    kube.create(
        CONFIGMAPS, namespace, results.configmap(names.result_configmap(job), raw, sha, {}, None)
    )
    t = "2026-01-15T10:00:{:02d}.000Z"
    chain = _history(ref)
    LedgerStore(kube, ref).append(chain.entries)
    status = {
        "phase": "FAILED",
        "progress": "3/3",
        "message": XSS,
        "definitionRef": cm["metadata"]["name"],
        "steps": [
            {
                "stepId": "collect",
                "status": "SUCCEEDED",
                "attempt": 1,
                "startedAt": t.format(0),
                "finishedAt": t.format(2),
            },
            {
                "stepId": "probe",
                "status": "FAILED",
                "attempt": 2,
                "startedAt": t.format(0),
                "finishedAt": t.format(5),
                "message": XSS,
            },
            {
                "stepId": "generate_report",
                "status": "SUCCEEDED",
                "attempt": 1,
                "startedAt": t.format(3),
                "finishedAt": t.format(4),
                "jobName": job,
                "outputHash": canonical_sha256(output),
            },
        ],
        "audit": {"count": len(chain.entries), "head": chain.head, "recent": chain.entries[-2:]},
    }
    kube.patch(EXECUTIONS, namespace, "handmade", {"status": status}, subresource="status")
    return uid


def test_report_xss_and_a_tampered_ledger(
    cluster: Cluster,
    namespace: str,
    project_crds: None,
    browser: WebDriver,
) -> None:
    kube = Kube.connect(cluster.kubeconfig)
    _hand_made(kube, namespace)
    console = Console(kube, [namespace])
    driver = browser
    try:
        _open(driver, console.url(f"/executions/{namespace}/handmade?step=probe"))
        _no_alert(driver)
        assert _text(driver, "#exec-message") == XSS
        assert _text(driver, "#step-message") == XSS
        assert not driver.find_elements(By.CSS_SELECTOR, "main script")
        assert _dag(driver) == {
            "collect": "SUCCEEDED",
            "probe": "FAILED",
            "generate_report": "SUCCEEDED",
        }
        # the report: Markdown rendered, its HTML shown as text, the javascript: link refused
        report = driver.find_element(By.ID, "report")
        assert report.find_element(By.TAG_NAME, "h1").text == "Attribution report"
        assert report.find_element(By.CSS_SELECTOR, "table td").text == "203.0.113.7"
        assert "<script>alert(3)</script>" in report.text and "onerror=alert(4)" in report.text
        assert not report.find_elements(By.CSS_SELECTOR, "script, img, a[href^='javascript']")
        # the Gantt chart: both attempts of probe, the backoff between them, the critical path
        probe_bars = driver.find_elements(By.CSS_SELECTOR, '#gantt .bar[data-step="probe"]')
        assert [b.get_attribute("data-attempt") for b in probe_bars] == ["1", "2"]
        assert driver.find_elements(By.CSS_SELECTOR, '#gantt .bar[data-step="probe"] .backoff')
        assert "critical" in str(probe_bars[1].get_attribute("class"))
        # the ledger badge: the same check as `runbookctl verify` (an unsigned chain)
        assert _text(driver, "#ledger-badge") == "OK, unsigned"
        _shot(driver, "report-and-escaping")
        # edit an entry: the badge turns TAMPERED, naming it
        ledger = find_ledgers(kube, namespace, "handmade")[0]
        cm_name = ledger.segments[0].name
        segment = kube.get(CONFIGMAPS, namespace, cm_name)
        lines = segment["data"][ENTRIES_KEY].splitlines()
        entry = json.loads(lines[2])
        entry["actorId"] = "someone-else"
        lines[2] = json.dumps(entry)
        segment["data"][ENTRIES_KEY] = "\n".join(lines) + "\n"
        kube.replace(CONFIGMAPS, namespace, cm_name, segment)
        driver.refresh()
        _settled(driver)
        assert _text(driver, "#ledger-badge") == f"TAMPERED at entry {entry['seq']}"
        assert "someone-else" in _text(driver, "#audit")
        _shot(driver, "tampered")
        _no_alert(driver)
        # a step whose Job never ran: the log panel says why there is no log
        _open(driver, console.url(f"/executions/{namespace}/handmade?step=collect"))
        assert "no Job has run" in _text(driver, "#log-note")
    finally:
        console.stop()


def test_the_list_pages_on_the_server_across_namespaces(
    cluster: Cluster,
    namespace: str,
    project_crds: None,
) -> None:
    """limit/continue on the apiserver, one namespace after the other when the user may not list
    cluster-wide; the filters apply to what the pages bring."""
    kube = Kube.connect(cluster.kubeconfig)
    other = f"{namespace}-b"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    try:
        for ns in (namespace, other):
            for i in range(3):
                body = {
                    "apiVersion": "runbook-operator.dev/v1alpha1",
                    "kind": "RunbookExecution",
                    "metadata": {"name": f"run-{i}"},
                    "spec": {"runbookRef": {"name": "nightly" if i else "adhoc"}},
                }
                kube.create(EXECUTIONS, ns, body)
        source = ClusterSource(kube, [namespace, other])
        seen: list[str] = []
        token, pages = "", 0
        while True:
            page = source.list_executions("", 2, token, {})
            assert page.error is None and len(page.items) <= 2
            seen += [f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in page.items]
            pages += 1
            token = page.next_token
            if not token:
                break
        assert sorted(seen) == sorted(
            f"{ns}/run-{i}" for ns in (namespace, other) for i in range(3)
        )
        assert pages == 3
        adhoc = source.list_executions("", 25, "", {"runbook": "adhoc", "phase": "", "text": ""})
        assert sorted(o["metadata"]["namespace"] for o in adhoc.items) == [namespace, other]
    finally:
        cluster.core.delete_namespace(other, propagation_policy="Background")
