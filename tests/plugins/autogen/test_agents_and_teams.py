"""AssistantAgent and teams: span trees, agent scopes, tools, and blocks reaching the caller intact."""

from __future__ import annotations

from typing import Any

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.teams import RoundRobinGroupChat, SelectorGroupChat, Swarm
from autogen_core import SingleThreadedAgentRuntime
from autogen_core.tools import FunctionTool

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .conftest import MODEL, by_id, chat_requests, spans


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def two_agent_team(model_client: Any, turns: int = 3, **team: Any) -> RoundRobinGroupChat:
    writer = AssistantAgent("writer", model_client=model_client)
    critic = AssistantAgent("critic", model_client=model_client, model_client_stream=True)
    return RoundRobinGroupChat([writer, critic], termination_condition=MaxMessageTermination(turns), **team)


async def test_assistant_agent_tree_with_tool_call(memory, stub_provider, model_client):
    agentwatch.init(exporters=[memory], capture_messages=True)
    stub_provider.queue(
        Reply(content="", tool_calls=[{"name": "add", "arguments": {"a": 2, "b": 3}}], input_tokens=90,
              output_tokens=12, cached_tokens=64),
        Reply(content="The sum is 5.", input_tokens=120, output_tokens=6),
    )
    agent = AssistantAgent("calculator", model_client=model_client, reflect_on_tool_use=True,
                           tools=[FunctionTool(add, description="Add two integers.")])

    result = await agent.run(task="What is 2 + 3?")

    assert result.messages[-1].content == "The sum is 5."
    tree = by_id(memory)
    [agent_span] = spans(memory, "agent")
    assert (agent_span["name"], agent_span["agent_name"]) == ("calculator", "calculator")
    assert agent_span["parent_span_id"] is None
    llm_spans = spans(memory, "llm")
    assert len(llm_spans) == chat_requests(stub_provider) == 2
    assert all(tree[span["parent_span_id"]] is agent_span for span in llm_spans)
    assert all(span["agent_name"] == "calculator" for span in llm_spans)
    first, second = llm_spans
    assert (first["input_tokens"], first["output_tokens"], first["cached_input_tokens"]) == (90, 12, 64)
    assert first["attributes"]["finish_reason"] == "tool_calls"
    assert first["attributes"]["tool_calls"] == ["add"]
    assert (second["input_tokens"], second["output_tokens"]) == (120, 6)
    assert first["cost_usd"] > 0 and second["cost_usd"] > 0
    [tool] = spans(memory, "tool")
    assert (tool["name"], tool["input"], tool["output"]) == ("add", {"a": 2, "b": 3}, "5")
    assert tree[tool["parent_span_id"]] is agent_span
    assert first["end_time_unix_nano"] <= tool["start_time_unix_nano"] <= second["start_time_unix_nano"]


async def test_round_robin_team_tree(memory, stub_provider, model_client):
    # The critic streams: the stub stands in for OpenAI's API, whose streams the core asks for usage.
    agentwatch.init(exporters=[memory], stream_usage=[stub_provider.openai_base_url])
    stub_provider.queue(Reply(content="draft", input_tokens=30, output_tokens=4),
                        Reply(content="looks good", input_tokens=50, output_tokens=3))

    result = await two_agent_team(model_client).run(task="Write a haiku")

    assert [message.source for message in result.messages] == ["user", "writer", "critic"]
    tree = by_id(memory)
    [team] = spans(memory, "chain")
    assert team["name"] == team["attributes"]["autogen.team_type"] == "RoundRobinGroupChat"
    agents = spans(memory, "agent")
    assert [(span["name"], span["parent_span_id"]) for span in agents] == [("writer", team["span_id"]),
                                                                           ("critic", team["span_id"])]
    llm_spans = spans(memory, "llm")
    assert len(llm_spans) == chat_requests(stub_provider) == 2
    assert [(tree[span["parent_span_id"]]["name"], span["agent_name"], span["input_tokens"], span["model"])
            for span in llm_spans] == [("writer", "writer", 30, MODEL), ("critic", "critic", 50, MODEL)]
    assert llm_spans[1]["attributes"]["streaming"] is True
    assert {span["trace_id"] for span in spans(memory) if span["kind"] in ("chain", "agent", "llm")} == {
        team["trace_id"]}


