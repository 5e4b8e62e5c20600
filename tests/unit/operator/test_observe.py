"""Every way a step pod ends becomes an outcome with its real reason."""

from __future__ import annotations

import pytest

from runbook_operator.steps import results
from runbook_operator.steps.observe import Failed, Reported, Running, classify

from .kubefakes import job, pod, pointer_message, terminated

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
