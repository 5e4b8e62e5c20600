"""Jobs and pods → what happened to each running attempt (pure).

Every way a pod can end is turned into an outcome with its real reason — a result to read,
an exit code, OOMKilled, the Job's deadline, an image that cannot be pulled, a deleted pod or
Job — so an attempt never stays RUNNING because its pod is stuck or gone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runbook_engine.contract import StepExecutorResult
from runbook_operator import names
from runbook_operator.steps import results

STUCK_WAITING_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
"""A container waiting for one of these will not start by itself: the attempt has failed."""


@dataclass(frozen=True, slots=True)
class Running:
    """Still working (or not yet started)."""


@dataclass(frozen=True, slots=True)
class Failed:
    """Ended (or will never start) without a result: `reason` says why."""

    reason: str
    delete_job: bool = False


@dataclass(frozen=True, slots=True)
class Reported:
    """Ended with a result: a pointer to check and read, or the whole result inline."""

    pointer: results.Pointer | None
    inline: StepExecutorResult | None


Outcome = Running | Failed | Reported


def _condition(job: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in job.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond  # type: ignore[no-any-return]
    return None


def _container_state(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return statuses[0].get("state", {}) if statuses else {}


def _latest(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    if not pods:
        return None
    return max(pods, key=lambda p: p.get("metadata", {}).get("creationTimestamp", ""))


def _terminated(pod: Mapping[str, Any]) -> Outcome | None:
    state = _container_state(pod).get("terminated")
    if not state:
        return None
    try:
        reported = results.parse_termination_message(state.get("message"))
    except results.ResultError as exc:
        return Failed(str(exc))
    if isinstance(reported, results.Pointer):
        return Reported(reported, None)
    if isinstance(reported, StepExecutorResult):
        return Reported(None, reported)
    code, reason = state.get("exitCode"), state.get("reason") or "Error"
    text = (state.get("message") or "").strip()[-400:]
    if reason == "OOMKilled":
        return Failed(f"OOMKilled: the step pod ran out of memory (exit code {code})")
    return Failed(
        f"pod exited with code {code} ({reason}) without a result" + (f": {text}" if text else "")
    )


def _stuck(pod: Mapping[str, Any]) -> Outcome | None:
    waiting = _container_state(pod).get("waiting") or {}
    reason = waiting.get("reason")
    if reason in STUCK_WAITING_REASONS:
        image = ((pod.get("spec", {}).get("containers") or [{}])[0]).get("image", "?")
        message = (waiting.get("message") or "").strip()[:300]
        return Failed(f"{reason} for image {image}: {message}".rstrip(": "), delete_job=True)
    status = pod.get("status", {})
    if status.get("phase") == "Failed" and status.get("reason"):
        return Failed(f"pod {status['reason']}: {status.get('message', '')}".rstrip(": "))
    return None


def classify(job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]]) -> Outcome:
    """The outcome of one attempt from its Job (None: not found) and the Job's pods."""
    if job is None:
        return Failed("its Job was deleted before the step finished")
    pod = _latest(pods)
    if pod is not None:
        found = _terminated(pod) or _stuck(pod)
        if found is not None:
            return found
    failed = _condition(job, "Failed")
    if failed is not None:
        reason = failed.get("reason", "Failed")
        if reason == "DeadlineExceeded":
            return Failed("the Job's activeDeadlineSeconds passed (operator was away?)")
        return Failed(f"Job failed ({reason}): {failed.get('message', '')}".rstrip(": "))
    if _condition(job, "Complete") is not None:
        return Failed("Job completed but its pod is gone: no result to read")
    if pod is None and job.get("status", {}).get("failed"):
        return Failed("its pod was deleted before the step finished")
    return Running()


def finished(job: Mapping[str, Any]) -> bool:
    """The Job has ended (Complete or Failed): nothing of it runs any more."""
    return _condition(job, "Complete") is not None or _condition(job, "Failed") is not None


