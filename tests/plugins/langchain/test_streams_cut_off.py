"""A model call the caller cuts off (a stream left by ``break``, a cancelled task) is charged from an estimate.

Found 2026-12-05 by a probe: ``async for chunk in llm.astream(...): break`` with ``ChatOpenAI`` against the stub ended
the call (LangChain's ``on_llm_error`` with the exit) before the provider's stream was closed, so the HTTP layer's
estimate came too late: each of three stopped streams was charged $0 and sent, past a $0.00001 budget."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver

import agentwatch
from agentwatch import CircuitBreakerException
from tests.plugins.langchain.graphs import Workflow
from tests.stubs.provider_server import Reply

PROMPT = "tell me a long story " * 20


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_a_stream_left_by_break_is_charged_and_the_next_call_blocked(stub_provider: Any, memory: Any,
                                                                     how: str) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=0.00001, block_on_threshold=True)
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)

    async def read_async() -> None:
        async for chunk in llm.astream(PROMPT):
            if "STOP" in chunk.content:
                break

    stub_provider.queue(Reply(content="alpha beta STOP gamma delta " * 5, chunk_delay=0.005))
    if how == "stream":
        for chunk in llm.stream(PROMPT):
            if "STOP" in chunk.content:
                break
    else:
        asyncio.run(read_async())
    with pytest.raises(CircuitBreakerException):
        llm.invoke("hi")
    assert stub_provider.count() == 1
    agentwatch.flush()
    stopped = next(span for span in memory.spans if span["kind"] == "llm" and span["status"] != "blocked")
    attributes = stopped["attributes"]
    assert attributes["usage_estimated"] and attributes["stream_incomplete"]
    assert stopped["input_tokens"] > 50 and 0 < stopped["output_tokens"] < 10 and stopped["cost_usd"] > 0.00001
    assert agentwatch.get_client().monitor.snapshot()["errors_in_error_window"] == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("how", ["wait_for", "cancel"])
def test_a_cancelled_ainvoke_ends_its_call_and_frees_its_reservation(stub_provider: Any, memory: Any,
                                                                     how: str) -> None:
    """Found 2026-12-05: ``asyncio.wait_for(llm.ainvoke(...), 0.3)`` against a slow provider left the call open for
    good: no span, nothing charged, and under a hard budget its reservation held, so after six time-outs the budget
    ($0.05) refused every call with nothing spent. LangChain's chat ``agenerate`` ends its runs only for errors its
    gathered calls return; a cancelled task leaves at the gather's ``await``."""
    agentwatch.init(exporters=[memory], budget_per_hour=0.05, hard_budget=True, block_on_threshold=True)
    llm = ChatOpenAI(model="gpt-4o", base_url=stub_provider.openai_base_url, api_key="k", max_retries=0,
                     max_tokens=300)

    async def cut_off_six_times() -> None:
        for sent in range(1, 7):
            stub_provider.queue(Reply(content="late", delay=2.0))
            if how == "wait_for":
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(llm.ainvoke(PROMPT), 0.3)
            else:
                task = asyncio.create_task(llm.ainvoke(PROMPT))
                while stub_provider.count() < sent:
                    await asyncio.sleep(0.01)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
        # A request cut off before it reached the stub (a cold client on a loaded machine) left its reply queued.
        stub_provider.clear()
        stub_provider.queue(Reply(content="fine", input_tokens=10, output_tokens=2))
        assert (await llm.ainvoke("hi")).content == "fine"

    asyncio.run(cut_off_six_times())
    monitor = agentwatch.get_client().monitor  # type: ignore[union-attr]
    assert monitor.snapshot()["reserved"] == 0
    agentwatch.flush()
    calls = [span for span in memory.spans if span["kind"] == "llm"]
    assert len(calls) == 7
    cut_off = [span for span in calls if span["status"] == "error"]
    assert len(cut_off) == 6 and {span["attributes"]["error.type"] for span in cut_off} == {"CancelledError"}
    assert all(span["attributes"]["usage_estimated"] and span["cost_usd"] > 0 for span in cut_off)
    assert monitor.snapshot()["errors_in_error_window"] == 0  # the program's own cancellation, no provider error


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_a_graph_stream_left_by_break_ends_stopped_not_failed(memory: Any, how: str) -> None:
    """Found 2026-12-06 by a probe: ``for event in graph.stream(...): break`` ended the graph's span ``error`` with
    ``GeneratorExit``: a run the program chose to stop showed as a failed one in the dashboard's error counts."""
    agentwatch.init(exporters=[memory])
    graph = Workflow().build(InMemorySaver(), use_async=how == "astream")
    config = {"configurable": {"thread_id": how}}

    async def read_async() -> None:
        async for _ in graph.astream({"log": []}, config):
            break

    if how == "stream":
        for _ in graph.stream({"log": []}, config):
            break
    else:
        asyncio.run(read_async())
    agentwatch.flush()
    run = next(span for span in memory.spans if span["kind"] == "graph")
    assert run["status"] == "ok" and run["attributes"]["cancelled"] is True
    assert "error.type" not in run["attributes"]
    assert graph.get_state(config).next == ("researcher",)


