"""A block inside a tool of a LlamaIndex agent (an agent used as a tool, out of its own budget) reaches the caller of
``await handler`` as ``CircuitBreakerException``: LlamaIndex would hand it to the model as the tool's error and go on.
Any other error of a tool is still the tool's output, as without AgentWatch."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import agentwatch
from tests.plugins.llamaindex.conftest import llm_spans, openai_llm
from tests.stubs.provider_server import Reply


def _ask(question: str) -> Reply:
    return Reply(content="", tool_calls=[{"name": "ask_researcher", "arguments": {"question": question}}],
                 input_tokens=100, output_tokens=10)


def _boss(llm: Any, tool: Any, workflow: bool) -> Any:
    from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent

    boss = FunctionAgent(name="Boss", description="boss", tools=[tool], llm=llm, streaming=False)
    return AgentWorkflow(agents=[boss]) if workflow else boss


@pytest.mark.parametrize("workflow", [False, True], ids=["FunctionAgent", "AgentWorkflow"])
def test_block_inside_an_agent_used_as_a_tool_reaches_the_caller(workflow: bool, memory: agentwatch.InMemoryExporter,
                                                                  stub_provider: Any) -> None:
    from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult

    agentwatch.init(exporters=[memory], agents={"Researcher": {"budget_per_hour": 0.00001, "block_on_threshold": True}})
    llm = openai_llm(stub_provider)
    researcher = FunctionAgent(name="Researcher", description="researches", tools=[], llm=llm, streaming=False)

    async def ask_researcher(question: str) -> str:
        """Ask the research agent a question."""
        return str(await researcher.run(user_msg=question))

    boss = _boss(llm, ask_researcher, workflow)
    stub_provider.queue(_ask("bees?"), Reply(content="Bees dance.", input_tokens=100, output_tokens=5),  # over budget
                        _ask("ants?"),  # the researcher is blocked before its request
                        Reply(content="Final answer."))  # never asked for

    async def run() -> tuple[list[Any], agentwatch.CircuitBreakerException]:
        handler = boss.run(user_msg="research insects")
        results = [event async for event in handler.stream_events() if isinstance(event, ToolCallResult)]
        with pytest.raises(agentwatch.CircuitBreakerException) as caught:
            await handler
        return results, caught.value

    results, blocked = asyncio.run(run())

    assert (blocked.scope_id, blocked.reason) == ("researcher", "budget_per_hour")
    assert blocked.monitor is not None
    # The first answer went to the model; the block was no tool output, and nothing was sent after it.
    assert [(result.tool_output.content, result.tool_output.is_error) for result in results] == [("Bees dance.", False)]
    assert stub_provider.count("/chat/completions") == 3
    agentwatch.flush()
    assert [span["status"] for span in llm_spans(memory.spans)] == ["ok", "ok", "ok", "blocked"]
    [tool_span] = [span for span in memory.spans if span["kind"] == "tool" and span["status"] == "blocked"]
    assert tool_span["name"] == "ask_researcher"


def test_other_tool_errors_still_go_to_the_model(memory: agentwatch.InMemoryExporter, stub_provider: Any) -> None:
    from llama_index.core.agent.workflow import ToolCallResult

    agentwatch.init(exporters=[memory])

    async def ask_researcher(question: str) -> str:
        """Ask the research agent a question."""
        raise ValueError("no researcher today")

    boss = _boss(openai_llm(stub_provider), ask_researcher, workflow=False)
    stub_provider.queue(_ask("bees?"), Reply(content="Nobody knows."))

    async def run() -> tuple[list[Any], Any]:
        handler = boss.run(user_msg="research insects")
        results = [event async for event in handler.stream_events() if isinstance(event, ToolCallResult)]
        return results, await handler

    results, answer = asyncio.run(run())

    assert [(result.tool_output.content, result.tool_output.is_error) for result in results] == \
        [("no researcher today", True)]
    assert str(answer) == "Nobody knows."
    assert stub_provider.count("/chat/completions") == 2


def test_a_tool_waiting_for_a_human_is_paused_not_failed(memory: agentwatch.InMemoryExporter,
                                                         stub_provider: Any) -> None:
    """Found by a probe: the human-in-the-loop tool of LlamaIndex's docs (``await ctx.wait_for_event(...)``) was
    recorded as a failed tool, ``WaitingForEvent``, every time it waited: LlamaIndex pauses it by raising that
    exception through it, then calls it again with the answer."""
    from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
    from llama_index.core.workflow import Context, HumanResponseEvent, InputRequiredEvent

    agentwatch.init(exporters=[memory])

    async def dangerous_task(ctx: Context) -> str:
        """A dangerous task that requires human confirmation."""
        answer = await ctx.wait_for_event(HumanResponseEvent, waiter_id="confirm",
                                          waiter_event=InputRequiredEvent(prefix="Proceed? "))
        return "done" if answer.response == "yes" else "cancelled"

    # LlamaIndex finds the tool's context by its annotation's type, which this module's string annotations hide.
    dangerous_task.__annotations__["ctx"] = Context

    agent = FunctionAgent(name="Operator", tools=[dangerous_task], llm=openai_llm(stub_provider), streaming=False)
    stub_provider.queue(Reply(content="", tool_calls=[{"name": "dangerous_task", "arguments": {}}]),
                        Reply(content="It is done."))

    async def run() -> tuple[list[Any], Any]:
        handler = agent.run(user_msg="do the dangerous task")
        results = []
        async for event in handler.stream_events():
            if isinstance(event, InputRequiredEvent):
                handler.ctx.send_event(HumanResponseEvent(response="yes"))
            elif isinstance(event, ToolCallResult):
                results.append((event.tool_output.content, event.tool_output.is_error))
        return results, await handler

    results, answer = asyncio.run(run())

    assert results == [("done", False)] and str(answer) == "It is done."
    agentwatch.flush()
    tools = [span for span in memory.spans if span["kind"] == "tool"]
    assert [(span["name"], span["status"]) for span in tools] == [("dangerous_task", "ok")] * 2
    assert [span["attributes"].get("llamaindex.waiting_for") for span in tools] == ["HumanResponseEvent", None]
    assert all("error.type" not in span["attributes"] for span in memory.spans)
