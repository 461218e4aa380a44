"""Per-run budgets: ``agentwatch.trace(name, budget=USD)`` shares one budget, not time-windowed, between
every LLM call inside it (context manager, async context manager, decorator), nested runs included."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from agentwatch._run_budget import RunBudgetStore

# gpt-4o list price: $2.50 / 1M input tokens, so 4,000 input tokens cost $0.01.
CALL_USD = 0.01


def _call() -> None:
    with agentwatch.llm_call(model="gpt-4o", provider="openai") as call:
        call.set_usage(4000, 0)


def _calls_until_blocked(limit: int = 100) -> tuple[int, CircuitBreakerException]:
    for made in range(limit):
        try:
            _call()
        except CircuitBreakerException as error:
            return made, error
    raise AssertionError("never blocked")


def test_a_trace_budget_blocks_with_scope_trace_and_recovers(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory])
    with agentwatch.trace("research", budget=0.03) as run:
        made, error = _calls_until_blocked()
        assert made == 3
        assert (error.scope, error.scope_id, error.reason) == ("trace", "research", "trace_budget")
        assert error.current == pytest.approx(0.03) and error.threshold == 0.03
        assert "trace budget reached" in str(error)
        assert run.monitor is error.monitor
        error.monitor.increase_budget(0.01)
        _call()
        with pytest.raises(CircuitBreakerException):
            _call()
    _call()  # outside the run: no budget
    agentwatch.flush()
    [trace_span] = memory.by_kind("trace")
    assert trace_span["attributes"]["trace.budget"] == pytest.approx(0.04)
    assert trace_span["attributes"]["trace.spent"] == pytest.approx(0.04)


def test_each_run_has_the_whole_budget_decorated_sync_and_async() -> None:
    agentwatch.init(exporters=[])

    @agentwatch.trace("job", budget=0.02)
    def job() -> int:
        return _calls_until_blocked()[0]

    @agentwatch.trace("ajob", budget=0.02)
    async def ajob() -> int:
        return _calls_until_blocked()[0]

    assert [job(), job()] == [2, 2]

    async def both() -> list[int]:
        return list(await asyncio.gather(ajob(), ajob()))

    assert asyncio.run(both()) == [2, 2]  # concurrent runs in tasks do not share

    async def manager() -> int:
        async with agentwatch.trace("amanaged", budget=0.01):
            return _calls_until_blocked()[0]

    assert asyncio.run(manager()) == 1


def test_a_decorated_generator_function_is_limited_for_its_whole_run() -> None:
    """Found 2026-12-08: on a generator function (a streaming endpoint's ``async def answer(): ... yield``) the
    decorator opened and closed the run when the generator was made, before its body ran: no call was limited."""
    agentwatch.init(exporters=[])

    @agentwatch.trace("stream", budget=0.02)
    def stream() -> Any:
        for made in range(100):
            _call()
            yield made

    @agentwatch.trace("astream", budget=0.02)
    async def astream() -> Any:
        for made in range(100):
            _call()
            yield made

    @agentwatch.agent_fn("Streamer", budget_per_hour=0.02, block_on_threshold=True)
    async def agent_stream() -> Any:
        for made in range(100):
            _call()
            yield made

    with pytest.raises(CircuitBreakerException) as blocked:
        list(stream())
    assert (blocked.value.scope_id, blocked.value.reason) == ("stream", "trace_budget")

    async def consume(generator: Any) -> list[int]:
        return [made async for made in generator]

    for generator, scope_id in ((astream, "astream"), (agent_stream, "streamer")):
        with pytest.raises(CircuitBreakerException) as blocked:
            asyncio.run(consume(generator()))
        assert blocked.value.scope_id == scope_id
    assert next(stream()) == 0  # each run has its own budget


def test_nested_traces_inner_blocks_first_and_outer_counts_inner_calls() -> None:
    agentwatch.init(exporters=[])
    with agentwatch.trace("outer", budget=0.05):
        _call()
        with agentwatch.trace("inner", budget=0.02):
            made, error = _calls_until_blocked()
        assert (made, error.scope_id) == (2, "inner")
        with agentwatch.trace("unbudgeted"):
            made, error = _calls_until_blocked()
        assert (made, error.scope_id) == (2, "outer")  # 1 + 2 + 2 = the outer $0.05


def test_trace_budget_with_hard_budget_reserves_the_worst_case() -> None:
    agentwatch.init(exporters=[])
    with agentwatch.trace("hard", budget=0.05, hard_budget=True):
        with agentwatch.llm_call(model="gpt-4o", provider="openai", reserve=0.04) as call:
            call.set_usage(4000, 0)  # $0.01 spent of the $0.04 reserved
        with pytest.raises(CircuitBreakerException) as caught:
            agentwatch.llm_call(model="gpt-4o", provider="openai", reserve=0.045)
        assert (caught.value.reason, caught.value.scope) == ("hard_budget", "trace")
        assert caught.value.remaining == pytest.approx(0.04)


def test_the_run_store_is_not_time_windowed() -> None:
    store = RunBudgetStore()
    store.set_limits(1.0, None, None)
    store.record(0.0, 0.6, False)
    store.record(0.0, 0.4, False)
    hours_later = time.monotonic() + 10 * 3600
    assert store.spend(hours_later) == pytest.approx(1.0)
    assert store.evaluate(hours_later, True) == ("trace_budget", 1.0, 1.0)
