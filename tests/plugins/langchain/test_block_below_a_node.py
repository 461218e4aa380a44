"""A block raised inside a LangGraph node's code by a layer below the handler (the openai SDK used directly, a hard
budget's reservation made where the request body is known) leaves the node as the handler's own blocks do: LangGraph's
``RetryPolicy`` does not retry it, an ``error_handler`` does not swallow it, ``on_budget="interrupt"`` pauses for it.
Found 2026-12-12: such a block left the node as a plain ``CircuitBreakerException``; a node with a RetryPolicy ran
three times and its paid calls before the refused one were sent and charged each time, an error_handler turned the
refusal into a finished graph, and ``on_budget="interrupt"`` raised it to the caller instead of pausing."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

import openai
import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphBubbleUp
from langgraph.func import entrypoint, task
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command, RetryPolicy

import agentwatch
from agentwatch import CircuitBreakerException
from agentwatch.plugins.langchain import AgentWatchHandler
from tests.plugins.langchain.test_direct_sdk_calls import ToolCalling
from tests.stubs.provider_server import Reply

#: ``hard``: a $0.05 hard budget; the cheap call fits, the second (gpt-4o with no max_tokens: its worst case is the
#: model's whole output limit, ~$0.16) is refused before it is sent, and the breaker stays CLOSED.
#: ``soft``: a $0.02 budget the first call ($0.0225) spends; the second is blocked.
LIMITS = {"hard": {"budget_per_hour": 0.05, "hard_budget": True},
          "soft": {"budget_per_hour": 0.02, "block_on_threshold": True}}
REPLY = {"hard": Reply(content="x", input_tokens=1_000, output_tokens=5),
         "soft": Reply(content="x", input_tokens=150_000, output_tokens=0)}


class State(TypedDict):
    log: Annotated[list[str], operator.add]


def _config(thread: str = "t1", **extra: Any) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, **extra}


class TwoCalls:
    """A node's code: a cheap model call, then one the limit refuses; through the openai SDK itself or LangChain."""

    def __init__(self, base_url: str, layer: str, limit: str) -> None:
        self.attempts = 0
        second = "gpt-4o" if limit == "hard" else "gpt-4o-mini"
        if layer == "sdk":
            client = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)
            self._first = lambda: client.chat.completions.create(
                model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "cheap"}])
            self._second = lambda: client.chat.completions.create(
                model=second, messages=[{"role": "user", "content": "refused"}])
        else:
            cheap = ChatOpenAI(model="gpt-4o-mini", max_tokens=10, base_url=base_url, api_key="k", max_retries=0)
            refused = ChatOpenAI(model=second, base_url=base_url, api_key="k", max_retries=0)
            self._first, self._second = lambda: cheap.invoke("cheap"), lambda: refused.invoke("refused")

    def __call__(self, state: State) -> dict[str, list[str]]:
        self.attempts += 1
        self._first()
        self._second()
        return {"log": ["work"]}


def _graph(node: Any, **options: Any) -> Any:
    builder = StateGraph(State)
    builder.add_node("work", node, **options)
    builder.add_edge(START, "work")
    builder.add_edge("work", END)
    return builder.compile(checkpointer=InMemorySaver())


@pytest.mark.parametrize("limit", ["hard", "soft"])
@pytest.mark.parametrize("layer", ["sdk", "langchain"])
def test_retry_policy_does_not_retry_a_block_raised_below_the_handler(stub_provider: Any, memory: Any, layer: str,
                                                                       limit: str) -> None:
    agentwatch.init(exporters=[memory], **LIMITS[limit])
    work = TwoCalls(stub_provider.openai_base_url, layer, limit)
    graph = _graph(work, retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False))
    stub_provider.queue(*[REPLY[limit]] * 4)
    config = _config()
    with pytest.raises(CircuitBreakerException) as caught:
        graph.invoke({"log": []}, config)
    assert isinstance(caught.value, GraphBubbleUp)  # what LangGraph lets through untouched
    assert caught.value.reason == ("hard_budget" if limit == "hard" else "budget_per_hour")
    assert work.attempts == 1 and stub_provider.count() == 1  # the paid first call was not sent again
    agentwatch.flush()
    assert len([span for span in memory.spans if span["kind"] == "node"]) == 1
    # The same recovery as after the handler's own blocks: the checkpoint resumes at the node.
    assert graph.get_state(config).next == ("work",)
    if limit == "hard":  # what the refused call asked for and what was left: carried over from the refusal
        assert caught.value.reserved > caught.value.remaining > 0
    caught.value.monitor.increase_budget(1.0)
    assert graph.invoke(None, config) == {"log": ["work"]}
    assert work.attempts == 2 and stub_provider.count() == 3


