"""Every way a step pod ends becomes an outcome with its real reason."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from runbook_operator import names
from runbook_operator.steps import results
from runbook_operator.steps.identity import differs_from_template, job_of_pod
from runbook_operator.steps.observe import (
    NOTHING,
    Failed,
    Reported,
    Running,
    classify,
    observe_children,
)

from .kubefakes import REF, job, job_owner, job_uid, pod, pointer_message, terminated

POINTER = results.Pointer("r", "ab" * 32, 10)


def test_no_pod_yet_is_running() -> None:
    assert classify(job("a", 1), []) == Running()


def test_a_pointer_in_the_termination_message_is_reported() -> None:
    outcome = classify(job("a", 1), [pod("a", 1, terminated(pointer_message(POINTER)))])
    assert outcome == Reported(POINTER, None)


def test_a_failed_step_pod_still_reports_its_result() -> None:
    state = terminated(pointer_message(POINTER), code=1, reason="Error")
    assert classify(job("a", 1, conditions=["Failed"]), [pod("a", 1, state)]) == Reported(
        POINTER, None
    )


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (
            terminated(None, 137, "OOMKilled"),
            "OOMKilled: the step pod ran out of memory (exit code 137)",
        ),
        (terminated("boom", 3, "Error"), "pod exited with code 3 (Error) without a result: boom"),
        (
            {"waiting": {"reason": "ErrImageNeverPull", "message": "image not present"}},
            "ErrImageNeverPull for image img:1: image not present",
        ),
        ({"waiting": {"reason": "ImagePullBackOff"}}, "ImagePullBackOff for image img:1"),
    ],
)
def test_pod_failures_carry_their_reason(state: dict, reason: str) -> None:  # type: ignore[type-arg]
    outcome = classify(job("a", 1), [pod("a", 1, state)])
    assert isinstance(outcome, Failed)
    assert outcome.reason == reason


def test_an_image_that_cannot_be_pulled_asks_for_the_job_to_be_deleted() -> None:
    outcome = classify(job("a", 1), [pod("a", 1, {"waiting": {"reason": "ErrImagePull"}})])
    assert isinstance(outcome, Failed) and outcome.delete_job


def test_container_creating_is_still_running() -> None:
    assert (
        classify(job("a", 1), [pod("a", 1, {"waiting": {"reason": "ContainerCreating"}})])
        == Running()
    )


def test_evicted_pod() -> None:
    outcome = classify(
        job("a", 1),
        [pod("a", 1, {}, phase="Failed", reason="Evicted", message="node low on memory")],
    )
    assert outcome == Failed("pod Evicted: node low on memory")


def test_job_deleted_by_hand() -> None:
    assert classify(None, []) == Failed("its Job was deleted before the step finished")


def test_job_deadline_backstop() -> None:
    failed = job("a", 1)
    failed["status"]["conditions"] = [
        {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}
    ]
    outcome = classify(failed, [])
    assert isinstance(outcome, Failed) and "activeDeadlineSeconds" in outcome.reason


def test_pod_deleted_while_running() -> None:
    gone = job("a", 1)
    gone["status"]["failed"] = 1
    assert classify(gone, []) == Failed("its pod was deleted before the step finished")


def test_garbage_pointer_is_a_failure_not_a_crash() -> None:
    outcome = classify(job("a", 1), [pod("a", 1, terminated('{"resultConfigMap": 5}'))])
    assert isinstance(outcome, Failed) and "not a result pointer" in outcome.reason


def test_result_error_class_is_exported() -> None:
    assert issubclass(results.ResultError, ValueError)


def test_a_job_is_finished_once_complete_or_failed() -> None:
    from runbook_operator.steps.observe import finished

    assert not finished(job("a", 1))
    assert finished(job("a", 1, conditions=["Complete"]))
    assert finished(job("a", 1, conditions=["Failed"]))


# -- which Job and which pods are an attempt's (not the labels: anyone can copy those) ---------
SUCCESS = '{"success": true, "output": {"verdict": "forged"}}'


def _running() -> dict[str, Any]:
    return {"running": {"startedAt": "2026-01-01T00:00:01Z"}}


def _name(step: str, attempt: int = 1) -> str:
    return names.job_name(REF.name, REF.uid, step, attempt)


def _forged(step: str, **meta: Any) -> dict[str, Any]:
    """A pod someone created by hand: the step's labels, an inline success, and `meta`."""
    fake = pod(step, 1, terminated(SUCCESS), suffix="forged")
    fake["metadata"] = {
        "name": f"{_name(step)}-forged",
        "labels": names.labels(REF.name, REF.uid, "step", step_id=step, attempt=1),
        "creationTimestamp": "2026-01-01T00:00:09Z",  # newer than the real pod
        **meta,
    }
    return fake


