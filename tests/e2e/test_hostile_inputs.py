"""Hostile inputs on the real apiserver: one deeply nested object must not take the operator down.

A RunbookExecution whose `spec.input` nested 3,000 levels put the operator into a crash loop
(issue 17): kopf decodes every list response and watch event with `json.loads`, which raised
RecursionError past 1,000 levels and ended the watcher, so every tenant's executions stalled.
Here the operator gets such objects (and the deepest the apiserver stores) both as watch events
and in its start-up listing, refuses each one with a condition naming the field and the limit,
and keeps running: same process, and an ordinary execution in the same namespace completes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from runbook_engine.limits import MAX_VALUE_BYTES, MAX_VALUE_DEPTH

from .conftest import Cluster, wait_for
from .operator_env import GROUP, VERSION, OperatorProcess, Runbooks, transform

pytestmark = pytest.mark.e2e

DEEPEST_STORED = 9_994
"""The deepest `spec.input` (levels, a scalar innermost) the apiserver stores (v1.34: Go's JSON
decoder refuses a body nested past 10,000; the manifest adds its own levels around the input)."""


@pytest.fixture(autouse=True)
def deep_objects_readable_here() -> Iterator[None]:
    """This test process reads the deep objects back with the kubernetes client's json.loads."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, 3 * DEEPEST_STORED))
    yield
    sys.setrecursionlimit(before)


def nested_json(levels: int) -> str:
    """`levels` deep as the engine counts ({"a": ... 1}: the scalar is the innermost level), as
    text: the client's json.dumps would recurse once per level."""
    return '{"a":' * (levels - 1) + "1" + "}" * (levels - 1)


def create_raw(rb: Runbooks, plural: str, text: str) -> None:
    """POST `text` as it is: the client would encode a dict with json.dumps (which recurses
    once per level) and sends a str as a JSON string, so this goes to the connection pool."""
    api = rb.cluster.api
    method, url, headers, _, _ = api.param_serialize(
        "POST",
        "/apis/{group}/{version}/namespaces/{namespace}/{plural}",
        path_params={
            "group": GROUP,
            "version": VERSION,
            "namespace": rb.namespace,
            "plural": plural,
        },
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = api.rest_client.pool_manager.request(
        method, url, body=text.encode(), headers=headers, timeout=60
    )
    if not 200 <= response.status < 300:
        raise ApiException(status=response.status, reason=response.data.decode(errors="replace"))


def execution_json(name: str, runbook: str, input_json: str) -> str:
    return (
        f'{{"apiVersion":"{GROUP}/{VERSION}","kind":"RunbookExecution",'
        f'"metadata":{{"name":"{name}"}},'
        f'"spec":{{"runbookRef":{{"name":"{runbook}"}},"input":{input_json}}}}}'
    )


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == "Ready")


def assert_same_process(op: OperatorProcess, pid: int, starts: int) -> None:
    assert op.proc is not None and op.proc.poll() is None, f"the operator died\n{op.tail()}"
    assert (op.proc.pid, op.starts) == (pid, starts), "the operator was restarted"


def test_deeply_nested_inputs_are_refused_and_the_operator_keeps_running(
    cluster: Cluster, own_operator: tuple[OperatorProcess, str]
) -> None:
    op, ns = own_operator
    assert op.proc is not None
    pid, starts = op.proc.pid, op.starts
    rb = Runbooks(cluster, ns, op.tail)
    rb.runbook("plain", [transform("t")])

    with pytest.raises(ApiException) as refused:
        create_raw(rb, "runbookexecutions", execution_json("x", "plain", nested_json(10_000)))
    assert refused.value.status == 400 and "exceeded max depth" in str(refused.value.reason)
    with pytest.raises(ApiException):
        create_raw(
            rb, "runbookexecutions", execution_json("x", "plain", nested_json(DEEPEST_STORED + 1))
        )

    # As watch events: the operator is running when they arrive.
    for levels in (3_000, DEEPEST_STORED):
        create_raw(
            rb, "runbookexecutions", execution_json(f"deep-{levels}", "plain", nested_json(levels))
        )
    for levels in (3_000, DEEPEST_STORED):
        status = rb.wait_phase(f"deep-{levels}", "FAILED", "COMPLETED", timeout=120)
        assert status["phase"] == "FAILED"
        condition = ready(status)
        assert condition["reason"] == "InputTooDeep"
        assert (
            f"spec.input: nested {levels} levels deep, the limit is {MAX_VALUE_DEPTH}"
            in condition["message"]
        )
    # Over 256 KiB: kopf cannot keep its copy of the spec in an annotation (it logs and retries
    # with a backoff); the operator refuses the execution all the same.
    big = json.dumps({"blob": "x" * 300_000})
    create_raw(rb, "runbookexecutions", execution_json("big", "plain", big))
    status = rb.wait_phase("big", "FAILED", "COMPLETED", timeout=120)
    assert ready(status)["reason"] == "InputTooLarge"
    assert f"the limit is {MAX_VALUE_BYTES} bytes" in ready(status)["message"]

    rb.execute("after", "plain", input={"n": 1})
    assert rb.wait_phase("after", "COMPLETED", "FAILED")["phase"] == "COMPLETED"
    assert_same_process(op, pid, starts)

    # In the start-up listing: a restarted operator lists them all before it watches.
    op.stop()
    op.start()
    assert op.proc is not None
    pid, starts = op.proc.pid, op.starts
    rb.execute("after-restart", "plain", input={"n": 2})
    assert rb.wait_phase("after-restart", "COMPLETED", "FAILED")["phase"] == "COMPLETED"
    assert rb.status(f"deep-{DEEPEST_STORED}")["phase"] == "FAILED"
    assert_same_process(op, pid, starts)


def test_a_runbook_with_a_deeply_nested_step_config_is_invalid_and_harmless(
    cluster: Cluster, own_operator: tuple[OperatorProcess, str]
) -> None:
    op, ns = own_operator
    assert op.proc is not None
    pid, starts = op.proc.pid, op.starts
    rb = Runbooks(cluster, ns, op.tail)
    levels = DEEPEST_STORED - 5  # the Runbook wraps the config in spec.steps[0]
    deep = (
        f'{{"apiVersion":"{GROUP}/{VERSION}","kind":"Runbook","metadata":{{"name":"deep"}},'
        f'"spec":{{"id":"deep","steps":[{{"id":"t","actionType":"TRANSFORM",'
        f'"config":{nested_json(levels)}}}]}}}}'
    )
    create_raw(rb, "runbooks", deep)
    problem = f"spec.steps[0].config: nested {levels} levels deep, the limit is {MAX_VALUE_DEPTH}"

    def invalid() -> dict[str, Any] | None:
        got = rb.custom.get_namespaced_custom_object(GROUP, VERSION, ns, "runbooks", "deep")
        conditions = (got.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Valid"), None)

    valid = wait_for(invalid, 120, 0.5, "the deep Runbook's Valid condition")
    assert valid["status"] == "False" and problem in valid["message"], valid

    rb.execute("uses-deep", "deep")
    status = rb.wait_phase("uses-deep", "FAILED", "COMPLETED", timeout=120)
    assert status["phase"] == "FAILED" and ready(status)["reason"] == "InvalidRunbook"
    assert problem in ready(status)["message"]

    rb.runbook("plain", [transform("t")])
    rb.execute("after", "plain")
    assert rb.wait_phase("after", "COMPLETED", "FAILED")["phase"] == "COMPLETED"
    assert_same_process(op, pid, starts)
