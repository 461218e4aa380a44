"""A block raised inside an agent's tool reaches the caller of the run, and nothing more is sent. Found by a probe:
AgentChat made it the tool's result (``FunctionExecutionResult(is_error=True)``: the agent's reflection, or the next
speaker of its team, sent it to the model in a paid request) and the run ended as if nothing had happened.

Found 2026-12-13: a run continued after the recovery sent the block's text ("AgentWatch blocked the LLM call ...") to
the model as the blocked call's result; it now reads ``NOT_FINISHED`` (the call did not finish, call it again)."""

from __future__ import annotations

from typing import Any

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TaskResult
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_agentchat.tools import AgentTool, TeamTool
from autogen_core import CancellationToken

import agentwatch
from agentwatch import CircuitBreakerException
from agentwatch.plugins.autogen._tool_blocks import NOT_FINISHED
from tests.plugins.summarizing_tool import summarizer
from tests.stubs.provider_server import Reply

from .conftest import MODEL, chat_requests, spans

pytestmark = pytest.mark.timeout(120)

LIMITED = {"budget_per_hour": 0.05, "block_on_threshold": True}
EXPENSIVE = {"input_tokens": 400_000, "output_tokens": 100_000}  # ~$0.12 for gpt-4o-mini: past LIMITED at once


def _ask(tool: str, **more: Any) -> Reply:
    return Reply(content="", tool_calls=[{"name": tool, "arguments": {"task": "look it up"}}], **more)


def _tool_results_sent(stub: Any, since: int) -> list[list[str]]:
    """Per chat request after the first ``since`` requests: the tool results it carries."""
    bodies = [request.json for request in stub.requests if request.path.endswith("/chat/completions")][since:]
    return [[message["content"] for message in body["messages"] if message["role"] == "tool"] for body in bodies]


async def _spent_helper(stub: Any, model_client: Any) -> AssistantAgent:
    """The agent used as a tool, over its own budget already (one expensive answer)."""
    helper = AssistantAgent("helper", model_client=model_client, description="Looks things up.")
    stub.queue(Reply(content="warmed up", **EXPENSIVE))
    await helper.run(task="warm up")
    await helper.on_reset(CancellationToken())
    return helper


def _tool(kind: str, helper: AssistantAgent) -> Any:
    if kind == "agent_tool":
        return AgentTool(helper, return_value_as_last_message=True)
    inner = RoundRobinGroupChat([helper], termination_condition=MaxMessageTermination(2), name="helpers",
                                description="Looks things up.")
    return TeamTool(inner, name="helpers", description="Looks things up.", return_value_as_last_message=True)


async def _outcome(how: str, runner: Any, task: str | None) -> TaskResult | BaseException:
    try:
        if how == "run_stream":
            result = None
            async for item in runner.run_stream(task=task):
                result = item
            assert isinstance(result, TaskResult)
            return result
        return await runner.run(task=task)
    except CircuitBreakerException as blocked:
        return blocked


@pytest.mark.parametrize("how", ["run", "run_stream", "outer_team"])
@pytest.mark.parametrize("kind", ["agent_tool", "team_tool"])
async def test_a_block_inside_an_agent_used_as_a_tool_reaches_the_caller(memory, stub_provider, model_client,
                                                                         kind, how):
    client = agentwatch.init(exporters=[memory], agents={"helper": LIMITED})
    helper = await _spent_helper(stub_provider, model_client)
    tool = _tool(kind, helper)
    boss = AssistantAgent("boss", model_client=model_client, tools=[tool], reflect_on_tool_use=True)
    runner: Any = boss if how != "outer_team" else RoundRobinGroupChat(
        [boss], termination_condition=MaxMessageTermination(3))
    stub_provider.queue(_ask(tool.name))
    before = chat_requests(stub_provider)

    blocked = await _outcome(how, runner, "find out")

    assert isinstance(blocked, CircuitBreakerException), blocked
    assert (blocked.scope_id, blocked.monitor) == ("helper", client.agents["helper"].monitor)
    assert chat_requests(stub_provider) == before + 1  # the boss's call that asked for the tool; nothing after it
    [tool_span] = spans(memory, "tool")
    assert tool_span["status"] == "blocked"
    assert [span["status"] for span in spans(memory, "agent") if span["name"] == "boss"] == ["blocked"]

    # Recovery: more budget, then the run continues (the model is told the blocked call's result and asks again).
    blocked.monitor.increase_budget(1.0)
    stub_provider.queue(_ask(tool.name), Reply(content="found it"), Reply(content="the answer"))
    recovered = chat_requests(stub_provider)
    after = await _outcome(how, runner, None)
    assert isinstance(after, TaskResult), after
    # The model is not shown the block's text as the tool's answer: it reads that the call did not finish.
    assert _tool_results_sent(stub_provider, recovered)[0] == [NOT_FINISHED]
    # (A TeamTool's team continues its own interrupted run with the new task, as after any error of its agent.)
    assert (type(after.messages[-1]).__name__, after.messages[-1].source) == ("TextMessage", "boss")


