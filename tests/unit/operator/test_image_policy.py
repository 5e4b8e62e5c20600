"""The step image policy: prefixes at a boundary, digests, the executor image exempt, the pull
policy of step images, the settings, and the problem a Runbook gets for a refused image."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runbook_engine.model import RunbookStep
from runbook_operator.config import OperatorConfig, SettingsError, load_config
from runbook_operator.crd.resources import RunbookStatus
from runbook_operator.crd.runbook_status import runbook_status, runbook_status_of
from runbook_operator.steps.image_policy import (
    ImagePolicy,
    image_problem,
    manifest_problem,
    normalize,
    step_image_problems,
)
from runbook_operator.steps.jobs import AttemptJob, job_manifest

from .kubefakes import REF

DIGEST = "sha256:" + "ab" * 32
OWN = "registry.example/ops/runbook-operator:0.1.0"
ACME = ImagePolicy(allow_prefixes=("ghcr.io/acme",), own_image=OWN)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# --- image_problem --------------------------------------------------------------------------


def test_no_policy_allows_every_image_even_one_that_does_not_parse() -> None:
    for image in ("busybox", "anything/at:all", "Not An Image"):
        assert image_problem(image, ImagePolicy()) is None


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/acme/tool",
        "ghcr.io/acme/tool:1.2",
        "ghcr.io/acme/team/tool:1",
        f"ghcr.io/acme/tool@{DIGEST}",
        f"GHCR.IO/acme/tool:1@{DIGEST}",  # registry hosts are case-insensitive
    ],
)
def test_images_under_an_allowed_prefix_pass(image: str) -> None:
    assert image_problem(image, ACME) is None


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/acme-evil/tool",  # a prefix matches at a boundary only
        "ghcr.io/acmetool:1",
        "ghcr.io.evil.example/acme/tool",
        "ghcr.io/other/tool",
        "busybox",
        "acme/tool",  # Docker Hub's acme, not ghcr.io's
    ],
)
def test_images_outside_the_prefixes_are_refused_naming_the_rule(image: str) -> None:
    why = image_problem(image, ACME)
    assert why is not None
    assert repr(image) in why and "not under an allowed prefix" in why and "ghcr.io/acme" in why


def test_images_are_compared_as_the_runtime_resolves_them() -> None:
    assert normalize("busybox") == "docker.io/library/busybox"
    assert normalize("busybox:1.36") == "docker.io/library/busybox:1.36"
    assert normalize("acme/tool") == "docker.io/acme/tool"
    assert normalize("index.docker.io/acme/tool") == "docker.io/acme/tool"
    assert normalize("localhost/tool") == "localhost/tool"
    assert normalize("localhost:5000/tool") == "localhost:5000/tool"
    hub = ImagePolicy(allow_prefixes=("docker.io/library/",))
    assert image_problem("busybox:1.36", hub) is None
    assert image_problem("docker.io/library/busybox", hub) is None
    assert image_problem("acme/busybox", hub) is not None
    # A prefix without a registry is read as the runtime reads an image: on Docker Hub.
    short = ImagePolicy(allow_prefixes=("acme/",))
    assert image_problem("docker.io/acme/tool", short) is None
    assert image_problem("ghcr.io/acme/tool", short) is not None
    # A bare registry host allows everything on it.
    host = ImagePolicy(allow_prefixes=("registry.example:5000",))
    assert image_problem("registry.example:5000/x/y:1", host) is None
    assert image_problem("registry.example:50001/x", host) is not None


def test_a_digest_can_be_required() -> None:
    policy = ImagePolicy(require_digest=True)
    assert image_problem(f"ghcr.io/acme/tool@{DIGEST}", policy) is None
    assert image_problem(f"busybox:1@{DIGEST}", policy) is None
    for image in ("ghcr.io/acme/tool:1", "busybox", "busybox@sha512:" + "ab" * 64):
        why = image_problem(image, policy)
        assert why is not None and "requires one" in why and "@sha256" in why
    both = ImagePolicy(allow_prefixes=("ghcr.io/acme",), require_digest=True)
    assert image_problem("ghcr.io/acme/tool:1", both) is not None
    assert image_problem(f"ghcr.io/other/tool@{DIGEST}", both) is not None
    assert image_problem(f"ghcr.io/acme/tool@{DIGEST}", both) is None


@pytest.mark.parametrize(
    "image", ["", "ghcr.io/acme/Tool", "ghcr.io/acme/tool:", "ghcr.io/acme/ tool", "x" * 5000]
)
def test_an_image_that_does_not_parse_is_refused_when_a_policy_is_set(image: str) -> None:
    why = image_problem(image, ACME)
    assert why is not None and "not a valid image reference" in why
    assert len(why) < 400


def test_the_operators_own_image_is_always_allowed() -> None:
    strict = ImagePolicy(allow_prefixes=("ghcr.io/acme",), require_digest=True, own_image=OWN)
    assert image_problem(OWN, strict) is None
    local = ImagePolicy(allow_prefixes=("ghcr.io/acme",), own_image="runbook-operator:dev")
    assert image_problem("docker.io/library/runbook-operator:dev", local) is None
    assert image_problem("runbook-operator:other", local) is not None


def test_many_prefixes_are_counted_not_all_listed() -> None:
    policy = ImagePolicy(allow_prefixes=tuple(f"r{i}.example/team" for i in range(40)))
    why = image_problem("busybox", policy)
    assert why is not None and "and 35 more" in why and "r39.example" not in why


_COMPONENT = st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,4})?", fullmatch=True)
_REGISTRY = st.sampled_from(["ghcr.io", "registry.example:5000", "quay.io", "docker.io"])


@given(
    registry=_REGISTRY,
    prefix_path=st.lists(_COMPONENT, min_size=1, max_size=3),
    extra=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._/", max_size=12),
    tag=st.one_of(st.none(), st.from_regex(r"[a-z0-9][a-z0-9.]{0,8}", fullmatch=True)),
)
def test_an_allowed_image_always_lies_under_the_prefix_at_a_boundary(
    registry: str, prefix_path: list[str], extra: str, tag: str | None
) -> None:
    """Whatever is appended to a prefix, the image passes only if what follows the prefix
    starts a new path component, a tag or a digest."""
    prefix = "/".join([registry, *prefix_path])
    image = prefix + extra + (f":{tag}" if tag else "")
    allowed = image_problem(image, ImagePolicy(allow_prefixes=(prefix,))) is None
    if allowed:
        rest = normalize(image)[len(normalize(prefix)) :]
        assert normalize(image).startswith(normalize(prefix))
        assert rest == "" or rest[0] in "/:@"
    if extra == "":
        assert allowed


@given(registry=_REGISTRY, other=_REGISTRY, path=st.lists(_COMPONENT, min_size=1, max_size=3))
def test_another_registry_is_never_allowed(registry: str, other: str, path: list[str]) -> None:
    image = "/".join([other, *path])
    allowed = image_problem(image, ImagePolicy(allow_prefixes=(f"{registry}/",))) is None
    assert allowed == (registry == other)


# --- manifests and pull policy ---------------------------------------------------------------


def _job(image: str | None, cfg: OperatorConfig) -> dict[str, Any]:
    step = RunbookStep.model_validate(
        {"id": "c", "actionType": "CUSTOM", **({"container": {"image": image}} if image else {})}
    )
    return job_manifest(AttemptJob(REF, step, 1, "def-cm", [], 1024), cfg)


def test_a_job_manifest_is_checked_before_it_is_created() -> None:
    cfg = OperatorConfig(executor_image=OWN, image_allow_prefixes=("ghcr.io/acme",))
    assert manifest_problem(_job("ghcr.io/acme/tool:1", cfg), cfg.image_policy) is None
    assert manifest_problem(_job(None, cfg), cfg.image_policy) is None  # the executor image
    why = manifest_problem(_job("busybox", cfg), cfg.image_policy)
    assert why is not None and why.startswith("container 'step': image 'busybox'")
    pod = {"spec": {"initContainers": [{"name": "init", "image": "evil.example/x"}]}}
    assert "container 'init'" in (manifest_problem(pod, cfg.image_policy) or "")


def test_step_images_are_pulled_always_the_executor_image_keeps_its_policy() -> None:
    cfg = OperatorConfig(executor_image=OWN, image_pull_policy="IfNotPresent")
    policy = {
        image: _job(image, cfg)["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"]
        for image in (None, OWN, "ghcr.io/acme/tool:1")
    }
    assert policy == {None: "IfNotPresent", OWN: "IfNotPresent", "ghcr.io/acme/tool:1": "Always"}
    relaxed = OperatorConfig(executor_image=OWN, step_image_pull_policy="IfNotPresent")
    container = _job("word-count:1", relaxed)["spec"]["template"]["spec"]["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"


# --- settings ----------------------------------------------------------------------------------


def test_settings_default_to_no_restriction_and_step_images_pulled_always() -> None:
    cfg = load_config({})
    assert cfg.image_policy == ImagePolicy(own_image=cfg.executor_image)
    assert not cfg.image_policy.restricts
    assert (cfg.image_pull_policy, cfg.step_image_pull_policy) == ("IfNotPresent", "Always")


@pytest.mark.parametrize(
    "raw",
    [
        '["ghcr.io/acme/", " quay.io/team "]',
        "ghcr.io/acme/, quay.io/team,",
        '["ghcr.io/acme/", "", "quay.io/team"]',
    ],
)
def test_allow_prefixes_from_a_json_list_or_a_comma_list(raw: str) -> None:
    cfg = load_config({"RUNBOOK_IMAGE_ALLOW_PREFIXES": raw, "RUNBOOK_IMAGE_REQUIRE_DIGEST": "true"})
    assert cfg.image_allow_prefixes == ("ghcr.io/acme/", "quay.io/team")
    assert cfg.image_policy.require_digest and cfg.image_policy.restricts


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"RUNBOOK_IMAGE_ALLOW_PREFIXES": "[1]"}, "RUNBOOK_IMAGE_ALLOW_PREFIXES[0]"),
        ({"RUNBOOK_IMAGE_ALLOW_PREFIXES": '["a b"]'}, "not an image name prefix"),
        ({"RUNBOOK_IMAGE_ALLOW_PREFIXES": "[oops"}, "not valid JSON"),
        ({"RUNBOOK_IMAGE_REQUIRE_DIGEST": "maybe"}, "RUNBOOK_IMAGE_REQUIRE_DIGEST"),
        ({"RUNBOOK_STEP_IMAGE_PULL_POLICY": "Sometimes"}, "RUNBOOK_STEP_IMAGE_PULL_POLICY"),
        ({"RUNBOOK_IMAGE_PULL_POLICY": "always"}, "RUNBOOK_IMAGE_PULL_POLICY"),
    ],
)
def test_bad_image_settings_name_the_variable(env: dict[str, str], complaint: str) -> None:
    with pytest.raises(SettingsError, match=complaint.replace("[", r"\[").replace("]", r"\]")):
        load_config(env)


# --- a Runbook's status ------------------------------------------------------------------------


def _spec(*images: str | None) -> dict[str, Any]:
    steps = []
    for i, image in enumerate(images):
        step: dict[str, Any] = {"id": f"s{i}", "actionType": "CUSTOM"}
        if image is not None:
            step["container"] = {"image": image}
        steps.append(step)
    return {"id": "imgs", "steps": steps}


def test_a_refused_image_makes_the_runbook_invalid_naming_the_field_and_the_rule() -> None:
    status = runbook_status(_spec(None, "ghcr.io/acme/ok:1", "busybox"), 4, NOW, image_policy=ACME)
    RunbookStatus.model_validate(status)
    cond = status["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Valid", "False", "ImageNotAllowed")
    (problem,) = status["problems"]
    assert problem["field"] == "spec.steps[2].container.image"
    assert "'busybox'" in problem["reason"] and "not under an allowed prefix" in problem["reason"]
    assert "spec.steps[2].container.image" in cond["message"]
    # The definition itself is fine: count and hash stay known.
    assert status["stepCount"] == 3 and len(status["definitionHash"]) == 64


def test_without_a_policy_the_same_runbook_is_valid() -> None:
    spec = _spec(None, "ghcr.io/acme/ok:1", "busybox")
    assert runbook_status(spec, 4, NOW)["conditions"][0]["status"] == "True"
    assert runbook_status(spec, 4, NOW, image_policy=ImagePolicy())["problems"] == []


def test_image_problems_are_added_to_other_problems_and_keep_their_reason() -> None:
    spec = _spec("busybox")
    spec["steps"].append({"id": "s1", "actionType": "CUSTOM", "dependsOn": ["nope"]})
    status = runbook_status(spec, 1, NOW, image_policy=ACME)
    assert status["conditions"][0]["reason"] == "InvalidGraph"
    fields = [p["field"] for p in status["problems"]]
    assert fields == ["spec.steps[1].dependsOn[0]", "spec.steps[0].container.image"]
    # A spec that does not even parse still gets its image problems.
    broken = _spec("busybox")
    broken["steps"][0]["timeoutMs"] = 0
    fields = [p["field"] for p in runbook_status(broken, 1, NOW, image_policy=ACME)["problems"]]
    assert "spec.steps[0].container.image" in fields


def test_runbook_status_of_passes_the_policy_on() -> None:
    body = {"metadata": {"name": "imgs", "generation": 2}, "spec": _spec("busybox")}
    assert runbook_status_of(body, NOW)["conditions"][0]["status"] == "True"
    refused = runbook_status_of(body, NOW, ACME)
    assert refused["problems"][0]["field"] == "spec.steps[0].container.image"


def test_malformed_steps_do_not_break_the_image_check() -> None:
    spec: dict[str, Any] = {"steps": ["x", {"container": "y"}, {"container": {"image": 3}}, None]}
    assert step_image_problems(spec, ACME) == []
    assert step_image_problems({"steps": "x"}, ACME) == []
