"""An LLM call made without LangChain inside a LangGraph node or a tool (the openai SDK used directly) is recorded under
that node or tool and counts against its agent's limits. Found 2026-12-05: such a call was a trace of its own with no
agent, and ``agents={"writer": {...}}`` never saw it (each of these scenarios spent $0.12 twice past a $0.05 budget)."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

import agentwatch
from agentwatch import CircuitBreakerException
from agentwatch.plugins.langchain import AgentWatchHandler
from tests.stubs.provider_server import Reply

LIMITED = {"budget_per_hour": 0.05, "block_on_threshold": True}
EXPENSIVE = Reply(content="a long answer", input_tokens=400_000, output_tokens=100_000)  # ~$0.12 for gpt-4o-mini


class ToolCalling(BaseChatModel):
    """Asks for ``tool`` ``rounds`` times, then answers. No usage: it costs nothing."""

    tool: str
    rounds: int = 2
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "tool-calling-fake"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.calls += 1
        if self.calls > self.rounds:
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content="done"))])
        call = {"name": self.tool, "args": {"query": f"q{self.calls}"}, "id": f"call_{self.calls}", "type": "tool_call"}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="", tool_calls=[call]))])


def _ask(base_url: str, text: str) -> str:
    client = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
    return answer.choices[0].message.content or ""


def _sdk_spans(memory: Any) -> list[dict[str, Any]]:
    return [span for span in memory.spans if span["name"] == "openai.chat.completions"]


def test_a_node_functions_own_sdk_calls_count_against_the_node(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory], agents={"writer": LIMITED})

    def writer(state: MessagesState) -> dict[str, Any]:
        first = _ask(stub_provider.openai_base_url, "draft")
        return {"messages": [("ai", first + _ask(stub_provider.openai_base_url, "polish"))]}

    builder = StateGraph(MessagesState)
    builder.add_node("writer", writer)
    builder.add_edge(START, "writer")
    builder.add_edge("writer", END)
    stub_provider.queue(EXPENSIVE)
    with pytest.raises(CircuitBreakerException) as caught:
        builder.compile().invoke({"messages": [("user", "hi")]})
    assert (caught.value.reason, caught.value.scope_id) == ("budget_per_hour", "writer")
    assert stub_provider.count() == 1  # the node's second call was not sent
    agentwatch.flush()
    spent, blocked = _sdk_spans(memory)
    node = next(span for span in memory.spans if span["span_id"] == spent["parent_span_id"])
    assert (node["name"], node["kind"]) == ("writer", "node")
    assert spent["agent_name"] == blocked["agent_name"] == "writer" and spent["trace_id"] == node["trace_id"]
    assert (spent["status"], blocked["status"]) == ("ok", "blocked")


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_node_functions_own_sdk_calls_carry_the_node_and_step(stub_provider: Any, memory: Any, flavour: str) -> None:
    """Found 2026-12-06 by a probe: the openai SDK's own calls in a node lacked the ``langgraph_node`` /
    ``langgraph_step`` attributes LangChain's calls in the same node carry, so filtering a run's LLM calls by node
    missed them. A call after the graph carries none."""
    agentwatch.init(exporters=[memory])
    base_url = stub_provider.openai_base_url

    def plan(state: MessagesState) -> dict[str, Any]:
        return {"messages": [("ai", _ask(base_url, "plan"))]}

    async def aplan(state: MessagesState) -> dict[str, Any]:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0)
        answer = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "p"}])
        return {"messages": [("ai", answer.choices[0].message.content or "")]}

    builder = StateGraph(MessagesState)
    builder.add_node("plan", plan if flavour == "sync" else aplan)
    builder.add_node("write", lambda state: {"messages": [("ai", _ask(base_url, "write"))]})
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "write")
    builder.add_edge("write", END)
    graph = builder.compile()
    if flavour == "sync":
        graph.invoke({"messages": [("user", "hi")]})
    else:
        asyncio.run(graph.ainvoke({"messages": [("user", "hi")]}))
    _ask(base_url, "after")
    agentwatch.flush()
    carried = [(span["attributes"].get("langgraph_node"), span["attributes"].get("langgraph_step"))
               for span in _sdk_spans(memory)]
    assert carried == [("plan", 1), ("write", 2), (None, None)]


def _agent_with_tools(model: BaseChatModel, tools: list[Any]) -> Any:
    builder = StateGraph(MessagesState)
    builder.add_node("agent", lambda state: {"messages": [model.invoke(state["messages"])]})
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile()


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_tools_own_sdk_calls_count_against_its_node(stub_provider: Any, memory: Any, flavour: str) -> None:
    """``init(agents={"tools": ...})``, zero-config: the ToolNode's tool asks the openai SDK itself."""
    agentwatch.init(exporters=[memory], agents={"tools": LIMITED})
    base_url = stub_provider.openai_base_url

    @tool
    def lookup(query: str) -> str:
        """Look something up."""
        return _ask(base_url, query)

    @tool("lookup")
    async def alookup(query: str) -> str:
        """Look something up."""
        client = openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0)
        answer = await client.chat.completions.create(model="gpt-4o-mini",
                                                      messages=[{"role": "user", "content": query}])
        return answer.choices[0].message.content or ""

    graph = _agent_with_tools(ToolCalling(tool="lookup"), [lookup if flavour == "sync" else alookup])
    stub_provider.queue(EXPENSIVE, EXPENSIVE)
    with pytest.raises(CircuitBreakerException) as caught:
        if flavour == "sync":
            graph.invoke({"messages": [("user", "hi")]})
        else:
            asyncio.run(graph.ainvoke({"messages": [("user", "hi")]}))
    assert (caught.value.reason, caught.value.scope_id) == ("budget_per_hour", "tools")
    assert stub_provider.count() == 1
    agentwatch.flush()
    spent = _sdk_spans(memory)[0]
    used = next(span for span in memory.spans if span["span_id"] == spent["parent_span_id"])
    assert (used["name"], used["kind"], spent["agent_name"]) == ("lookup", "tool", "tools")