async def test_an_agent_blocked_in_a_tool_is_saved_and_loaded_and_goes_on(memory, stub_provider, model_client):
    agentwatch.init(exporters=[memory], agents={"helper": LIMITED})
    helper = await _spent_helper(stub_provider, model_client)
    boss = AssistantAgent("boss", model_client=model_client, tools=[AgentTool(helper)], reflect_on_tool_use=True)
    stub_provider.queue(_ask("helper"))
    with pytest.raises(CircuitBreakerException) as blocked:
        await boss.run(task="find out")

    state = await boss.save_state()
    blocked.value.monitor.increase_budget(1.0)
    again = AssistantAgent("boss", model_client=model_client, tools=[AgentTool(helper)], reflect_on_tool_use=True)
    await again.load_state(state)
    stub_provider.queue(_ask("helper"), Reply(content="found it"), Reply(content="the answer"))
    result = await again.run()
    assert result.messages[-1].content == "the answer"  # type: ignore[union-attr]


def _summarizing_team(stub: Any, model_client: Any, tools: list[Any]) -> RoundRobinGroupChat:
    """``writer`` (over its budget after its first answer, which asks for the tool) and ``critic``, who would answer
    the writer's tool summary."""
    writer = AssistantAgent("writer", model_client=model_client, tools=tools)
    critic = AssistantAgent("critic", model_client=model_client)
    stub.queue(Reply(content="", tool_calls=[{"name": "summarize", "arguments": {"text": "a long text"}}],
                     **EXPENSIVE),
               Reply(content="the critic's answer"))
    return RoundRobinGroupChat([writer, critic], termination_condition=MaxMessageTermination(3))


@pytest.mark.parametrize("flavour", ["def", "async def"])
async def test_a_block_of_a_tools_own_call_stops_the_team(memory, stub_provider, model_client, flavour):
    agentwatch.init(exporters=[memory], agents={"writer": LIMITED})
    team = _summarizing_team(stub_provider, model_client, [summarizer(stub_provider.openai_base_url, flavour, MODEL)])

    with pytest.raises(CircuitBreakerException) as blocked:
        await team.run(task="summarize it")

    assert blocked.value.scope_id == "writer"
    assert chat_requests(stub_provider) == 1  # the critic never got the block's text to send
    assert [span["status"] for span in spans(memory, "tool")] == ["blocked"]
    assert [(span["name"], span["status"]) for span in spans(memory, "agent")] == [("writer", "blocked")]
    blocked.value.monitor.increase_budget(1.0)
    stub_provider.queue(Reply(content="the writer again"), Reply(content="the critic again"))
    assert isinstance(await team.run(), TaskResult)  # the team continues


async def test_a_block_the_tool_handles_itself_stays_handled(memory, stub_provider, model_client):
    agentwatch.init(exporters=[memory], agents={"writer": LIMITED})
    team = _summarizing_team(stub_provider, model_client,
                             [summarizer(stub_provider.openai_base_url, "async def", MODEL, catch=True)])
    result = await team.run(task="summarize it")
    assert [getattr(message, "content", None) for message in result.messages][-1] == "the critic's answer"
    assert [span["status"] for span in spans(memory, "tool")] == ["ok"]