def test_a_pod_with_only_the_steps_labels_is_ignored() -> None:
    real = pod("a", 1, _running())
    observed = observe_children(REF.uid, [job("a", 1)], [real, _forged("a")])
    assert observed.outcome(_name("a")) == Running()
    assert observed.still_running == (_name("a"),)


@pytest.mark.parametrize(
    "forgery",
    [
        {"labels": {"batch.kubernetes.io/controller-uid": job_uid(_name("a"))}},  # label only
        {"ownerReferences": [job_owner(_name("a"))]},  # reference only
        {  # another Job's uid in both
            "labels": {"batch.kubernetes.io/controller-uid": "other"},
            "ownerReferences": [{**job_owner(_name("a")), "uid": "other"}],
        },
        {  # a reference an ordinary user may set, but the Job controller never makes
            "labels": {"batch.kubernetes.io/controller-uid": job_uid(_name("a"))},
            "ownerReferences": [{**job_owner(_name("a")), "blockOwnerDeletion": False}],
        },
        {  # not the controller
            "labels": {"batch.kubernetes.io/controller-uid": job_uid(_name("a"))},
            "ownerReferences": [{**job_owner(_name("a")), "controller": False}],
        },
    ],
)
def test_a_pod_without_both_marks_of_the_job_controller_is_ignored(
    forgery: dict[str, Any],
) -> None:
    fake = _forged("a")
    fake["metadata"]["labels"] = {**fake["metadata"]["labels"], **forgery.get("labels", {})}
    fake["metadata"]["ownerReferences"] = forgery.get("ownerReferences", [])
    assert job_of_pod(fake) != job_uid(_name("a"))
    observed = observe_children(REF.uid, [job("a", 1)], [pod("a", 1, _running()), fake])
    assert observed.outcome(_name("a")) == Running()


def test_a_second_pod_running_the_jobs_template_fails_the_attempt_instead_of_picking_one() -> None:
    fake = pod("a", 1, terminated(SUCCESS), suffix="zzzzz")
    observed = observe_children(REF.uid, [job("a", 1)], [pod("a", 1, _running()), fake])
    outcome = observed.outcome(_name("a"))
    assert isinstance(outcome, Failed) and outcome.delete_job
    assert outcome.reason.startswith(f"2 pods claim to be Job {_name('a')}'s")
    assert observed.still_running == ()


def test_a_job_this_execution_does_not_control_is_not_its_attempt() -> None:
    foreign = job("a", 1)
    foreign["metadata"]["ownerReferences"] = []
    real_pod = pod("a", 1, terminated(SUCCESS))
    observed = observe_children(REF.uid, [foreign], [real_pod])
    outcome = observed.outcome(_name("a"))
    assert isinstance(outcome, Failed) and "not controlled by this execution" in outcome.reason
    other = job("a", 1)
    other["metadata"]["ownerReferences"] = [{**REF.owner(), "uid": "another-execution"}]
    assert isinstance(observe_children(REF.uid, [other], [real_pod]).outcome(_name("a")), Failed)
    assert observe_children(REF.uid, [foreign], []).still_running == ()


def test_steps_whose_ids_clean_to_the_same_text_keep_their_own_outcomes() -> None:
    ids = ["a", "a-", "a_", "a."]
    jobs = [job(sid, 1) for sid in ids]
    pods = [
        pod(sid, 1, terminated(json.dumps({"success": True, "output": {"id": sid}}))) for sid in ids
    ]
    observed = observe_children(REF.uid, jobs, pods)
    for sid in ids:
        outcome = observed.outcome(_name(sid))
        assert isinstance(outcome, Reported) and outcome.inline is not None
        assert outcome.inline.output == {"id": sid}


def test_an_attempt_without_a_job_has_lost_it() -> None:
    assert NOTHING.outcome(_name("a")) == Failed("its Job was deleted before the step finished")


