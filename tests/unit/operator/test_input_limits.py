"""An execution with a too-deep or too-large input is refused; the deepest object the apiserver
stores cannot crash the operator's process (tests/e2e/test_hostile_inputs.py does it for real)."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from runbook_engine.limits import MAX_VALUE_BYTES, MAX_VALUE_DEPTH
from runbook_operator.__main__ import APISERVER_MAX_DEPTH, RECURSION_LIMIT
from runbook_operator.execution import pinning


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def _spec(value: Any) -> dict[str, Any]:
    return {"runbookRef": {"name": "rb"}, "input": value}


def test_a_deep_input_is_refused_as_input_too_deep_naming_the_field_and_the_limit() -> None:
    refusal = pinning.parse_request(_spec(nested(3000)))
    assert isinstance(refusal, pinning.Refusal)
    assert refusal.reason == "InputTooDeep"
    assert refusal.message == "spec.input: nested 3000 levels deep, the limit is 64"


def test_a_large_input_is_refused_as_input_too_large() -> None:
    refusal = pinning.parse_request(_spec({"blob": "x" * MAX_VALUE_BYTES}))
    assert isinstance(refusal, pinning.Refusal) and refusal.reason == "InputTooLarge"
    assert refusal.message.startswith("spec.input: ")
    assert refusal.message.endswith(f"bytes of JSON, the limit is {MAX_VALUE_BYTES} bytes")


def test_an_input_at_the_limits_is_accepted() -> None:
    request = pinning.parse_request(_spec(nested(MAX_VALUE_DEPTH)))
    assert not isinstance(request, pinning.Refusal)
    assert not isinstance(pinning.parse_request(_spec({"blob": "x" * 1000})), pinning.Refusal)


def test_the_refusal_is_recorded_as_the_engines_rejection() -> None:
    refusal = pinning.parse_request(_spec(nested(100)))
    assert isinstance(refusal, pinning.Refusal)
    rejected, failed = pinning.refusal_events(refusal, None)
    assert rejected.details["reason"] == "InputTooDeep"
    assert rejected.details["problems"] == [
        {"field": "spec.input", "reason": "nested 100 levels deep, the limit is 64"}
    ]
    assert "spec.input" in failed.details["message"]


def test_the_recursion_limit_covers_the_deepest_object_with_room() -> None:
    assert RECURSION_LIMIT >= 2 * APISERVER_MAX_DEPTH + 1000  # copy.deepcopy: 2 frames a level


DEEPEST = textwrap.dedent(
    """
    import copy, json, sys, threading
    from runbook_operator.__main__ import allow_the_deepest_objects
    levels = int(sys.argv[1])
    if sys.argv[2] == "start-up":
        allow_the_deepest_objects()
    text = '{"a":' * levels + '1' + '}' * levels

    def work():
        # what kopf and the kubernetes client do with every object, one C level per level
        value, other = json.loads(text), json.loads(text)
        assert value == other and len(repr(value)) == len(text) + levels
        assert json.dumps(value, separators=(",", ":")) == text
        from kopf._cogs.structs import diffs
        assert not diffs.diff(value, other)
        assert copy.deepcopy(value) == other  # kopf copies bodies: two frames a level

    def checked():
        try:
            work()
            return 0
        except RecursionError as exc:
            print("RecursionError:", exc, file=sys.stderr)
            return 1

    codes = [checked()]  # the main thread: kopf's event loop
    thread = threading.Thread(target=lambda: codes.append(checked()))  # the reconcile pool
    thread.start()
    thread.join()
    sys.exit(max(codes))
    """
)


def _small_stack() -> None:
    """A 4 MiB stack limit, as some hosts and containers have: start-up must not depend on it."""
    _, hard = resource.getrlimit(resource.RLIMIT_STACK)
    resource.setrlimit(resource.RLIMIT_STACK, (4 * 1024 * 1024, hard))


def _run(levels: int, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", DEEPEST, str(levels), mode],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_small_stack,
    )


def test_after_start_up_the_deepest_object_the_apiserver_stores_is_decoded_in_every_thread() -> (
    None
):
    proc = _run(APISERVER_MAX_DEPTH, "start-up")
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_without_it_such_an_object_raises_recursion_error() -> None:
    proc = _run(3000, "plain")
    assert proc.returncode == 1 and "RecursionError" in proc.stderr


@pytest.mark.parametrize("levels", [RECURSION_LIMIT - 500, RECURSION_LIMIT + 10])
def test_deeper_than_that_is_an_exception_never_a_crashed_process(levels: int) -> None:
    """At the recursion limit the C stack must still have room: RecursionError, not SIGSEGV."""
    proc = _run(levels, "start-up")
    assert proc.returncode in (0, 1), f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.returncode == 0 or "RecursionError" in proc.stderr