async def test_block_inside_round_robin_reaches_caller_as_circuit_breaker_exception(memory, stub_provider,
                                                                                     model_client):
    # One call's cost exceeds the budget: the writer's call is allowed, the critic's is blocked.
    agentwatch.init(exporters=[memory], budget_per_hour=1e-6, block_on_threshold=True)
    team = two_agent_team(model_client)

    with pytest.raises(CircuitBreakerException) as blocked:
        await team.run(task="Write a haiku")

    assert chat_requests(stub_provider) == 1  # the blocked call never reached the provider
    assert blocked.value.monitor is agentwatch.get_client().monitor
    assert blocked.value.reason == "budget_per_hour"
    [team_span] = spans(memory, "chain")
    assert team_span["status"] == "blocked"
    assert [span["status"] for span in spans(memory, "llm")] == ["ok", "blocked"]

    # Recovery: raise the budget and run again without a task, which resumes the conversation (the
    # round-robin manager had already passed the turn to the critic, so the writer speaks next).
    blocked.value.monitor.increase_budget(1.0)
    result = await team.run()
    assert [message.source for message in result.messages] == ["writer"]
    assert chat_requests(stub_provider) == 2
    assert [span["status"] for span in spans(memory, "llm")] == ["ok", "blocked", "ok"]


async def test_block_on_a_per_agent_budget_names_the_agent(memory, stub_provider, model_client):
    critic_limits = {"budget_per_hour": 1e-6, "block_on_threshold": True}
    agentwatch.init(exporters=[memory], agents={"critic": critic_limits})
    team = two_agent_team(model_client, turns=5)  # writer, critic, writer, critic

    with pytest.raises(CircuitBreakerException) as blocked:
        await team.run(task="Write a haiku")

    # The critic spent over its own budget on its first call; the writer's own calls were not limited.
    assert (blocked.value.scope, blocked.value.monitor.name) == ("agent", "critic")
    assert chat_requests(stub_provider) == 3
    assert [(span["agent_name"], span["status"]) for span in spans(memory, "llm")] == [
        ("writer", "ok"), ("critic", "ok"), ("writer", "ok"), ("critic", "blocked")]


async def test_block_of_the_selector_call_in_selector_group_chat(memory, stub_provider, model_client):
    from autogen_core.models import UserMessage

    agentwatch.init(exporters=[memory], max_calls_per_minute=1, block_on_threshold=True)
    await model_client.create([UserMessage(content="warm-up", source="user")])  # the minute's one call
    team = SelectorGroupChat(
        [AssistantAgent("writer", model_client=model_client, description="Writes drafts."),
         AssistantAgent("critic", model_client=model_client, description="Reviews drafts.")],
        model_client=model_client, termination_condition=MaxMessageTermination(2))

    with pytest.raises(CircuitBreakerException) as blocked:
        await team.run(task="Write a haiku")  # the group chat manager's speaker selection is blocked

    assert blocked.value.reason == "max_calls_per_minute"
    assert chat_requests(stub_provider) == 1
    [team_span] = spans(memory, "chain")
    selection = spans(memory, "llm")[1]
    assert (selection["status"], selection["agent_name"], selection["parent_span_id"]) == (
        "blocked", None, team_span["span_id"])

    blocked.value.monitor.update(max_calls_per_minute=10)
    blocked.value.monitor.reset_windows()
    stub_provider.queue(Reply(content="writer"), Reply(content="a first draft"))
    result = await team.run()
    assert [message.source for message in result.messages] == ["writer"]
    assert chat_requests(stub_provider) == 3


