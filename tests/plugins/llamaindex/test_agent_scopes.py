"""Per-agent limits by agent ``name`` (``init(agents={...})``) in LlamaIndex agents: an ``AgentWorkflow`` that
hands off between agents, a ``FunctionAgent`` and a ``ReActAgent`` on their own, awaited or streamed. The real
``OpenAI`` LLM of llama-index talks to the loopback stub; a block reaches the caller of ``run`` before the
request leaves, and the monitor it carries lets the next run through."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from tests.plugins.llamaindex.conftest import llm_spans, openai_llm
from tests.stubs.provider_server import Reply

_TOOL = Reply(tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 2}}])
_HANDOFF = Reply(tool_calls=[{"name": "handoff", "arguments": {"to_agent": "writer", "reason": "draft it"}}])
_FINAL = Reply(content="final text")
_REACT_ANSWER = Reply(content="Thought: I can answer without any more tools.\nAnswer: forty-two")


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def _team(stub: Any, streaming: bool = False) -> Any:
    """Researcher (a tool, may hand off to the writer) and writer, each a ``FunctionAgent``."""
    from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent

    researcher = FunctionAgent(name="researcher", description="Finds facts.", tools=[add], llm=openai_llm(stub),
                               can_handoff_to=["writer"], streaming=streaming)
    writer = FunctionAgent(name="writer", description="Writes the answer.", tools=[], llm=openai_llm(stub),
                           streaming=streaming)
    return AgentWorkflow(agents=[researcher, writer], root_agent="researcher")


async def _awaited(workflow: Any) -> str:
    return str(await workflow.run(user_msg="add 1 and 2, then write it up"))


async def _streamed(workflow: Any, seen: list[tuple[str, str | None]]) -> str:
    handler = workflow.run(user_msg="add 1 and 2, then write it up")
    async for event in handler.stream_events():
        seen.append((type(event).__name__, getattr(event, "current_agent_name", None)))
    return str(await handler)


def _block_then_recover(workflow: Any, mode: str, seen: list[tuple[str, str | None]],
                        before_retry: Any) -> tuple[CircuitBreakerException, str]:
    """Run until blocked, ``before_retry(blocked)``, run again: in one event loop, as a program would (the
    LLM's async HTTP client belongs to the loop that first used it)."""
    async def once(events: list[tuple[str, str | None]]) -> str:
        return await (_awaited(workflow) if mode == "awaited" else _streamed(workflow, events))

    async def main() -> tuple[CircuitBreakerException, str]:
        with pytest.raises(CircuitBreakerException) as caught:
            await once(seen)
        before_retry(caught.value)
        return caught.value, await once([])

    return asyncio.run(main())


def _agents_of_llm_spans(memory: agentwatch.InMemoryExporter) -> list[tuple[str | None, str]]:
    return [(span["agent_name"], span["status"]) for span in llm_spans(memory.spans)]


@pytest.mark.parametrize("mode", ["awaited", "streamed"])
def test_agent_workflow_blocks_the_agent_by_name_then_recovers(mode: str, memory: agentwatch.InMemoryExporter,
                                                               stub_provider: Any) -> None:
    agentwatch.init(exporters=[memory], agents={"writer": {"budget_per_hour": 0.0, "block_on_threshold": True}})
    stub_provider.queue(_TOOL, _HANDOFF)  # the writer's request is blocked: no reply of its own
    workflow = _team(stub_provider, streaming=mode == "streamed")
    seen: list[tuple[str, str | None]] = []
    sent_before_retry: list[int] = []

    def recover(blocked: CircuitBreakerException) -> None:
        sent_before_retry.append(stub_provider.count("/chat/completions"))
        blocked.monitor.increase_budget(1.0)
        stub_provider.queue(_TOOL, _HANDOFF, _FINAL)

    blocked, answer = _block_then_recover(workflow, mode, seen, recover)

    assert type(blocked) is CircuitBreakerException
    assert (blocked.reason, blocked.scope, blocked.scope_id) == ("budget_per_hour", "agent", "writer")
    # The researcher (no limits of its own) made both of its requests; the writer's never left.
    assert sent_before_retry == [2]
    if mode == "streamed":
        assert ("AgentInput", "writer") in seen
        assert ("AgentStream", "researcher") in seen and ("AgentStream", "writer") not in seen
    assert answer == "final text"
    assert stub_provider.count("/chat/completions") == 5
    agentwatch.flush()
    assert _agents_of_llm_spans(memory) == [("researcher", "ok"), ("researcher", "ok"), ("writer", "blocked"),
                                            ("researcher", "ok"), ("researcher", "ok"), ("writer", "ok")]
    # Tool calls (the handoff too) are the work of the agent whose turn it is.
    assert [(span["name"], span["agent_name"]) for span in memory.by_kind("tool")] == \
        [("add", "researcher"), ("handoff", "researcher")] * 2
    assert [span["status"] for span in memory.spans if span["kind"] == "graph"] == ["blocked", "ok"]


def test_agent_workflow_counts_each_agent_apart(memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    agentwatch.init(exporters=[memory],
                    agents={"researcher": {"max_calls_per_minute": 2, "block_on_threshold": True},
                            "writer": {"max_calls_per_minute": 1, "block_on_threshold": True}})
    stub_provider.queue(_TOOL, _HANDOFF, _FINAL)

    assert asyncio.run(_awaited(_team(stub_provider))) == "final text"

    agents = agentwatch.get_state()["monitors"]["agents"]
    assert agents["researcher"]["calls_last_minute"] == 2
    assert agents["writer"]["calls_last_minute"] == 1
    # The next run's first request is the researcher's third this minute.
    with pytest.raises(CircuitBreakerException) as caught:
        asyncio.run(_awaited(_team(stub_provider)))
    assert (caught.value.reason, caught.value.scope_id) == ("max_calls_per_minute", "researcher")
    assert stub_provider.count("/chat/completions") == 3


def test_agent_workflow_is_unchanged_when_no_limit_is_hit(memory: agentwatch.InMemoryExporter,
                                                           stub_provider: Any) -> None:
    def run() -> tuple[str, list[tuple[str, str | None]], list[str]]:
        stub_provider.clear()
        stub_provider.queue(_TOOL, _HANDOFF, _FINAL)
        seen: list[tuple[str, str | None]] = []
        answer = asyncio.run(_streamed(_team(stub_provider), seen))
        # The stub numbers its tool-call ids across runs.
        bodies = [re.sub(r"call_stub_\d+_", "call_", json.dumps(request.json, sort_keys=True))
                  for request in stub_provider.requests]
        return answer, seen, bodies

    without = run()
    agentwatch.init(exporters=[memory], agents={"researcher": {"budget_per_hour": 5.0},
                                                "writer": {"budget_per_hour": 5.0}})
    with_agentwatch = run()

    assert with_agentwatch == without
    assert without[0] == "final text" and len(without[2]) == 3


@pytest.mark.parametrize("mode", ["awaited", "streamed"])
def test_function_agent_blocks_by_name_then_recovers(mode: str, memory: agentwatch.InMemoryExporter,
                                                     stub_provider: Any) -> None:
    from llama_index.core.agent.workflow import FunctionAgent

    agentwatch.init(exporters=[memory], agents={"calc": {"budget_per_hour": 0.0, "block_on_threshold": True}})
    agent = FunctionAgent(name="calc", tools=[add], llm=openai_llm(stub_provider), streaming=mode == "streamed")
    sent_before_retry: list[int] = []

    def recover(blocked: CircuitBreakerException) -> None:
        sent_before_retry.append(len(stub_provider.requests))
        blocked.monitor.increase_budget(1.0)
        stub_provider.queue(_TOOL, _FINAL)

    blocked, answer = _block_then_recover(agent, mode, [], recover)

    assert (blocked.scope, blocked.scope_id) == ("agent", "calc")
    assert sent_before_retry == [0]
    assert answer == "final text"
    assert stub_provider.count("/chat/completions") == 2
    agentwatch.flush()
    assert _agents_of_llm_spans(memory) == [("calc", "blocked"), ("calc", "ok"), ("calc", "ok")]


@pytest.mark.parametrize("mode", ["awaited", "streamed"])
def test_react_agent_blocks_by_name_then_recovers(mode: str, memory: agentwatch.InMemoryExporter,
                                                  stub_provider: Any) -> None:
    from llama_index.core.agent.workflow import ReActAgent

    agentwatch.init(exporters=[memory], agents={"thinker": {"budget_per_hour": 0.0, "block_on_threshold": True}})
    agent = ReActAgent(name="thinker", tools=[add], llm=openai_llm(stub_provider), streaming=mode == "streamed")
    sent_before_retry: list[int] = []

    def recover(blocked: CircuitBreakerException) -> None:
        sent_before_retry.append(len(stub_provider.requests))
        blocked.monitor.increase_budget(1.0)
        stub_provider.queue(_REACT_ANSWER)

    blocked, answer = _block_then_recover(agent, mode, [], recover)

    assert (blocked.scope, blocked.scope_id) == ("agent", "thinker")
    assert sent_before_retry == [0]
    assert answer == "forty-two"
    agentwatch.flush()
    assert _agents_of_llm_spans(memory) == [("thinker", "blocked"), ("thinker", "ok")]


def test_react_agents_in_a_workflow_are_scoped_by_name(memory: agentwatch.InMemoryExporter,
                                                       stub_provider: Any) -> None:
    from llama_index.core.agent.workflow import AgentWorkflow, ReActAgent

    agentwatch.init(exporters=[memory], agents={"planner": {"budget_per_hour": 0.0, "block_on_threshold": True}})
    planner = ReActAgent(name="planner", description="Plans.", tools=[add], llm=openai_llm(stub_provider))
    workflow = AgentWorkflow(agents=[planner], root_agent="planner")
    sent_before_retry: list[int] = []

    def recover(blocked: CircuitBreakerException) -> None:
        sent_before_retry.append(len(stub_provider.requests))
        blocked.monitor.increase_budget(1.0)
        stub_provider.queue(_REACT_ANSWER)

    blocked, answer = _block_then_recover(workflow, "awaited", [], recover)

    assert blocked.scope_id == "planner" and sent_before_retry == [0]
    assert answer == "forty-two"
    agentwatch.flush()
    assert _agents_of_llm_spans(memory) == [("planner", "blocked"), ("planner", "ok")]


def test_a_run_resumed_from_a_saved_context_keeps_the_paused_tools_calls_in_its_agents_scope(
        memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    """Found by a probe: an ``AgentWorkflow`` paused for a human (its context saved, the run cancelled, as LlamaIndex's
    docs show) and resumed from ``Context.from_dict`` starts with the paused tool, before any event names the agent:
    the LLM call that tool made was recorded with no agent and never checked against that agent's limits."""
    from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent
    from llama_index.core.workflow import Context, HumanResponseEvent, InputRequiredEvent

    agentwatch.init(exporters=[memory], agents={"researcher": {"max_calls_per_minute": 2, "block_on_threshold": True}})
    summarizer = openai_llm(stub_provider)

    async def approve_and_summarize(ctx: Context, text: str) -> str:
        """Ask a human to approve the text, then summarize it."""
        await ctx.wait_for_event(HumanResponseEvent, waiter_id="approve", waiter_event=InputRequiredEvent(prefix="ok?"))
        return (await summarizer.acomplete(f"summarize {text}")).text

    # LlamaIndex finds the tool's context by its annotation's type, which this module's string annotations hide.
    approve_and_summarize.__annotations__["ctx"] = Context
    researcher = FunctionAgent(name="researcher", description="Finds facts.", tools=[approve_and_summarize],
                               llm=openai_llm(stub_provider), streaming=False)
    workflow = AgentWorkflow(agents=[researcher])
    stub_provider.queue(Reply(tool_calls=[{"name": "approve_and_summarize", "arguments": {"text": "bees"}}]),
                        Reply(content="a summary"),  # the tool's own call, the researcher's second
                        _FINAL)  # the researcher's third call: blocked

    async def main() -> CircuitBreakerException:
        handler = workflow.run(user_msg="summarize bees once I approve")
        async for event in handler.stream_events():
            if isinstance(event, InputRequiredEvent):
                saved = handler.ctx.to_dict()
                await handler.cancel_run()
                break
        handler = workflow.run(ctx=Context.from_dict(workflow, saved))
        handler.ctx.send_event(HumanResponseEvent(response="yes"))
        with pytest.raises(CircuitBreakerException) as caught:
            await handler
        return caught.value

    blocked = asyncio.run(main())

    assert (blocked.scope_id, blocked.reason) == ("researcher", "max_calls_per_minute")
    assert stub_provider.count("/chat/completions") == 2
    agentwatch.flush()
    assert _agents_of_llm_spans(memory) == [("researcher", "ok"), ("researcher", "ok"), ("researcher", "blocked")]
