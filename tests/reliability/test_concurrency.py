"""Load through the real LangChain path (zero-config plugin): 16 threads x 500 calls and 1,000 concurrent
asyncio tasks. Every span has the right parent, budgets add up exactly, no exception leaks."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda

import agentwatch
from tests.plugins.langchain.fakes import UsageChatModel, gpt4o_cost
from tests.reliability.conftest import scale

THREADS = 16
CALLS_PER_THREAD = scale(500, 5_000)
TASKS = scale(1_000, 10_000)


def _chain() -> Any:
    return RunnableLambda(lambda text: text, name="prep") | UsageChatModel()


def _check_trees(spans: list[dict[str, Any]], expected_calls: int) -> None:
    """Each call: its ``call-*`` span -> LangChain sequence -> (prep lambda, chat model), all in one trace,
    under the agent span of its own thread/task."""
    by_id = {span["span_id"]: span for span in spans}
    assert len(by_id) == len(spans), "duplicate span ids"
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        children[span["parent_span_id"]].append(span)
    calls = [span for span in spans if span["name"].startswith("call-")]
    assert len(calls) == expected_calls
    for call in calls:
        (sequence,) = children[call["span_id"]]
        kinds = sorted(span["kind"] for span in children[sequence["span_id"]])
        assert len(kinds) == 2 and "llm" in kinds, kinds
        for span in (sequence, *children[sequence["span_id"]]):
            assert span["trace_id"] == call["trace_id"]
            assert span["agent_name"] == call["agent_name"]
        owner = by_id[call["parent_span_id"]]
        assert owner["kind"] == "agent" and owner["name"] == call["agent_name"], (owner["name"], call["agent_name"])
    assert len(by_kind(spans, "llm")) == expected_calls


def by_kind(spans: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [span for span in spans if span["kind"] == kind]


@pytest.fixture
def agentwatch_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    caplog.set_level(logging.WARNING, logger="agentwatch")
    return caplog.records


def test_16_threads_x_500_calls(agentwatch_errors: list[logging.LogRecord]) -> None:
    memory = agentwatch.InMemoryExporter()
    agentwatch.init(exporters=[memory], budget_per_hour=1e9, max_queue_size=1_000_000, flush_interval=0.05)
    chain = _chain()
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def worker(t: int) -> None:
        try:
            barrier.wait()
            with agentwatch.agent(f"worker-{t}", budget_per_hour=1e6):
                for i in range(CALLS_PER_THREAD):
                    with agentwatch.trace(f"call-{t}-{i}"):
                        assert chain.invoke(f"q{i}").content == "ok"
        except BaseException as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors[:3]
    assert agentwatch.flush(60)
    total = THREADS * CALLS_PER_THREAD
    _check_trees(memory.spans, total)
    state = agentwatch.get_state()
    assert state["exporter"]["dropped"] == 0 and state["exporter"]["failed"] == 0
    glob = state["monitors"]["global"]
    assert glob["calls_in_error_window"] == total and glob["errors_in_error_window"] == 0
    assert glob["spend_last_hour"] == pytest.approx(total * gpt4o_cost(), rel=1e-9)
    for t in range(THREADS):
        agent = state["monitors"]["agents"][f"worker-{t}"]
        assert agent["calls_in_error_window"] == CALLS_PER_THREAD
        assert agent["spend_last_hour"] == pytest.approx(CALLS_PER_THREAD * gpt4o_cost(), rel=1e-9)
    assert sum(span["cost_usd"] for span in memory.by_kind("llm")) == pytest.approx(total * gpt4o_cost(), rel=1e-9)
    assert not agentwatch_errors, [record.getMessage() for record in agentwatch_errors[:3]]


def test_1000_concurrent_asyncio_tasks(agentwatch_errors: list[logging.LogRecord]) -> None:
    memory = agentwatch.InMemoryExporter()
    agentwatch.init(exporters=[memory], budget_per_hour=1e9, max_queue_size=1_000_000, flush_interval=0.05)
    chain = _chain()

    async def call(n: int) -> str:
        with agentwatch.agent(f"task-agent-{n % 10}"):
            async with agentwatch.trace(f"call-{n}"):
                await asyncio.sleep(0)
                result = await chain.ainvoke(f"q{n}")
                return str(result.content)

    async def main() -> list[Any]:
        return await asyncio.gather(*(call(n) for n in range(TASKS)), return_exceptions=True)

    results = asyncio.run(main())
    assert [r for r in results if r != "ok"] == []
    assert agentwatch.flush(60)
    _check_trees(memory.spans, TASKS)
    state = agentwatch.get_state()
    glob = state["monitors"]["global"]
    assert glob["calls_in_error_window"] == TASKS
    assert glob["spend_last_hour"] == pytest.approx(TASKS * gpt4o_cost(), rel=1e-9)
    for k in range(10):
        agent = state["monitors"]["agents"][f"task-agent-{k}"]
        assert agent["calls_in_error_window"] == TASKS // 10
    assert not agentwatch_errors, [record.getMessage() for record in agentwatch_errors[:3]]


def test_concurrent_budget_overshoot_is_bounded_by_callers() -> None:
    """A budget of N calls lets N through, plus at most the calls already in flight when it ran out."""
    allowed = 40
    agentwatch.init(exporters=[agentwatch.InMemoryExporter()], budget_per_hour=allowed * gpt4o_cost() * 0.999999,
                    block_on_threshold=True)
    model = UsageChatModel()
    passed: list[int] = []
    blocked: list[int] = []
    other: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def worker() -> None:
        barrier.wait()
        for _ in range(20):
            try:
                model.invoke("q")
            except agentwatch.CircuitBreakerException:
                with lock:
                    blocked.append(1)
            except BaseException as error:  # noqa: BLE001
                other.append(error)
            else:
                with lock:
                    passed.append(1)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not other
    assert len(passed) + len(blocked) == THREADS * 20
    # The price of a call is known only when it returns, so calls already in flight when the budget runs
    # out still finish: the overshoot is bounded by the number of concurrent callers, never more.
    assert allowed <= len(passed) <= allowed + THREADS - 1, f"{len(passed)} calls got through a budget of {allowed}"