async def test_block_in_a_team_on_a_runtime_started_by_the_application(memory, stub_provider, model_client):
    agentwatch.init(exporters=[memory], budget_per_hour=1e-6, block_on_threshold=True)
    runtime = SingleThreadedAgentRuntime()
    runtime.start()  # before the team run: its tasks do not inherit the run's context
    try:
        team = two_agent_team(model_client, runtime=runtime)
        with pytest.raises(CircuitBreakerException) as blocked:
            await team.run(task="Write a haiku")
    finally:
        await runtime.stop()
    assert blocked.value.monitor is agentwatch.get_client().monitor
    assert chat_requests(stub_provider) == 1


async def test_nested_team_block_reaches_the_outer_caller(memory, stub_provider, model_client):
    agentwatch.init(exporters=[memory], budget_per_hour=1e-6, block_on_threshold=True)
    inner = two_agent_team(model_client, turns=3)
    outer = RoundRobinGroupChat([inner, AssistantAgent("editor", model_client=model_client)],
                                termination_condition=MaxMessageTermination(4))

    with pytest.raises(CircuitBreakerException):
        await outer.run(task="Write a haiku")

    assert chat_requests(stub_provider) == 1
    assert [span["status"] for span in spans(memory, "chain")] == ["blocked", "blocked"]


async def test_no_agent_or_team_spans_and_no_context_left_after_shutdown(memory, stub_provider, model_client):
    agentwatch.init(exporters=[memory])
    agentwatch.shutdown()

    await two_agent_team(model_client).run(task="Write a haiku")

    assert [span for span in spans(memory) if span["kind"] != "process"] == []
    assert agentwatch.current_span() is None


def _selector_team(model_client: Any) -> SelectorGroupChat:
    return SelectorGroupChat(
        [AssistantAgent("writer", model_client=model_client, description="Writes drafts."),
         AssistantAgent("critic", model_client=model_client, description="Reviews drafts.")],
        model_client=model_client, termination_condition=MaxMessageTermination(3))


def _swarm_team(model_client: Any) -> Swarm:
    writer = AssistantAgent("writer", model_client=model_client, handoffs=["critic"])
    critic = AssistantAgent("critic", model_client=model_client, model_client_stream=True)
    return Swarm([writer, critic], termination_condition=MaxMessageTermination(3))


# The first call costs $0.021 of gpt-4o-mini; the second's worst case (its prompt plus 16,384 output tokens, about
# $0.0099) does not fit in the $0.004 left, so the HTTP layer refuses it inside the openai SDK, below AutoGen.
HARD_BUDGET = 0.025
BIG_REPLY = {"input_tokens": 100_000, "output_tokens": 10_000}


@pytest.mark.parametrize(("make_team", "first", "second"), [
    pytest.param(two_agent_team, "a draft", "a review", id="round_robin-streaming_critic"),
    pytest.param(_selector_team, "writer", "a draft", id="selector-agent_after_selection"),
    pytest.param(_swarm_team, "a draft", "a second draft", id="swarm"),
])
async def test_a_hard_budget_refusal_inside_a_team_reaches_the_caller_as_circuit_breaker_exception(
        memory, stub_provider, model_client, make_team, first, second):
    agentwatch.init(exporters=[memory], budget_per_hour=HARD_BUDGET, hard_budget=True)
    stub_provider.queue(Reply(content=first, **BIG_REPLY), Reply(content=second), Reply(content="more"))
    team = make_team(model_client)

    with pytest.raises(CircuitBreakerException) as blocked:
        await team.run(task="Write a haiku")

    assert blocked.value.reason == "hard_budget"
    assert blocked.value.monitor is agentwatch.get_client().monitor
    assert chat_requests(stub_provider) == 1  # the refused call was never sent
    [team_span] = spans(memory, "chain")
    assert team_span["status"] == "blocked"
    assert [span["status"] for span in spans(memory, "llm")] == ["ok", "blocked"]

    # Recovery as after a pre-call block: raise the budget and continue the conversation.
    blocked.value.monitor.increase_budget(1.0)
    result = await team.run()
    assert result.messages and chat_requests(stub_provider) >= 2
