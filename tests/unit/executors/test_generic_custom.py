"""CUSTOM: functions by import path or by registered name, and every way config can be wrong."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runbook_engine.contract import StepExecutorContext, StepExecutorResult
from runbook_executors.base import BaseStepExecutor
from runbook_executors.generic import custom
from runbook_executors.generic.custom import (
    CustomStepExecutor,
    custom_function,
    load_callable,
    register_function,
    registered_functions,
    unregister_function,
)

MakeCtx = Callable[..., StepExecutorContext]
RunStep = Callable[[BaseStepExecutor, StepExecutorContext], StepExecutorResult]

FUNCS = """
import asyncio
from runbook_engine.contract import StepExecutorResult

def echo(ctx):
    return {"step": ctx.step_id, "input": ctx.input, "attempt": ctx.attempt}

async def async_result(ctx):
    await asyncio.sleep(0)
    return StepExecutorResult(success=True, output={"async": True}, kpis={"n": 3})

def boom(ctx):
    raise ValueError("boom at " + ctx.step_id)

def exits(ctx):
    import sys
    sys.exit(0)

def returns_list(ctx):
    return [1, 2]

def returns_none(ctx):
    return None

NOT_CALLABLE = 42

class Tools:
    @staticmethod
    def nested(ctx):
        return {"nested": True}