def test_a_node_still_running_when_the_program_leaves_astream_ends_stopped_not_failed(memory: Any) -> None:
    """Found 2026-12-06 by a probe: ``async for event in graph.astream(...): break`` while a parallel node still ran
    ended that node's span ``error`` with the ``CancelledError`` LangGraph cancels it with, under a graph span that
    ended ``ok`` and ``cancelled``: the dashboard counted a failure the program never had."""
    from langgraph.graph import END, START, MessagesState, StateGraph

    agentwatch.init(exporters=[memory])

    async def quick(state: MessagesState) -> dict[str, Any]:
        return {}

    async def slow(state: MessagesState) -> dict[str, Any]:
        await asyncio.sleep(5)
        return {}

    builder = StateGraph(MessagesState)
    builder.add_node("quick", quick)
    builder.add_node("slow", slow)
    for name in ("quick", "slow"):
        builder.add_edge(START, name)
        builder.add_edge(name, END)
    graph = builder.compile()

    async def read_one() -> None:
        async for _ in graph.astream({"messages": []}):
            break

    asyncio.run(read_one())
    agentwatch.flush()
    states = {span["name"]: (span["status"], span["attributes"].get("cancelled"), span["attributes"].get("error.type"))
              for span in memory.spans if span["kind"] in ("graph", "node")}
    assert states == {"LangGraph": ("ok", True, None), "quick": ("ok", None, None), "slow": ("ok", True, None)}


def test_a_node_cut_off_by_its_timeout_ends_with_the_node_timeout_error(memory: Any) -> None:
    """Found 2026-12-06 by a probe: a node cut off by ``add_node(..., timeout=...)`` ended its span with the
    ``CancelledError`` LangGraph cancels its task with, while the program (and the graph's span) got LangGraph's
    ``NodeTimeoutError``: the node's span did not say why it ended. Every attempt of a ``RetryPolicy`` is one."""
    from langgraph.errors import NodeTimeoutError
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.types import RetryPolicy

    agentwatch.init(exporters=[memory])

    async def slow(state: MessagesState) -> dict[str, Any]:
        await asyncio.sleep(5)
        return {}

    builder = StateGraph(MessagesState)
    builder.add_node("slow", slow, timeout=0.2, retry_policy=RetryPolicy(max_attempts=2, initial_interval=0.01))
    builder.add_edge(START, "slow")
    builder.add_edge("slow", END)
    with pytest.raises(NodeTimeoutError):
        asyncio.run(builder.compile().ainvoke({"messages": []}))
    agentwatch.flush()
    nodes = [span for span in memory.spans if span["kind"] == "node"]
    assert len(nodes) == 2
    assert {span["attributes"]["error.type"] for span in nodes} == {"NodeTimeoutError"}
    assert all(span["status"] == "error" for span in nodes)


class _QuitsAtTheEnd(BaseCallbackHandler):
    """A handler of the program's that ends it from a callback (``sys.exit`` once a job is done)."""

    def on_llm_end(self, *args: Any, **kwargs: Any) -> None:
        raise SystemExit(3)


@pytest.mark.parametrize("how", ["invoke", "stream"])
def test_a_call_whose_end_another_handler_cut_off_is_charged_and_frees_its_reservation(
        stub_provider: Any, memory: Any, how: str) -> None:
    """Found 2026-12-06: a handler raising SystemExit (or a Ctrl-C landing) in ``on_llm_end`` before ours stops
    LangChain's dispatch of the end there, and it sends the run no other end: in a program that carries on (a worker
    loop catching SystemExit, a notebook after Ctrl-C) each such call stayed open for good: no span, its spend never
    charged, and under a hard budget its reservation held (five calls held $0.05 of a $1 budget, none spent)."""
    agentwatch.init(exporters=[memory], budget_per_hour=1.0, hard_budget=True, block_on_threshold=True)
    llm = ChatOpenAI(model="gpt-4o", base_url=stub_provider.openai_base_url, api_key="k", max_retries=0,
                     max_tokens=1000)
    for _ in range(3):
        stub_provider.queue(Reply(content="done", input_tokens=100, output_tokens=20))
        with pytest.raises(SystemExit):
            if how == "invoke":
                llm.invoke("hi", config={"callbacks": [_QuitsAtTheEnd()]})
            else:
                for _chunk in llm.stream("hi", config={"callbacks": [_QuitsAtTheEnd()]}):
                    pass
    monitor = agentwatch.get_client().monitor  # type: ignore[union-attr]
    assert monitor.snapshot()["reserved"] == 0
    agentwatch.flush()
    calls = [span for span in memory.spans if span["kind"] == "llm"]
    assert len(calls) == 3 and {span["attributes"]["error.type"] for span in calls} == {"SystemExit"}
    assert all(span["cost_usd"] > 0 for span in calls)
    assert monitor.snapshot()["spend_last_hour"] == pytest.approx(sum(span["cost_usd"] for span in calls))
    if how == "invoke":  # a stream to this base URL is not asked for its usage: estimated
        assert all(span["input_tokens"] == 100 and span["output_tokens"] == 20 for span in calls)