async def test_one_blocked_call_among_parallel_tool_calls(memory, stub_provider, model_client):
    """The other calls of the turn finish (their results are in the agent's context with the block's); then the
    block is raised, before the agent's next request."""
    client = agentwatch.init(exporters=[memory], agents={"helper": LIMITED})
    helper = await _spent_helper(stub_provider, model_client)
    looked_up: list[str] = []

    async def lookup(task: str) -> str:
        """Look it up in the index."""
        looked_up.append(task)
        return "from the index"

    boss = AssistantAgent("boss", model_client=model_client, tools=[AgentTool(helper), lookup],
                          reflect_on_tool_use=True)
    stub_provider.queue(Reply(content="", tool_calls=[{"name": "lookup", "arguments": {"task": "a"}},
                                                      {"name": "helper", "arguments": {"task": "b"}},
                                                      {"name": "lookup", "arguments": {"task": "c"}}]))
    before = chat_requests(stub_provider)
    seen: list[str] = []
    boss_events: list[Any] = []
    with pytest.raises(CircuitBreakerException):
        async for item in boss.run_stream(task="find out"):
            seen.append(type(item).__name__)
            boss_events.append(item)
    assert chat_requests(stub_provider) == before + 1
    assert sorted(looked_up) == ["a", "c"]
    assert seen[-1] == "ToolCallExecutionEvent"  # every call's result, then the block
    assert sorted(span["status"] for span in spans(memory, "tool")) == ["blocked", "ok", "ok"]
    assert "AgentWatch blocked" in str(boss_events[-1].content)  # the program's event says what happened

    # Continued after the recovery: every call keeps its result (the provider wants each tool_call id answered), the
    # blocked one's saying it did not finish; the model calls the tool again.
    client.agents["helper"].monitor.increase_budget(1.0)
    stub_provider.queue(_ask("helper"), Reply(content="found it"), Reply(content="the answer"))
    recovered = chat_requests(stub_provider)
    result = await boss.run()
    assert result.messages[-1].content == "the answer"  # type: ignore[union-attr]
    assert _tool_results_sent(stub_provider, recovered)[0] == ["from the index", NOT_FINISHED, "from the index"]


@pytest.mark.parametrize("how", ["run", "run_stream"])
async def test_a_block_inside_a_langgraph_graph_used_as_a_tool_reaches_the_teams_caller(memory, stub_provider,
                                                                                       model_client, how):
    """Another framework's block (LangGraph's ``GraphCircuitBreakerException``, a ``CircuitBreakerException``) raised
    in a team's tool: AgentChat serialises it under its own class name, which once kept it from being recognised, and
    the caller got ``RuntimeError("GraphCircuitBreakerException: ...")``."""
    from langgraph.checkpoint.memory import InMemorySaver

    from tests.plugins.langchain.graphs import Workflow

    agentwatch.init(exporters=[memory], agents={"planner": {"budget_per_hour": 0.0, "block_on_threshold": True}})
    workflow = Workflow()
    graph = workflow.build(InMemorySaver())

    def research(topic: str) -> str:
        """Research a topic with the team's research graph."""
        return str(graph.invoke({"log": []}, {"configurable": {"thread_id": topic}}))

    writer = AssistantAgent("writer", model_client=model_client, tools=[research])
    team = RoundRobinGroupChat([writer], termination_condition=MaxMessageTermination(3))
    stub_provider.queue(Reply(content="", tool_calls=[{"name": "research", "arguments": {"topic": "bees"}}]))

    outcome = await _outcome(how, team, "research bees")

    assert isinstance(outcome, CircuitBreakerException), outcome
    assert outcome.scope_id == "planner"
    assert workflow.runs == []  # stopped at the graph's first node, before its model call
    assert chat_requests(stub_provider) == 1  # the writer's tool call, nothing after the block
