"""A block inside LangChain's own error wrappers: ``with_retry()`` does not retry it, and ``with_fallbacks()`` does not
hand a block of the whole program to its fallbacks; a block of the primary model's own agent falls back.

Found 2026-12-13: ``model.with_retry()`` tried a blocked call three times (three blocked spans, ``on_block`` three
times) and raised the block after ~4 s of backoff; ``with_fallbacks`` under an open global breaker blocked every
fallback in turn, and a fallback answering without a model hid the block from the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import Runnable, RunnableLambda

import agentwatch
from agentwatch import CircuitBreakerException
from agentwatch.plugins.langchain import AgentWatchHandler
from tests.plugins.langchain.fakes import UsageChatModel
from tests.reliability.conftest import run_script


def _block_everything(memory: agentwatch.InMemoryExporter) -> list[str]:
    blocks: list[str] = []
    agentwatch.init(exporters=[memory], budget_per_hour=0.0, block_on_threshold=True,
                    on_block=lambda event: blocks.append(event.scope))
    return blocks


def _blocked_spans(memory: agentwatch.InMemoryExporter) -> list[str]:
    agentwatch.flush()
    return [span["name"] for span in memory.spans if span["kind"] == "llm" and span["status"] == "blocked"]


def _run(runnable: Runnable[Any, Any], how: str) -> Any:
    async def run_async() -> Any:
        if how == "ainvoke":
            return await runnable.ainvoke("x")
        return [chunk async for chunk in runnable.astream("x")]

    if how == "invoke":
        return runnable.invoke("x")
    if how == "batch":
        return runnable.batch(["x"])
    if how == "stream":
        return list(runnable.stream("x"))
    return asyncio.run(run_async())


@pytest.mark.parametrize("how", ["invoke", "ainvoke", "batch", "stream"])
def test_with_retry_does_not_retry_a_block(memory: agentwatch.InMemoryExporter, how: str) -> None:
    blocks = _block_everything(memory)
    model = UsageChatModel()
    started = time.monotonic()
    with pytest.raises(CircuitBreakerException):
        _run(model.with_retry(stop_after_attempt=3), how)  # LangChain's default backoff: ~1 s, then ~2 s
    assert time.monotonic() - started < 0.5
    assert blocks == ["global"] and len(_blocked_spans(memory)) == 1 and model.calls == 0


def test_with_retry_batch_returns_a_block_as_its_inputs_error(memory: agentwatch.InMemoryExporter) -> None:
    blocks = _block_everything(memory)
    outputs = UsageChatModel().with_retry(stop_after_attempt=3).batch(["x", "y"], return_exceptions=True)
    assert [type(output) for output in outputs] == [CircuitBreakerException] * 2 and len(blocks) == 2


def test_with_retry_still_retries_other_errors_and_blocks_when_asked(memory: agentwatch.InMemoryExporter) -> None:
    blocks = _block_everything(memory)
    with pytest.raises(CircuitBreakerException):
        UsageChatModel().with_retry(retry_if_exception_type=(CircuitBreakerException,), stop_after_attempt=2,
                                    wait_exponential_jitter=False).invoke("x")
    assert len(blocks) == 2
    agentwatch.get_client().monitor.increase_budget(10.0)
    failing = UsageChatModel(fail_with="provider down")
    with pytest.raises(RuntimeError):
        failing.with_retry(stop_after_attempt=2, wait_exponential_jitter=False).invoke("x")
    assert failing.calls == 2


@pytest.mark.parametrize("how", ["invoke", "ainvoke", "stream", "astream"])
def test_a_global_block_passes_straight_through_with_fallbacks(memory: agentwatch.InMemoryExporter, how: str) -> None:
    blocks = _block_everything(memory)
    backup, canned = UsageChatModel(model_name="gpt-4o-mini"), []
    fallbacks = [backup, RunnableLambda(lambda _: canned.append(1) or "sorry, later")]
    with pytest.raises(CircuitBreakerException):
        _run(UsageChatModel().with_fallbacks(fallbacks), how)
    assert blocks == ["global"] and len(_blocked_spans(memory)) == 1
    assert backup.calls == 0 and canned == []


@pytest.mark.parametrize("how", ["batch", "abatch"])
def test_a_global_block_is_one_blocked_span_per_input_of_a_fallbacks_batch(memory: agentwatch.InMemoryExporter,
                                                                           how: str) -> None:
    """Found 2026-12-06 by a probe: ``model.with_fallbacks([...]).batch([...])`` under a spent global budget recorded a
    blocked span (and called ``on_block``) per fallback and input, and a fallback answering without a model would have
    hidden the block: LangChain's batch runs each runnable for the inputs still failing, which the invoke paths' check
    never saw."""
    blocks = _block_everything(memory)
    backup, canned = UsageChatModel(model_name="gpt-4o-mini"), []
    chain = UsageChatModel().with_fallbacks([backup, RunnableLambda(lambda _: canned.append(1) or "sorry, later")])
    inputs = ["x", "y", "z"]
    outputs = chain.batch(inputs, return_exceptions=True) if how == "batch" else \
        asyncio.run(chain.abatch(inputs, return_exceptions=True))
    assert [type(output) for output in outputs] == [CircuitBreakerException] * 3
    assert blocks == ["global"] * 3 and _blocked_spans(memory) == ["UsageChatModel"] * 3
    assert backup.calls == 0 and canned == []


def test_the_first_fallbacks_batch_of_a_program_is_one_blocked_span_per_input(tmp_path: Path) -> None:
    """The wrapper's module first imported by ``with_fallbacks()``, after ``init()``: its batch is looked up before its
    run starts, where the other patches are made."""
    result = run_script("""
        import sys
        import agentwatch
        from tests.plugins.langchain.fakes import UsageChatModel
        memory = agentwatch.InMemoryExporter()
        agentwatch.init(exporters=[memory], budget_per_hour=0.0, block_on_threshold=True)
        assert "langchain_core.runnables.fallbacks" not in sys.modules
        backup = UsageChatModel(model_name="gpt-4o-mini")
        outputs = UsageChatModel().with_fallbacks([backup]).batch(["x", "y"], return_exceptions=True)
        agentwatch.flush()
        print([type(output).__name__ for output in outputs], backup.calls,
              len([span for span in memory.spans if span["status"] == "blocked" and span["kind"] == "llm"]))
    """, tmp_path)
    assert result.stdout.strip() == "['CircuitBreakerException', 'CircuitBreakerException'] 0 2", \
        result.stdout + result.stderr


@pytest.mark.parametrize("budget", ["trace", "thread", "agent"])
def test_a_block_of_an_enclosing_budget_is_not_handed_to_the_fallbacks(memory: agentwatch.InMemoryExporter,
                                                                       budget: str) -> None:
    """Found 2026-12-14 by a review: only a block of the global monitor passed the fallbacks; a spent
    ``trace(budget=...)``, LangGraph thread budget or enclosing agent's budget was handed to them, and a fallback
    answering without a model hid it (the caller got the canned answer)."""
    blocks: list[str] = []
    agentwatch.init(exporters=[memory], on_block=lambda event: blocks.append(event.scope_id))
    config: Any = {"callbacks": [AgentWatchHandler(thread_budget=0.001)], "metadata": {"thread_id": "t"}} \
        if budget == "thread" else None
    enclosing = {"trace": lambda: agentwatch.trace("run", budget=0.001),
                 "agent": lambda: agentwatch.agent("run", budget_per_hour=0.001, block_on_threshold=True),
                 "thread": contextlib.nullcontext}[budget]
    backup, canned = UsageChatModel(model_name="gpt-4o-mini"), []
    chain = UsageChatModel().with_fallbacks([backup, RunnableLambda(lambda _: canned.append(1) or "sorry, later")])
    with enclosing():
        UsageChatModel().invoke("x", config)  # $0.0075: the budget is spent
        with pytest.raises(CircuitBreakerException) as caught:
            chain.invoke("x", config)
    assert caught.value.scope_id == ("thread:t" if budget == "thread" else "run")
    assert blocks == [caught.value.scope_id] and len(_blocked_spans(memory)) == 1
    assert backup.calls == 0 and canned == []


def test_a_block_of_the_primary_models_own_agent_falls_back(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    primary = UsageChatModel(callbacks=[AgentWatchHandler(agent="gpt4o-bot", budget_per_hour=0.0,
                                                          block_on_threshold=True)])
    backup = UsageChatModel(model_name="gpt-4o-mini", reply="from the backup")
    assert primary.with_fallbacks([backup]).invoke("x").content == "from the backup"
    assert primary.calls == 0 and backup.calls == 1
    answers = primary.with_fallbacks([backup]).batch(["x", "y"])
    assert [answer.content for answer in answers] == ["from the backup"] * 2 and backup.calls == 3


def test_a_fallbacks_subclass_reading_its_runnable_in_batch(memory: agentwatch.InMemoryExporter) -> None:
    """Found 2026-12-06 by a review: a fallbacks batch runs on a copy whose runnable and fallbacks are AgentWatch's
    stand-ins offering only ``batch``/``abatch``; a ``RunnableWithFallbacks`` subclass reading its runnable there (its
    own ``get_name`` naming the run after it) got an ``AttributeError`` raised into the program. The stand-ins now
    answer for the runnable they hold."""
    from langchain_core.runnables.fallbacks import RunnableWithFallbacks

    class NamedFallbacks(RunnableWithFallbacks[Any, Any]):
        def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
            return f"{self.runnable.get_name()} or {self.fallbacks[0].model_name}"

    agentwatch.init(exporters=[memory])
    backup = UsageChatModel(model_name="gpt-4o-mini")
    chain = NamedFallbacks(runnable=UsageChatModel(), fallbacks=[backup])
    answers = chain.batch(["x", "y"]) + asyncio.run(chain.abatch(["z"]))
    assert [answer.content for answer in answers] == ["ok"] * 3 and backup.calls == 0
    agentwatch.flush()
    assert [span["name"] for span in memory.by_kind("chain")] == ["UsageChatModel or gpt-4o-mini"] * 3


def test_with_retry_made_before_any_wrapper_module_is_imported(tmp_path: Path) -> None:
    """In a fresh program ``langchain_core.runnables.retry`` is first imported by ``with_retry()``, after ``init()``."""
    result = run_script("""
        import sys, time
        import agentwatch
        from agentwatch import CircuitBreakerException
        from tests.plugins.langchain.fakes import UsageChatModel
        agentwatch.init(exporters=[], budget_per_hour=0.0, block_on_threshold=True)
        assert "langchain_core.runnables.retry" not in sys.modules
        model, started = UsageChatModel(), time.monotonic()
        try:
            model.with_retry().invoke("x")
        except CircuitBreakerException:
            print("blocked after", time.monotonic() - started)
    """, tmp_path)
    assert result.stdout.startswith("blocked after "), result.stdout + result.stderr
    assert float(result.stdout.split()[-1]) < 0.5  # LangChain's first backoff alone is ~1 s


@pytest.mark.parametrize("wrapper", ["RunnableRetry", "RunnableWithFallbacks"])
def test_a_wrapper_built_directly_after_init(tmp_path: Path, wrapper: str) -> None:
    """Found 2026-12-14 by a review: a wrapper built as LangChain's docstrings show, not through ``with_retry()`` /
    ``with_fallbacks()``, in a program that imported its module after ``init()``, was never patched: the block was
    retried three times with ~3.5 s of backoff, or handed to the fallbacks (a canned one hid it)."""
    result = run_script(f"""
        import sys, time
        import agentwatch
        from agentwatch import CircuitBreakerException
        from langchain_core.runnables import RunnableLambda
        from tests.plugins.langchain.fakes import UsageChatModel
        blocks = []
        agentwatch.init(exporters=[], budget_per_hour=0.0, block_on_threshold=True, on_block=blocks.append)
        assert "langchain_core.runnables.retry" not in sys.modules
        from langchain_core.runnables.retry import RunnableRetry
        from langchain_core.runnables.fallbacks import RunnableWithFallbacks
        model = UsageChatModel()
        if "{wrapper}" == "RunnableRetry":
            runnable = RunnableRetry(bound=model, max_attempt_number=3, retry_exception_types=(Exception,))
        else:
            runnable = RunnableWithFallbacks(runnable=model, fallbacks=[RunnableLambda(lambda _: "sorry, later")])
        started = time.monotonic()
        try:
            print("answered", runnable.invoke("x"))
        except CircuitBreakerException:
            print("blocked after", time.monotonic() - started, "on_block", len(blocks))
    """, tmp_path)
    assert result.stdout.startswith("blocked after "), result.stdout + result.stderr
    assert float(result.stdout.split()[2]) < 0.5 and result.stdout.split()[-1] == "1", result.stdout