def test_a_tool_run_with_an_agent_handler_counts_against_that_agent(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    base_url = stub_provider.openai_base_url

    @tool
    def lookup(query: str) -> str:
        """Look something up."""
        return _ask(base_url, query)

    handler = AgentWatchHandler(agent="solo", **LIMITED)
    stub_provider.queue(EXPENSIVE)
    assert lookup.invoke("q1", config={"callbacks": [handler]}) == "a long answer"
    with pytest.raises(CircuitBreakerException) as caught:
        lookup.invoke("q2", config={"callbacks": [handler]})
    assert (caught.value.reason, caught.value.scope_id) == ("budget_per_hour", "solo")
    assert stub_provider.count() == 1
    assert agentwatch.current_span() is None and not agentwatch.instrumentation.get_current_agent_scopes()


@pytest.mark.parametrize("how", ["ainvoke", "astream", "astream, left early"])
def test_after_an_async_graph_the_caller_has_its_own_context_back(stub_provider: Any, memory: Any, how: str) -> None:
    """LangChain ends an async run in a task of its own: nothing of the node may stay in the caller's context (the
    caller's own calls after the graph were once charged to the node and blocked by its budget)."""
    from agentwatch.instrumentation import get_current_agent_scopes

    agentwatch.init(exporters=[memory], agents={"writer": LIMITED})
    client = openai.AsyncOpenAI(base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)

    async def ask(text: str) -> str:
        answer = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
        return answer.choices[0].message.content or ""

    async def writer(state: MessagesState) -> dict[str, Any]:
        return {"messages": [("ai", await ask("draft"))]}

    builder = StateGraph(MessagesState)
    builder.add_node("writer", writer)
    builder.add_edge(START, "writer")
    builder.add_edge("writer", END)
    graph = builder.compile()

    async def main() -> tuple[Any, Any]:
        if how == "ainvoke":
            await graph.ainvoke({"messages": [("user", "hi")]})
        else:
            async for _ in graph.astream({"messages": [("user", "hi")]}, stream_mode="updates"):
                if how.endswith("early"):
                    break
        seen = agentwatch.current_span(), get_current_agent_scopes()
        for _ in range(2):  # the caller's own calls: over the writer's budget if they were the writer's
            await ask("mine")
        return seen

    stub_provider.queue(EXPENSIVE)
    assert asyncio.run(main()) == (None, ())
    agentwatch.flush()
    node_call, *callers = _sdk_spans(memory)
    assert node_call["agent_name"] == "writer" and node_call["parent_span_id"] is not None
    mine = [(span["agent_name"], span["parent_span_id"], span["status"]) for span in callers]
    assert mine == [(None, None, "ok")] * 2


@pytest.mark.parametrize("how", ["invoke", "ainvoke"])
def test_a_tool_another_handler_refuses_at_its_start_leaves_nothing_behind(memory: Any, how: str) -> None:
    """A ``raise_error`` handler refusing the tool's input: LangChain calls no end callback then, so nothing of the
    tool may have been set in the caller's context at its start."""
    from langchain_core.callbacks import BaseCallbackHandler

    from agentwatch.instrumentation import get_current_agent_scopes

    class Guard(BaseCallbackHandler):
        raise_error = True

        def on_tool_start(self, *args: Any, **kwargs: Any) -> None:
            raise PermissionError("refused")

    @tool
    def search(query: str) -> str:
        """Search."""
        return "found"

    agentwatch.init(exporters=[memory])
    config: Any = {"callbacks": [AgentWatchHandler(agent="solo"), Guard()]}
    with pytest.raises(PermissionError):
        if how == "invoke":
            search.invoke("q", config=config)
        else:
            asyncio.run(search.ainvoke("q", config=config))
    assert agentwatch.current_span() is None and get_current_agent_scopes() == ()


def test_a_graph_stopped_at_a_node_start_ends_blocked_not_ok(stub_provider: Any, memory: Any) -> None:
    """The block LangGraph passes up as a GraphBubbleUp (so that no RetryPolicy retries it) ends the graph's span
    ``blocked``, as it ends the node's: it is not an interrupt. The breaker's records of that check (its transition,
    the alert) are in the run's trace, under the node they stopped (they were traces of their own before)."""
    agentwatch.init(exporters=[memory], agents={"writer": LIMITED})

    def writer(state: MessagesState) -> dict[str, Any]:
        return {"messages": [("ai", _ask(stub_provider.openai_base_url, "draft"))]}

    builder = StateGraph(MessagesState)
    builder.add_node("writer", writer)
    builder.add_edge(START, "writer")
    builder.add_edge("writer", END)
    graph = builder.compile()
    stub_provider.queue(EXPENSIVE)
    graph.invoke({"messages": [("user", "hi")]})  # spends the writer's budget
    agentwatch.flush()
    memory.clear()
    with pytest.raises(CircuitBreakerException):
        graph.invoke({"messages": [("user", "again")]})  # stopped at the writer's start
    agentwatch.flush()
    assert {(span["kind"], span["status"]) for span in memory.spans if span["kind"] in ("graph", "node")} == {
        ("graph", "blocked"), ("node", "blocked")}
    node = next(span for span in memory.spans if span["kind"] == "node")
    records = [span for span in memory.spans if span["kind"] in ("breaker", "alert")]
    assert {span["name"] for span in records} == {"breaker.triggered", "alert.budget_per_hour"}
    assert {(span["trace_id"], span["parent_span_id"]) for span in records} == {(node["trace_id"], node["span_id"])}


def test_an_embedding_call_blocked_in_a_node_is_named_an_embedding_call(stub_provider: Any, memory: Any) -> None:
    """The block LangGraph gets is a copy of the SDK's own (a GraphBubbleUp): it says what was blocked as the SDK's
    does. The copy once named every block an LLM call (``e.what``, and ``str(e)``)."""
    client = openai.OpenAI(base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)

    def embed(state: MessagesState) -> dict[str, Any]:
        for text in ("first", "second"):
            client.embeddings.create(model="text-embedding-3-small", input=[text])
        return {"messages": []}

    graph = StateGraph(MessagesState)
    graph.add_node("embed", embed)
    graph.add_edge(START, "embed")
    graph.add_edge("embed", END)
    agentwatch.init(exporters=[memory], max_calls_per_minute=1, block_on_threshold=True)

    with pytest.raises(CircuitBreakerException) as blocked:
        graph.compile().invoke({"messages": []})

    assert blocked.value.what == "embedding call"
    assert str(blocked.value).startswith("AgentWatch blocked the embedding call (global 'global'")
    assert stub_provider.count("/embeddings") == 1