def signal(kind: str, obj: Mapping[str, Any]) -> tuple[object, ...]:
    """What of a Job or pod `classify` can react to. A watch event that leaves this unchanged
    (a pod scheduled, started, a Job's active count) cannot change an outcome, so it need not
    wake the execution. Jobs and pods have signals of the same shape, all False when quiet."""
    if kind == "pod":
        state = _container_state(obj)
        waiting = (state.get("waiting") or {}).get("reason")
        status = obj.get("status", {})
        return (
            "terminated" in state,
            waiting in STUCK_WAITING_REASONS,
            status.get("phase") == "Failed" and bool(status.get("reason")),
        )
    # A Job's Complete condition follows its pod's end, which has already woken the
    # execution; "complete but the pod is gone" arrives as the pod's DELETED event.
    return (
        _condition(obj, "Failed") is not None,
        bool(obj.get("status", {}).get("failed")),
        False,
    )


AttemptKey = tuple[str, int]
"""(step label value, attempt number): how a Job and its pods name the attempt they run."""


def attempt_key(step_id: str, attempt: int) -> AttemptKey:
    return (names.label_value(step_id), attempt)


def index_by_attempt(
    items: Sequence[Mapping[str, Any]],
) -> dict[AttemptKey, list[Mapping[str, Any]]]:
    """Group Jobs or pods by their (step label, attempt label)."""
    out: dict[AttemptKey, list[Mapping[str, Any]]] = {}
    for item in items:
        labels = item.get("metadata", {}).get("labels") or {}
        try:
            key = (str(labels[names.STEP_LABEL]), int(labels[names.ATTEMPT_LABEL]))
        except (KeyError, ValueError):
            continue
        out.setdefault(key, []).append(item)
    return out


@dataclass(frozen=True, slots=True)
class Observed:
    """Every Job of one execution classified once per reconcile (with its pods)."""

    outcomes: Mapping[AttemptKey, Outcome]
    still_running: tuple[str, ...]
    """Names of Jobs whose attempt is still working and that are not being deleted."""
    ran_on: Mapping[AttemptKey, Mapping[str, str]] = field(default_factory=dict)
    """Per attempt: the image it ran, the digest the kubelet pulled and the node (`ranOn`)."""

    def outcome(self, step_id: str, attempt: int) -> Outcome:
        """The attempt's outcome; an attempt with no Job has lost it."""
        return self.outcomes.get(attempt_key(step_id, attempt)) or classify(None, ())


NOTHING = Observed({}, ())


def ran_on(pod: Mapping[str, Any] | None) -> dict[str, str]:
    """What the kubelet reports it ran: image reference, image digest (imageID) and node."""
    if pod is None:
        return {}
    statuses = pod.get("status", {}).get("containerStatuses") or []
    status = statuses[0] if statuses else {}
    spec = (pod.get("spec", {}).get("containers") or [{}])[0]
    found = {
        "image": status.get("image") or spec.get("image"),
        "imageID": status.get("imageID"),
        "node": pod.get("spec", {}).get("nodeName"),
        "pod": pod.get("metadata", {}).get("name"),
    }
    return {k: str(v)[:512] for k, v in found.items() if v}


def observe_children(
    jobs: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]]
) -> Observed:
    """Classify every Job of an execution with its pods: the one pass a reconcile makes."""
    pods_by = index_by_attempt(pods)
    outcomes: dict[AttemptKey, Outcome] = {}
    running: list[str] = []
    where: dict[AttemptKey, Mapping[str, str]] = {}
    for key, key_jobs in index_by_attempt(jobs).items():
        outcome = classify(key_jobs[0], pods_by.get(key, []))
        outcomes[key] = outcome
        if not isinstance(outcome, Running):
            where[key] = ran_on(_latest(pods_by.get(key, [])))
        if isinstance(outcome, Running):
            running.extend(
                str(j["metadata"]["name"])
                for j in key_jobs
                if not j["metadata"].get("deletionTimestamp")
            )
    return Observed(outcomes, tuple(running), where)