# -- a pod adopted by the Job (it copied the controller-uid label) must also run what it says ----
def _adopted(step: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """A hand-made pod that copied every label: the Job controller adopted it (controller
    reference and all). `change` alters what it runs."""
    made = pod(step, 1, terminated(SUCCESS), suffix="adopt")
    change(made["spec"])
    return made


def _container(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["containers"][0]  # type: ignore[no-any-return]


DIFFERENCES: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("the container's command differs", lambda s: _container(s).update(command=["sh", "-c", "x"])),
    ("the container's image differs", lambda s: _container(s).update(image="evil:1")),
    (
        "the container's env differs",
        lambda s: _container(s).update(env=[{"name": "PYTHONPATH", "value": "/evil"}]),
    ),
    (
        "the container's volumeMounts differ",
        lambda s: _container(s)["volumeMounts"].append({"name": "x", "mountPath": "/usr/lib"}),
    ),
    ("the pod's hostAliases differs", lambda s: s.update(hostAliases=[{"ip": "10.0.0.9"}])),
    ("the pod's shareProcessNamespace differs", lambda s: s.update(shareProcessNamespace=True)),
    ("the pod's serviceAccountName differs", lambda s: s.update(serviceAccountName="admin")),
    ("volume tmp differs", lambda s: s["volumes"][0].update(emptyDir={"medium": "Memory"})),
    (
        "another container mounts tmp",
        lambda s: s.update(
            initContainers=[{"name": "i", "volumeMounts": [{"name": "tmp", "mountPath": "/t"}]}]
        ),
    ),
    (
        "ephemeral containers were added to it",
        lambda s: s.update(ephemeralContainers=[{"name": "debugger", "image": "busybox"}]),
    ),
]


@pytest.mark.parametrize(("difference", "change"), DIFFERENCES, ids=[d for d, _ in DIFFERENCES])
def test_an_adopted_pod_that_runs_something_else_is_not_the_attempts(
    difference: str, change: Callable[[dict[str, Any]], None]
) -> None:
    copy = _adopted("a", change)
    assert differs_from_template(copy, job("a", 1)) == difference
    real = pod("a", 1, _running())
    assert observe_children(REF.uid, [job("a", 1)], [real, copy]).outcome(_name("a")) == Running()
    # the Job controller may delete the real pod as one too many; the copy never counts
    done = job("a", 1, conditions=["Complete"])
    outcome = observe_children(REF.uid, [done], [copy]).outcome(_name("a"))
    assert isinstance(outcome, Failed)
    assert outcome.reason == (
        f"pod {_name('a')}-adopt claims to be Job {_name('a')}'s but does not run what the Job "
        f"says ({difference}): its result is not trusted"
    )


def test_a_sidecar_that_shares_nothing_with_the_step_is_allowed() -> None:
    """A service mesh injects containers of its own into every pod."""
    meshed = pod("a", 1, terminated(SUCCESS))
    meshed["spec"]["containers"].append(
        {"name": "proxy", "image": "mesh:1", "volumeMounts": [{"name": "m", "mountPath": "/m"}]}
    )
    meshed["spec"]["initContainers"] = [{"name": "mesh-init", "image": "mesh:1"}]
    assert differs_from_template(meshed, job("a", 1)) is None
    outcome = observe_children(REF.uid, [job("a", 1)], [meshed]).outcome(_name("a"))
    assert isinstance(outcome, Reported)


def test_resources_and_scheduling_set_on_the_pod_do_not_matter() -> None:
    placed = pod("a", 1, _running())
    placed["spec"].update(nodeName="n1", priority=0, tolerations=[{"key": "k"}])
    _container(placed["spec"])["resources"] = {"requests": {"memory": "1Gi"}}
    assert differs_from_template(placed, job("a", 1)) is None


def test_a_real_pod_killed_because_a_copy_ended_its_job_says_so() -> None:
    killed = pod("a", 1, terminated(None, 137, "Error"))
    copy = _adopted("a", lambda s: _container(s).update(command=["sh"]))
    done = job("a", 1, conditions=["Complete"])
    outcome = observe_children(REF.uid, [done], [killed, copy]).outcome(_name("a"))
    assert isinstance(outcome, Failed)
    assert outcome.reason.startswith("pod exited with code 137 (Error) without a result; pod ")
    assert outcome.reason.endswith("(the container's command differs): its result is not trusted")
