"""``AgentWatchHandler(thread_budget=USD)``: one budget for every invoke and resume of a LangGraph thread_id,
with a real graph (checkpointer, ``interrupt``/``Command(resume=...)``) and langchain-openai against the
loopback stub provider."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

import openai
import pytest
from langchain_core.messages import AnyMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, interrupt

import agentwatch
from agentwatch import CircuitBreakerException
from agentwatch.plugins.langchain import AgentWatchHandler
from tests.stubs.provider_server import Reply, StubProvider

# gpt-4o-mini list price: $0.15 / 1M input, $0.60 / 1M output
CALL = (1000 * 0.15 + 100 * 0.6) / 1e6


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def _graph(stub: StubProvider, **model: Any) -> Any:
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=stub.openai_base_url, api_key="sk-test", max_retries=0,
                     **model)

    def ask_model(state: State) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    def approve(state: State) -> dict[str, Any]:
        interrupt("approve?")
        return {}

    return _linear_graph(("agent", ask_model), ("approve", approve), ("finish", ask_model))


def _linear_graph(*nodes: tuple[str, Callable[[State], dict[str, Any]]]) -> Any:
    """START → each node in turn → END, with a checkpointer."""
    builder = StateGraph(State)
    previous = START
    for name, node in nodes:
        builder.add_node(name, node)
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder.compile(checkpointer=InMemorySaver())


def _config(handler: AgentWatchHandler, thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "callbacks": [handler]}


def test_thread_budget_spans_invokes_and_resumes_of_one_thread(memory: agentwatch.InMemoryExporter,
                                                                stub_provider: StubProvider) -> None:
    agentwatch.init(exporters=[memory])
    stub_provider.queue(*[Reply(content="fine", input_tokens=1000, output_tokens=100) for _ in range(10)])
    graph = _graph(stub_provider)
    handler = AgentWatchHandler(thread_budget=3 * CALL)
    t1 = _config(handler, "t1")
    graph.invoke({"messages": [("user", "first")]}, t1)  # call 1, then the interrupt
    graph.invoke(Command(resume=True), t1)  # resumed: call 2
    with pytest.raises(CircuitBreakerException) as caught:
        # Call 3 spends the rest of the thread's budget: the next node does not start.
        graph.invoke({"messages": [("user", "second")]}, t1)
    error = caught.value
    assert (error.scope, error.scope_id, error.reason) == ("trace", "thread:t1", "trace_budget")
    assert error.current == pytest.approx(3 * CALL)
    assert stub_provider.count("/chat/completions") == 3

    # Another thread has its own budget.
    graph.invoke({"messages": [("user", "other")]}, _config(handler, "t2"))
    assert stub_provider.count("/chat/completions") == 4

    # Recovery: a top-up; the blocked thread resumes from its checkpoint, pauses, resumes and spends it.
    error.monitor.increase_budget(CALL)
    graph.invoke(None, t1)  # on to the interrupt
    final = graph.invoke(Command(resume=True), t1)  # call 4
    assert [m.type for m in final["messages"]] == ["human", "ai", "ai", "human", "ai", "ai"]
    assert stub_provider.count("/chat/completions") == 5
    with pytest.raises(CircuitBreakerException):
        graph.invoke({"messages": [("user", "third")]}, t1)
    assert stub_provider.count("/chat/completions") == 5
    agentwatch.flush()
    blocked = [s for s in memory.spans if s["status"] == "blocked"]
    assert blocked and all(s["attributes"]["breaker.reason"] == "trace_budget" for s in blocked)


def test_thread_budget_with_hard_budget_blocks_a_call_whose_worst_case_does_not_fit(
        stub_provider: StubProvider) -> None:
    agentwatch.init(exporters=[], hard_budget=True)
    stub_provider.queue(*[Reply(content="fine", input_tokens=1000, output_tokens=100) for _ in range(5)])
    # Worst case of one call: ~200 input tokens and max_tokens=1500 at gpt-4o-mini prices, about $0.00093.
    graph = _graph(stub_provider, max_tokens=1500)
    handler = AgentWatchHandler(thread_budget=0.001)
    config = _config(handler, "hard")
    graph.invoke({"messages": [("user", "go")]}, config)  # fits; then $0.00021 spent, $0.00079 left
    with pytest.raises(CircuitBreakerException) as caught:
        graph.invoke(Command(resume=True), config)  # the worst case no longer fits
    assert (caught.value.reason, caught.value.scope) == ("hard_budget", "trace")
    assert 0.0009 < caught.value.reserved < 0.001  # type: ignore[operator]
    assert caught.value.remaining == pytest.approx(0.001 - CALL)
    assert stub_provider.count("/chat/completions") == 1


def _two_calls_graph(stub: StubProvider) -> Any:
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=stub.openai_base_url, api_key="sk-test", max_retries=0)

    def ask_model(state: State) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    return _linear_graph(("first", ask_model), ("second", ask_model))


def test_nested_trace_budgets_around_graph_runs_sync_and_async(memory: agentwatch.InMemoryExporter,
                                                              stub_provider: StubProvider) -> None:
    agentwatch.init(exporters=[memory])  # zero-config: no handler passed
    stub_provider.queue(*[Reply(content="fine", input_tokens=1000, output_tokens=100) for _ in range(10)])
    graph = _two_calls_graph(stub_provider)
    with agentwatch.trace("session", budget=2 * CALL):
        with agentwatch.trace("step", budget=CALL):
            with pytest.raises(CircuitBreakerException) as caught:
                graph.invoke({"messages": [("user", "a")]}, {"configurable": {"thread_id": "n1"}})
        assert (caught.value.scope, caught.value.scope_id) == ("trace", "step")
        assert stub_provider.count("/chat/completions") == 1

        async def run() -> Any:
            return await graph.ainvoke({"messages": [("user", "b")]}, {"configurable": {"thread_id": "n2"}})

        with pytest.raises(CircuitBreakerException) as caught:
            asyncio.run(run())  # call 2 spends the session's budget: the next node does not start
        assert (caught.value.scope, caught.value.scope_id) == ("trace", "session")
        assert stub_provider.count("/chat/completions") == 2
    graph.invoke({"messages": [("user", "c")]}, {"configurable": {"thread_id": "n3"}})  # no run budget here
    assert stub_provider.count("/chat/completions") == 4


def _sdk_answer(stub: StubProvider, text: str) -> str:
    client = openai.OpenAI(base_url=stub.openai_base_url, api_key="sk-test", max_retries=0)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
    return answer.choices[0].message.content or ""


@pytest.mark.parametrize("where", ["node", "tool"])
def test_thread_budget_counts_calls_made_without_langchain(memory: agentwatch.InMemoryExporter,
                                                          stub_provider: StubProvider, where: str) -> None:
    """The openai SDK used directly in a node's code or in a tool's body spends the thread's money too: it is checked
    against the thread budget and charged to it (it was neither: a $0.0003 thread spent $0.0008 and went on)."""
    agentwatch.init(exporters=[memory])
    stub_provider.queue(*[Reply(content="fine", input_tokens=1000, output_tokens=100) for _ in range(6)])

    @tool
    def lookup(query: str) -> str:
        """Look something up with a model."""
        return _sdk_answer(stub_provider, query)

    def research(state: State) -> dict[str, Any]:
        if where == "tool":
            return {"messages": [("ai", lookup.invoke({"query": "a"}) + lookup.invoke({"query": "b"}))]}
        return {"messages": [("ai", _sdk_answer(stub_provider, "a") + _sdk_answer(stub_provider, "b"))]}

    graph = _linear_graph(("research", research), ("write", research))
    config = _config(AgentWatchHandler(thread_budget=1.5 * CALL), "raw")
    with pytest.raises(CircuitBreakerException) as caught:
        graph.invoke({"messages": [("user", "go")]}, config)
    assert (caught.value.scope_id, caught.value.reason) == ("thread:raw", "trace_budget")
    assert stub_provider.count("/chat/completions") == 2  # research's two calls; write stopped at its start
    assert caught.value.current == pytest.approx(2 * CALL)
    assert graph.get_state(config).next == ("write",)


@pytest.mark.parametrize("how", ["invoke", "ainvoke"])
def test_a_models_own_agent_handler_keeps_the_thread_budget(stub_provider: StubProvider, how: str) -> None:
    """A model with its own ``AgentWatchHandler(agent=...)`` run with a thread budget outside a graph: the call its
    own handler opens again (with its agent) is still checked against the thread's budget and charged to it (it was
    neither: the thread's spend stayed 0 and its second call went out)."""
    agentwatch.init(exporters=[])
    stub_provider.queue(*[Reply(content="fine", input_tokens=1000, output_tokens=100) for _ in range(3)])
    model = ChatOpenAI(model="gpt-4o-mini", base_url=stub_provider.openai_base_url, api_key="sk-test", max_retries=0,
                       callbacks=[AgentWatchHandler(agent="writer", budget_per_hour=5.0)])
    config: Any = {"callbacks": [AgentWatchHandler(thread_budget=CALL)], "metadata": {"thread_id": "own"}}

    def call() -> Any:
        return model.invoke("hi", config) if how == "invoke" else asyncio.run(model.ainvoke("hi", config))

    call()
    with pytest.raises(CircuitBreakerException) as caught:
        call()
    assert (caught.value.scope_id, caught.value.reason) == ("thread:own", "trace_budget")
    assert caught.value.current == pytest.approx(CALL)
    assert stub_provider.count("/chat/completions") == 1