"""


@pytest.fixture
def funcs(module_dir: Path) -> str:
    (module_dir / "rb_custom_funcs.py").write_text(FUNCS)
    return "rb_custom_funcs"


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    before = dict(custom._FUNCTIONS)
    yield
    custom._FUNCTIONS.clear()
    custom._FUNCTIONS.update(before)


def test_function_path_gets_context_and_dict_becomes_output(
    funcs: str, make_ctx: MakeCtx, run_step: RunStep
) -> None:
    ctx = make_ctx("CUSTOM", config={"function": f"{funcs}:echo"}, input={"x": 1}, attempt=2)
    result = run_step(CustomStepExecutor(), ctx)
    assert result.success, result.error
    assert result.output == {"step": "step-1", "input": {"x": 1}, "attempt": 2}


def test_async_function_returning_result_is_kept_as_is(
    funcs: str, make_ctx: MakeCtx, run_step: RunStep
) -> None:
    result = run_step(CustomStepExecutor(), make_ctx(config={"function": f"{funcs}:async_result"}))
    assert result.success
    assert result.output == {"async": True}
    assert result.kpis == {"n": 3}


def test_dotted_attribute_after_colon(funcs: str, make_ctx: MakeCtx, run_step: RunStep) -> None:
    result = run_step(CustomStepExecutor(), make_ctx(config={"function": f"{funcs}:Tools.nested"}))
    assert result.output == {"nested": True}


def test_exception_is_failed_attempt_with_message(
    funcs: str, make_ctx: MakeCtx, run_step: RunStep
) -> None:
    result = run_step(CustomStepExecutor(), make_ctx(config={"function": f"{funcs}:boom"}))
    assert not result.success
    assert result.error is not None
    assert "ValueError: boom at step-1" in result.error


def test_sys_exit_is_a_failed_attempt(funcs: str, make_ctx: MakeCtx, run_step: RunStep) -> None:
    result = run_step(CustomStepExecutor(), make_ctx(config={"function": f"{funcs}:exits"}))
    assert not result.success
    assert result.error == f"{funcs}:exits: called sys.exit(0)"


@pytest.mark.parametrize("name", ["returns_list", "returns_none"])
def test_wrong_return_type_fails(
    funcs: str, make_ctx: MakeCtx, run_step: RunStep, name: Any
) -> None:
    result = run_step(CustomStepExecutor(), make_ctx(config={"function": f"{funcs}:{name}"}))
    assert not result.success
    assert "expected a dict or StepExecutorResult" in (result.error or "")


def test_missing_module(make_ctx: MakeCtx, run_step: RunStep) -> None:
    result = run_step(CustomStepExecutor(), make_ctx(config={"function": "no_such_mod_xyz:f"}))
    assert not result.success
    assert result.error == "config.function: module 'no_such_mod_xyz' not found"


def test_module_whose_own_import_is_missing_is_not_reported_as_missing(
    module_dir: Path, make_ctx: MakeCtx, run_step: RunStep
) -> None:
    (module_dir / "rb_broken_dep.py").write_text("import definitely_absent_dep_q\n")
    result = run_step(CustomStepExecutor(), make_ctx(config={"function": "rb_broken_dep:f"}))
    assert not result.success
    assert "importing 'rb_broken_dep' failed" in (result.error or "")
    assert "definitely_absent_dep_q" in (result.error or "")


def test_missing_attribute(funcs: str, make_ctx: MakeCtx, run_step: RunStep) -> None:
    result = run_step(CustomStepExecutor(), make_ctx(config={"function": f"{funcs}:nope"}))
    assert not result.success
    assert "has no attribute 'nope'" in (result.error or "")


def test_not_callable(funcs: str, make_ctx: MakeCtx, run_step: RunStep) -> None:
    result = run_step(CustomStepExecutor(), make_ctx(config={"function": f"{funcs}:NOT_CALLABLE"}))
    assert not result.success
    assert "is a int, not callable" in (result.error or "")


@pytest.mark.parametrize("spec", ["no_colon", "a:b:c", ":f", "mod:", 42])
def test_malformed_function_spec(make_ctx: MakeCtx, run_step: RunStep, spec: Any) -> None:
    result = run_step(CustomStepExecutor(), make_ctx(config={"function": spec}))
    assert not result.success
    assert (result.error or "").startswith("config.function: expected 'package.module:callable'")


def test_neither_function_nor_name(make_ctx: MakeCtx, run_step: RunStep) -> None:
    result = run_step(CustomStepExecutor(), make_ctx(config={}))
    assert not result.success
    assert "'function'" in (result.error or "") and "'functionName'" in (result.error or "")


def test_both_function_and_name(funcs: str, make_ctx: MakeCtx, run_step: RunStep) -> None:
    ctx = make_ctx(config={"function": f"{funcs}:echo", "functionName": "x"})
    result = run_step(CustomStepExecutor(), ctx)
    assert not result.success
    assert "not both" in (result.error or "")


def test_function_name_on_instance(make_ctx: MakeCtx, run_step: RunStep) -> None:
    executor = CustomStepExecutor()
    executor.register_function("double", lambda ctx: {"v": ctx.input["v"] * 2})
    result = run_step(executor, make_ctx(config={"functionName": "double"}, input={"v": 21}))
    assert result.output == {"v": 42}
    executor.unregister_function("double")
    assert not run_step(executor, make_ctx(config={"functionName": "double"})).success


def test_instance_registration_shadows_module_registration(
    make_ctx: MakeCtx, run_step: RunStep
) -> None:
    register_function("who", lambda ctx: {"who": "module"})
    executor = CustomStepExecutor()
    assert run_step(executor, make_ctx(config={"functionName": "who"})).output == {"who": "module"}
    executor.register_function("who", lambda ctx: {"who": "instance"})
    assert run_step(executor, make_ctx(config={"functionName": "who"})).output == {
        "who": "instance"
    }
    # Another instance (e.g. built by a subprocess's registry) sees only the module registry.
    assert run_step(CustomStepExecutor(), make_ctx(config={"functionName": "who"})).output == {
        "who": "module"
    }


def test_decorator_registers_async_function(make_ctx: MakeCtx, run_step: RunStep) -> None:
    @custom_function("async.answer")
    async def answer(ctx: StepExecutorContext) -> StepExecutorResult:
        return StepExecutorResult(success=False, error="no answer")

    assert "async.answer" in registered_functions()
    result = run_step(CustomStepExecutor(), make_ctx(config={"functionName": "async.answer"}))
    assert not result.success and result.error == "no answer"
    unregister_function("async.answer")
    assert "async.answer" not in registered_functions()


def test_unknown_name_lists_registered(make_ctx: MakeCtx, run_step: RunStep) -> None:
    register_function("alpha", lambda ctx: {})
    result = run_step(CustomStepExecutor(), make_ctx(config={"functionName": "beta"}))
    assert not result.success
    assert "no custom function registered as 'beta'" in (result.error or "")
    assert "alpha" in (result.error or "")


def test_config_module_is_imported_so_it_can_register(
    module_dir: Path, make_ctx: MakeCtx, run_step: RunStep
) -> None:
    (module_dir / "rb_registers.py").write_text(
        textwrap.dedent(
            """
            from runbook_executors.generic.custom import register_function
            register_function("from.import", lambda ctx: {"registered": "at import"})
            """
        )
    )
    ctx = make_ctx(config={"functionName": "from.import", "module": "rb_registers"})
    result = run_step(CustomStepExecutor(), ctx)
    assert result.success, result.error
    assert result.output == {"registered": "at import"}


def test_config_module_missing(make_ctx: MakeCtx, run_step: RunStep) -> None:
    ctx = make_ctx(config={"functionName": "x", "module": "no_such_mod_abc"})
    result = run_step(CustomStepExecutor(), ctx)
    assert result.error == "config.module: module 'no_such_mod_abc' not found"


def test_registration_rejects_non_callables() -> None:
    with pytest.raises(TypeError):
        register_function("bad", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CustomStepExecutor().register_function("", lambda ctx: {})


def test_load_callable_returns_the_function(funcs: str) -> None:
    fn = load_callable(f"{funcs}:echo")
    assert getattr(fn, "__name__", None) == "echo"
