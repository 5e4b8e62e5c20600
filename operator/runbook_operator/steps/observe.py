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
from runbook_operator.steps import identity, results

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
    pod_unseen: bool = field(default=False, compare=False)
    """The verdict rests on no pod being seen: a watch-fed cache may only be behind (the pod
    and Job watches are separate streams), so the operator asks the apiserver first."""


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
        return Failed("Job completed but its pod is gone: no result to read", pod_unseen=True)
    if pod is None and job.get("status", {}).get("failed"):
        return Failed("its pod was deleted before the step finished", pod_unseen=True)
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


@dataclass(frozen=True, slots=True)
class Observed:
    """Every Job of one execution classified once per reconcile (with its pods), by name."""

    outcomes: Mapping[str, Outcome]
    still_running: tuple[str, ...]
    """Names of this execution's Jobs still working and not being deleted."""
    ran_on: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Per Job that ended: the image its pod ran, the digest the kubelet pulled and the node
    (recorded in the ledger as the attempt's `ranOn`)."""

    @property
    def pods_unseen(self) -> bool:
        """Some attempt failed only because no pod of its Job was seen (Failed.pod_unseen)."""
        return any(isinstance(o, Failed) and o.pod_unseen for o in self.outcomes.values())

    def outcome(self, job: str) -> Outcome:
        """The outcome of the attempt Job `job` runs; an attempt with no Job has lost it."""
        return self.outcomes.get(job) or classify(None, ())


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
    execution_uid: str, jobs: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]]
) -> Observed:
    """Classify every Job of an execution with its pods: the one pass a reconcile makes.

    Identity comes from uids and from what runs, not from labels anyone may copy
    (`steps.identity`): a Job counts only when this execution controls it, a pod only when it
    is controlled by that Job and runs what the Job says. Attempts are looked up by their
    deterministic Job name (`names.job_name`). More than one such pod for one Job (ours run
    exactly one: backoffLimit 0, parallelism 1) fails the attempt rather than pick one.
    """
    pods_by_job: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        job_uid = identity.job_of_pod(pod)
        if job_uid is not None:
            pods_by_job.setdefault(job_uid, []).append(pod)
    outcomes: dict[str, Outcome] = {}
    running: list[str] = []
    where: dict[str, Mapping[str, str]] = {}
    for job in jobs:
        meta = job.get("metadata", {})
        name = str(meta.get("name", ""))
        if identity.controller_uid(job, "RunbookExecution") != execution_uid:
            outcomes[name] = Failed(
                f"Job {name} is not controlled by this execution (made by someone else?)"
            )
            continue
        outcome, genuine = _job_outcome(job, pods_by_job.get(str(meta.get("uid") or ""), []))
        outcomes[name] = outcome
        if isinstance(outcome, Running):
            if not meta.get("deletionTimestamp"):
                running.append(name)
        else:
            where[name] = ran_on(_latest(genuine))
    return Observed(outcomes, tuple(running), where)


def _job_outcome(
    job: Mapping[str, Any], claimed: Sequence[Mapping[str, Any]]
) -> tuple[Outcome, list[Mapping[str, Any]]]:
    """The outcome of one of the execution's Jobs from the pods that claim to be its own, and
    the pods that are genuinely its own."""
    name = job["metadata"]["name"]
    genuine: list[Mapping[str, Any]] = []
    strangers: list[tuple[Mapping[str, Any], str]] = []
    for pod in claimed:
        difference = identity.differs_from_template(pod, job)
        if difference is None:
            genuine.append(pod)
        else:
            strangers.append((pod, difference))
    if len(genuine) > 1:
        pod_names = ", ".join(sorted(str(p["metadata"]["name"]) for p in genuine))
        failed = Failed(
            f"{len(genuine)} pods claim to be Job {name}'s ({pod_names}); it runs one: "
            "no result is trusted",
            delete_job=True,
        )
        return failed, []
    outcome = classify(job, genuine)
    if strangers and isinstance(outcome, Failed):  # a copy may be why (it can end the Job)
        pod, difference = strangers[0]
        stranger = (
            f"pod {pod['metadata']['name']} claims to be Job {name}'s but does not run what the "
            f"Job says ({difference}): its result is not trusted"
        )
        reason = f"{outcome.reason}; {stranger}" if genuine else stranger
        return Failed(reason, outcome.delete_job), genuine
    return outcome, genuine
