"""Scheduled RunbookTriggers on the real cluster (issue 20): the session's operator (this
checkout) fires an every-minute schedule at each minute boundary, exactly once, with the
scheduled time in the input and the ledger; Forbid skips while its run is still active;
historyLimit prunes the finished runs. Polls with deadlines; no fixed sleeps.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from runbook_engine.timeutil import format_time, parse_time
from runbook_operator.kube import Kube
from runbook_operator.triggers.schedule import execution_name, next_fire
from runbook_operator.triggers.scheduler import Scheduler

from .conftest import Cluster, wait_for
from .operator_env import (
    GROUP,
    VERSION,
    Runbooks,
    _install_admission_policies,
    shell_step,
    transform,
)

pytestmark = pytest.mark.e2e

TRIGGER_LABEL = f"{GROUP}/trigger"


def make_trigger(rb: Runbooks, name: str, runbook: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RunbookTrigger",
        "metadata": {"name": name},
        "spec": {"runbookRef": {"name": runbook}, **spec},
    }
    return rb.custom.create_namespaced_custom_object(  # type: ignore[no-any-return]
        GROUP, VERSION, rb.namespace, "runbooktriggers", body
    )


def trigger_status(rb: Runbooks, name: str) -> dict[str, Any]:
    body = rb.custom.get_namespaced_custom_object(
        GROUP, VERSION, rb.namespace, "runbooktriggers", name
    )
    return dict(body.get("status") or {})


def executions_of(rb: Runbooks, trigger: str) -> dict[str, dict[str, Any]]:
    listed = rb.custom.list_namespaced_custom_object(
        GROUP,
        VERSION,
        rb.namespace,
        "runbookexecutions",
        label_selector=f"{TRIGGER_LABEL}={trigger}",
    )
    return {item["metadata"]["name"]: item for item in listed["items"]}


def first_fire(trigger: dict[str, Any]) -> datetime:
    spec = trigger["spec"]["schedule"]
    created = parse_time(trigger["metadata"]["creationTimestamp"])
    at = next_fire(spec["cron"], spec.get("timezone", "UTC"), created)
    assert at is not None
    return at


def _triggers_stamped(cluster: Cluster) -> bool:
    """A dry-run RunbookTrigger comes back stamped: this checkout's policies are in force."""
    probe = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RunbookTrigger",
        "metadata": {"name": f"probe-{uuid.uuid4().hex[:8]}"},
        "spec": {"runbookRef": {"name": "x"}, "schedule": {"cron": "* * * * *"}},
    }
    try:
        made = client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
            GROUP, VERSION, "default", "runbooktriggers", probe, dry_run="All"
        )
    except ApiException:
        return False
    return f"{GROUP}/created-by" in ((made.get("metadata") or {}).get("annotations") or {})


def test_an_every_minute_schedule_fires_once_per_minute_forbid_skips_and_replace_cancels(
    cluster: Cluster, rb: Runbooks
) -> None:
    # On a shared cluster another checkout's admission policies may be in force: apply ours.
    _install_admission_policies(cluster)
    wait_for(lambda: _triggers_stamped(cluster), 60, 0.5, "triggers stamped at admission")
    rb.runbook("stamp", [transform("echo", expressions={"slot": "input.slot"})])
    rb.runbook("linger", [shell_step("long", "import time; time.sleep(600)")])
    every = make_trigger(
        rb,
        "every-minute",
        "stamp",
        schedule={"cron": "* * * * *", "timezone": "Europe/Berlin"},
        input={"slot": "scheduledTime", "zone": "trigger.timezone"},
        historyLimit={"succeeded": 0, "failed": 5},
    )
    forbid = make_trigger(
        rb,
        "forbid",
        "linger",
        schedule={"cron": "* * * * *", "concurrencyPolicy": "Forbid"},
    )

    replace = make_trigger(
        rb,
        "replace",
        "linger",
        schedule={"cron": "* * * * *", "concurrencyPolicy": "Replace"},
    )
    # A trigger's first scheduled time is the first boundary after its creation.
    first = first_fire(every)
    second = first + timedelta(minutes=1)
    wait_for(lambda: trigger_status(rb, "every-minute").get("nextFire"), 60, 0.5, "armed")
    uid = every["metadata"]["uid"]
    expected = [execution_name("every-minute", uid, at) for at in (first, second)]

    # Every execution the trigger ever had (history pruning deletes finished ones).
    seen: dict[str, dict[str, Any]] = {}

    def observe() -> dict[str, dict[str, Any]]:
        current = executions_of(rb, "every-minute")
        for name, body in current.items():
            seen.setdefault(name, body)
        return current

    # Exactly one execution per boundary, named for its scheduled time, created after it.
    wait_for(lambda: expected[0] in observe(), 100, 0.5, f"{expected[0]} at {first}")
    wait_for(lambda: expected[1] in observe(), 100, 0.5, f"{expected[1]} at {second}")
    assert sorted(seen) == sorted(expected), sorted(seen)
    for name, at in zip(expected, (first, second), strict=True):
        body = seen[name]
        created = parse_time(body["metadata"]["creationTimestamp"])
        assert created >= at - timedelta(seconds=1), (name, created, at)
        assert body["spec"]["input"] == {"slot": format_time(at), "zone": "Europe/Berlin"}
        assert body["spec"]["startedBy"].endswith("/every-minute")
        annotations = body["metadata"]["annotations"]
        assert annotations[f"{GROUP}/triggered-by"] == "every-minute"

    # The ledger's first entry records the trigger and the scheduled time.
    status = rb.wait(
        expected[1], lambda s: bool((s.get("audit") or {}).get("recent")), 120, "a ledger"
    )
    entry = status["audit"]["recent"][0]
    assert entry["eventType"] == "EXECUTION_STARTED", entry
    recorded = entry["details"]["trigger"]
    assert recorded["name"] == "every-minute"
    assert recorded["event"]["scheduledTime"] == format_time(second)
    assert recorded["event"]["timezone"] == "Europe/Berlin"

    # lastTriggered/nextFire (lastScheduleTime is not read here: the shared cluster's CRD may
    # be replaced meanwhile by a checkout whose schema prunes it; the scheduler does not rely on
    # it alone, see scheduler.handled_until).
    status = trigger_status(rb, "every-minute")
    assert status["lastTriggered"] >= format_time(second)
    assert status["lastExecution"] in expected
    assert status["nextFire"] >= format_time(second + timedelta(minutes=1))

    # historyLimit.succeeded 0: the first run, once completed, is deleted by the trigger (at
    # its next tick: a fire time or the resync interval).
    wait_for(lambda: expected[0] not in observe(), 150, 0.5, f"{expected[0]} pruned")
    assert trigger_status(rb, "every-minute")["counts"]["started"] >= 2

    # Forbid: its first run lingers, so the next boundary is skipped and counted, not started.
    forbid_first = wait_for(lambda: sorted(executions_of(rb, "forbid")), 100, 0.5, "forbid's run")
    forbid_at = first_fire(forbid)
    assert forbid_first == [execution_name("forbid", forbid["metadata"]["uid"], forbid_at)], (
        forbid_first
    )
    wait_for(
        lambda: (trigger_status(rb, "forbid").get("skipped") or {}).get("concurrencyPolicy"),
        100,
        0.5,
        "forbid skipped a boundary",
    )
    forbid_status = trigger_status(rb, "forbid")
    assert forbid_status["nextFire"] >= format_time(forbid_at + timedelta(minutes=2))
    assert sorted(executions_of(rb, "forbid")) == forbid_first
    assert forbid_status["counts"]["started"] == 1

    # Replace: at its second boundary the lingering first run is cancelled (by the operator,
    # stamped as the controller) and the second one started.
    replace_uid = replace["metadata"]["uid"]
    replace_at = first_fire(replace)
    old_run, new_run = (
        execution_name("replace", replace_uid, at)
        for at in (replace_at, replace_at + timedelta(minutes=1))
    )
    wait_for(lambda: new_run in executions_of(rb, "replace"), 100, 0.5, f"{new_run} started")
    rb.wait_phase(old_run, "CANCELLED", timeout=120)
    cancelled = rb.get(old_run)
    assert cancelled["spec"]["cancel"] is True
    assert cancelled["metadata"]["annotations"][f"{GROUP}/control-of"] == "paused=false,cancel=true"
    assert sorted(executions_of(rb, "replace")) == sorted([old_run, new_run])
    assert rb.get(new_run)["spec"].get("cancel") is not True
    assert (trigger_status(rb, "replace").get("counts") or {}).get("cancelled") == 1