def test_retry_policy_does_not_retry_a_hard_budget_refusal_in_an_async_task(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory], **LIMITS["hard"])
    base_url = stub_provider.openai_base_url
    cheap = ChatOpenAI(model="gpt-4o-mini", max_tokens=10, base_url=base_url, api_key="k", max_retries=0)
    refused = ChatOpenAI(model="gpt-4o", base_url=base_url, api_key="k", max_retries=0)
    runs: list[str] = []

    @task(retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False))
    async def research(topic: str) -> str:
        runs.append(topic)
        outline = await cheap.ainvoke("outline " + topic)
        return str(outline.content) + str((await refused.ainvoke("write " + topic)).content)

    @entrypoint(checkpointer=InMemorySaver())
    async def workflow(topic: str) -> str:
        return await research(topic)

    stub_provider.queue(*[REPLY["hard"]] * 4)
    with pytest.raises(CircuitBreakerException) as caught:
        asyncio.run(workflow.ainvoke("ai", _config()))
    assert isinstance(caught.value, GraphBubbleUp) and caught.value.reason == "hard_budget"
    assert runs == ["ai"] and stub_provider.count() == 1


@pytest.mark.parametrize("limit", ["hard", "soft"])
def test_error_handler_does_not_swallow_a_block_raised_below_the_handler(stub_provider: Any, memory: Any,
                                                                         limit: str) -> None:
    agentwatch.init(exporters=[memory], **LIMITS[limit])
    handled: list[str] = []

    def fallback(state: State) -> dict[str, list[str]]:
        handled.append("fallback")
        return {"log": ["fallback"]}

    graph = _graph(TwoCalls(stub_provider.openai_base_url, "sdk", limit), error_handler=fallback)
    stub_provider.queue(*[REPLY[limit]] * 2)
    with pytest.raises(CircuitBreakerException):
        graph.invoke({"log": []}, _config())
    assert handled == [] and stub_provider.count() == 1


def test_a_tool_node_handling_tool_errors_does_not_swallow_a_block_raised_in_a_tool(stub_provider: Any,
                                                                                    memory: Any) -> None:
    """``ToolNode(handle_tool_errors=True)`` returns a tool's errors to the model as text, except LangGraph's own: a
    hard budget refusing the tool's own SDK call (the breaker stays CLOSED) let the agent ask again and again."""
    agentwatch.init(exporters=[memory], **LIMITS["hard"])
    client = openai.OpenAI(base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)

    @tool
    def lookup(query: str) -> str:
        """Look something up."""
        answer = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": query}])
        return answer.choices[0].message.content or ""

    model = ToolCalling(tool="lookup", rounds=3)
    builder = StateGraph(MessagesState)
    builder.add_node("agent", lambda state: {"messages": [model.invoke(state["messages"])]})
    builder.add_node("tools", ToolNode([lookup], handle_tool_errors=True))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    with pytest.raises(CircuitBreakerException) as caught:
        builder.compile().invoke({"messages": [("user", "hi")]})
    assert caught.value.reason == "hard_budget"
    assert model.calls == 1 and stub_provider.count() == 0


@pytest.mark.parametrize("limit", ["hard", "soft"])
@pytest.mark.parametrize("layer", ["sdk", "langchain"])
def test_interrupt_mode_pauses_for_a_block_raised_below_the_handler(stub_provider: Any, memory: Any, layer: str,
                                                                    limit: str) -> None:
    agentwatch.init(exporters=[memory], **LIMITS[limit])
    work = TwoCalls(stub_provider.openai_base_url, layer, limit)
    graph = _graph(work)
    stub_provider.queue(*[REPLY[limit]] * 4)
    config = _config(callbacks=[AgentWatchHandler(on_budget="interrupt")])
    (pause,) = graph.invoke({"log": []}, config)["__interrupt__"]
    assert pause.value["type"] == "agentwatch.circuit_breaker"
    assert pause.value["reason"] == ("hard_budget" if limit == "hard" else "budget_per_hour")
    assert graph.get_state(config).next == ("work",) and stub_provider.count() == 1
    # The answer is applied before the re-run node's code: its calls go through (the SDK's own as well).
    assert graph.invoke(Command(resume={"increase_budget": 1.0}), config) == {"log": ["work"]}
    assert work.attempts == 2 and stub_provider.count() == 3
    agentwatch.flush()
    assert len([span for span in memory.spans if span["kind"] == "llm" and span["status"] == "blocked"]) == 1
    assert agentwatch.get_state()["monitors"]["global"]["limits"]["budget_per_hour"] == pytest.approx(
        LIMITS[limit]["budget_per_hour"] + 1.0)
