"""After a block, every team kind recovers exactly as after an ordinary provider error: continue, reset, run.

Each scenario runs twice on the same script of stub replies: once with the k-th model call blocked (a budget
that the first k-1 calls use up), once with the provider answering the k-th call with an error. A blocked
call sends nothing, so the error run gets one extra (error) reply in its place; everything else is equal.
A hang fails the test (pytest-timeout) instead of blocking the suite.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TaskResult, Team
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.teams import MagenticOneGroupChat, RoundRobinGroupChat, SelectorGroupChat, Swarm
from genai_prices import Usage, calc_price

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .conftest import MODEL, chat_requests, spans

pytestmark = pytest.mark.timeout(180)

CALL_COST = float(calc_price(Usage(input_tokens=10, output_tokens=5), MODEL, provider_id="openai").total_price)


def _ledger(done: bool) -> str:
    def entry(answer: Any) -> dict[str, Any]:
        return {"reason": "because", "answer": answer}

    return json.dumps({"is_request_satisfied": entry(done), "is_progress_being_made": entry(True),
                       "is_in_loop": entry(False), "instruction_or_question": entry("Write it."),
                       "next_speaker": entry("writer")})


def _agents(model_client: Any, **writer: Any) -> list[AssistantAgent]:
    return [AssistantAgent("writer", model_client=model_client, description="Writes drafts.", **writer),
            AssistantAgent("critic", model_client=model_client, description="Reviews drafts.",
                           model_client_stream=True)]


def round_robin(model_client: Any) -> Team:
    return RoundRobinGroupChat(_agents(model_client), termination_condition=MaxMessageTermination(3))


def selector(model_client: Any) -> Team:
    return SelectorGroupChat(_agents(model_client), model_client=model_client,
                             termination_condition=MaxMessageTermination(3))


def swarm(model_client: Any) -> Team:
    return Swarm(_agents(model_client, handoffs=["critic"]), termination_condition=MaxMessageTermination(3))


def magentic_one(model_client: Any) -> Team:
    return MagenticOneGroupChat(_agents(model_client)[:1], model_client=model_client, max_turns=4)


# One fresh run's model calls, repeated: a conversation makes the same calls again when continued.
SELECTOR_SCRIPT = ["writer", "a draft", "critic", "a review"]
MAGENTIC_SCRIPT = ["the facts", "the plan", _ledger(False), "a draft", _ledger(True), "the final answer"]

TeamFactory = Callable[[Any], Team]
CASES = [
    # (team, script, k): k is the model call that fails; the comments say whose call it is.
    pytest.param(round_robin, ["a draft", "a review"], 2, id="round_robin-agent"),
    pytest.param(selector, SELECTOR_SCRIPT, 1, id="selector-first_selection"),
    pytest.param(selector, SELECTOR_SCRIPT, 2, id="selector-agent"),
    pytest.param(selector, SELECTOR_SCRIPT, 3, id="selector-later_selection"),
    pytest.param(swarm, ["a draft", "a second draft"], 1, id="swarm-first_agent"),
    pytest.param(swarm, ["a draft", "a second draft"], 2, id="swarm-agent"),
    pytest.param(magentic_one, MAGENTIC_SCRIPT, 1, id="magentic_one-facts"),
    pytest.param(magentic_one, MAGENTIC_SCRIPT, 3, id="magentic_one-ledger"),
    pytest.param(magentic_one, MAGENTIC_SCRIPT, 4, id="magentic_one-agent"),
    pytest.param(magentic_one, MAGENTIC_SCRIPT, 5, id="magentic_one-later_ledger"),
]


def _outcome(result: TaskResult | BaseException) -> Any:
    if isinstance(result, BaseException):
        return type(result).__name__
    return [(message.source, type(message).__name__) for message in result.messages]


async def _stream(team: Team, task: str | None = None) -> TaskResult | BaseException:
    """``run_stream`` consumed to the end, as a console would; its result or the error it raised."""
    result: TaskResult | None = None
    try:
        async for item in team.run_stream(task=task):
            if isinstance(item, TaskResult):
                result = item
    except Exception as error:  # noqa: BLE001 - the error is the outcome
        return error
    assert result is not None, "run_stream ended without a TaskResult"
    return result


async def _run(team: Team, task: str | None = None) -> TaskResult | BaseException:
    try:
        return await team.run(task=task)
    except Exception as error:  # noqa: BLE001 - the error is the outcome
        return error


async def _scenario(stub: Any, model_client: Any, memory: Any, make_team: TeamFactory, script: list[str],
                    k: int, blocked: bool) -> tuple[TaskResult | BaseException, list[Any], int]:
    replies = [Reply(content=text) for text in script * 6]
    if make_team is magentic_one:  # each MagenticOne run starts its script over: facts, plan, ledger, ...
        replies = replies[:k - 1] + replies
    if blocked:
        # Spend after k-1 calls is just over the budget: the k-th call is blocked before it is sent.
        budget = max(CALL_COST * (k - 1) - 1e-12, 0.0)
        agentwatch.init(exporters=[memory], budget_per_hour=budget, block_on_threshold=True)
    else:
        agentwatch.init(exporters=[memory])
        replies.insert(k - 1, Reply(status=400))
    stub.queue(*replies)
    team = make_team(model_client)

    first = await _stream(team, "Write a haiku")
    if blocked:
        agentwatch.get_client().monitor.increase_budget(1.0)
    # Continue where it stopped (MagenticOne takes no run without a task: it is given one to go on with).
    go_on = "Go on." if isinstance(team, MagenticOneGroupChat) else None
    after = [_outcome(await _stream(team, go_on))]
    await team.reset()
    after.append(_outcome(await _run(team, "Write another haiku")))
    after.append(_outcome(await _stream(team, go_on)))  # and continue that one
    return first, after, chat_requests(stub)


@pytest.mark.parametrize(("make_team", "script", "k"), CASES)
async def test_a_team_recovers_from_a_block_exactly_as_from_a_provider_error(
        memory, stub_provider, model_client, make_team, script, k):
    failed, after_error, requests_with_error = await _scenario(stub_provider, model_client, memory, make_team,
                                                               script, k, blocked=False)
    assert not isinstance(failed, TaskResult), "the provider error did not reach the caller"
    agentwatch.shutdown()
    stub_provider.clear()
    memory.spans.clear()

    blocked, after_block, requests_with_block = await _scenario(stub_provider, model_client, memory, make_team,
                                                                script, k, blocked=True)

    # The block reached the caller as itself, and nothing was sent for it.
    assert isinstance(blocked, CircuitBreakerException), repr(blocked)
    assert blocked.reason == "budget_per_hour"
    assert blocked.monitor is agentwatch.get_client().monitor
    assert [span["status"] for span in spans(memory, "llm")][:k] == ["ok"] * (k - 1) + ["blocked"]
    assert requests_with_block == requests_with_error - 1
    # Continue, reset and run again went exactly as after the provider error.
    assert after_block == after_error
    # And the team works again: a reset and a new run always; a continued run too, except where AutoGen itself
    # cannot continue after the error (MagenticOne after a failed agent turn, with or without AgentWatch).
    assert isinstance(after_block[1], list), after_block
    if make_team is not magentic_one:
        assert all(isinstance(outcome, list) for outcome in after_block), after_block


async def test_a_finished_call_left_current_by_another_layer_does_not_exempt_the_team_from_its_check(
        memory, stub_provider, model_client):
    # Another layer (e.g. an async callback whose context reset failed) leaves its finished call current in
    # this task. AutoGen's calls are still checked, and the block still reaches the caller as itself.
    agentwatch.init(exporters=[memory], budget_per_hour=CALL_COST / 2, block_on_threshold=True)
    leaked = agentwatch.start_llm_call("other-layer", model=MODEL)
    leaked.activate()
    leaked.set_usage(input_tokens=10, output_tokens=5)
    leaked.end()  # over budget now; never deactivated
    try:
        with pytest.raises(CircuitBreakerException):
            await round_robin(model_client).run(task="Write a haiku")
    finally:
        leaked.deactivate()
    assert chat_requests(stub_provider) == 0