def test_catch_up_after_downtime_and_a_second_operator_start_nothing_twice(
    cluster: Cluster, namespace: str
) -> None:
    """The scheduler against the real apiserver with a fake clock, in a namespace no operator
    watches: five hours of downtime start only the newest catchUp.maxRuns runs; a second
    operator (another Scheduler), and one that lost the status, start nothing again."""
    _install_admission_policies(cluster)
    wait_for(lambda: _triggers_stamped(cluster), 60, 0.5, "triggers stamped at admission")
    custom = client.CustomObjectsApi(cluster.api)
    trigger = custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "runbooktriggers",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RunbookTrigger",
            "metadata": {"name": "hourly"},
            "spec": {
                "runbookRef": {"name": "absent"},
                "schedule": {"cron": "0 * * * *", "catchUp": {"maxRuns": 2}},
                "input": {"slot": "scheduledTime"},
            },
        },
    )
    uid = trigger["metadata"]["uid"]
    created = parse_time(trigger["metadata"]["creationTimestamp"])
    hours = [next_fire("0 * * * *", "UTC", created)]
    for _ in range(4):
        hours.append(hours[-1] + timedelta(hours=1))
    later = hours[-1] + timedelta(minutes=10)  # the operator was down for five boundaries
    kube = Kube.connect(cluster.kubeconfig)

    def run(at: datetime) -> datetime | None:
        return Scheduler(kube, clock=lambda: at).tick(namespace, "hourly")

    def names() -> list[str]:
        listed = custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "runbookexecutions", label_selector=f"{TRIGGER_LABEL}=hourly"
        )
        return sorted(item["metadata"]["name"] for item in listed["items"])

    assert run(later) == hours[-1] + timedelta(hours=1)
    newest = sorted(execution_name("hourly", uid, at) for at in hours[-2:])
    assert names() == newest
    status = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "runbooktriggers", "hourly"
    )["status"]
    assert status["skipped"] == {"catchUpLimit": 3}
    assert status["counts"]["started"] == 2
    run_input = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "runbookexecutions", newest[-1]
    )["spec"]["input"]
    assert run_input == {"slot": format_time(hours[-1])}

    def counts() -> dict[str, int]:
        body = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "runbooktriggers", "hourly"
        )
        return dict((body.get("status") or {}).get("counts") or {})

    # A second operator at the same moment: nothing new, nothing counted twice.
    run(later + timedelta(seconds=5))
    assert names() == newest
    assert counts()["started"] == 2 and counts().get("duplicates", 0) == 0
    # One whose trigger status was lost (a restore): the executions tell where it stood, so it
    # does not even try the handled times again (were it to, their names would meet
    # AlreadyExists and count as duplicates).
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "runbooktriggers", "hourly", {"status": None}
    )
    run(later + timedelta(seconds=10))
    assert names() == newest
    assert counts().get("duplicates", 0) == 0 and counts().get("started", 0) == 0
