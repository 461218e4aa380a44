"""Per-agent budgets by the agent's ``name``: the block is raised before the request, reaches the caller of
``Runner.run``/``run_sync``/``run_streamed`` as ``CircuitBreakerException`` with no request after it, is never
retried by the SDK's retry policies, and the run continues from the blocked turn after a recovery."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from agents import ModelRetrySettings, ModelSettings, Runner

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .conftest import HANDOFF_RUN, Team, by_id, llm_spans

BUDGET = 0.0001  # 1,000 in / 100 out tokens of gpt-4o-mini cost $0.00021: one such call crosses it
EXPENSIVE_TOOL_CALL = Reply(content="", tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 2}}],
                            input_tokens=1000, output_tokens=100)


def _run(how: str, agent: Any, given: Any, loop: asyncio.AbstractEventLoop) -> Any:
    """One run; async ones on ``loop`` (the AsyncOpenAI client's connections belong to one event loop)."""
    if how == "run_sync":
        return Runner.run_sync(agent, given).final_output
    if how == "run":
        return loop.run_until_complete(Runner.run(agent, given)).final_output

    async def streamed() -> Any:
        result = Runner.run_streamed(agent, given)
        async for _ in result.stream_events():
            pass
        return result.final_output

    return loop.run_until_complete(streamed())


@pytest.mark.parametrize("how", ["run_sync", "run", "run_streamed"])
def test_agent_budget_blocks_before_the_request_and_the_run_resumes(stub_provider: Any, memory: Any, how: str,
                                                                     loop: asyncio.AbstractEventLoop) -> None:
    agentwatch.init(exporters=[memory], agents={"Billing": {"budget_per_hour": BUDGET, "block_on_threshold": True}})
    team = Team(stub_provider)
    stub_provider.queue(HANDOFF_RUN[0], EXPENSIVE_TOOL_CALL)
    with pytest.raises(CircuitBreakerException) as caught:
        _run(how, team.triage, "what is 1 + 2?", loop)
    blocked = caught.value
    assert type(blocked) is CircuitBreakerException  # not wrapped by the SDK
    assert (blocked.reason, blocked.scope, blocked.scope_id) == ("budget_per_hour", "agent", "billing")
    assert stub_provider.count() == 2 and team.tool_calls == 1  # Billing's second request was never sent
    agentwatch.flush()
    calls = llm_spans(memory)
    assert [(span["agent_name"], span["status"]) for span in calls] == [
        ("Triage", "ok"), ("Billing", "ok"), ("Billing", "blocked")]
    assert by_id(memory)[calls[-1]["parent_span_id"]]["status"] == "blocked"  # the Billing agent span
    # The blocked turn: Billing, about to send the conversation with the finished tool call and its output.
    assert blocked.resume.agent is team.billing
    assert [item.get("type") for item in blocked.resume.input][-2:] == ["function_call", "function_call_output"]
    json.dumps(blocked.resume.input)  # plain data: it can be stored and the run resumed elsewhere

    blocked.monitor.increase_budget(1.0)
    stub_provider.queue(HANDOFF_RUN[2])
    assert _run(how, blocked.resume.agent, blocked.resume.input, loop) == "the sum is 3"
    assert stub_provider.count() == 3 and team.tool_calls == 1  # no finished turn ran again
    assert stub_provider.last.json["input"][-1]["type"] == "function_call_output"


@pytest.mark.parametrize("how", ["run_sync", "run", "run_streamed"])
def test_a_block_is_never_retried_by_the_sdks_retry_policy(stub_provider: Any, memory: Any, how: str,
                                                            loop: asyncio.AbstractEventLoop) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=BUDGET, block_on_threshold=True)
    with agentwatch.llm_call(model="gpt-4o-mini") as spent:  # the hour's budget is spent
        spent.set_usage(100_000, 10_000)
    team = Team(stub_provider)
    team.triage.model_settings = ModelSettings(retry=ModelRetrySettings(max_retries=5, policy=lambda context: True))
    with pytest.raises(CircuitBreakerException) as caught:
        _run(how, team.triage, "hi", loop)
    assert caught.value.scope == "global" and stub_provider.count() == 0
    agentwatch.flush()
    assert [(span["agent_name"], span["status"]) for span in llm_spans(memory)][1:] == [("Triage", "blocked")]


def test_each_retried_attempt_is_its_own_span_and_charge(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    team = Team(stub_provider)
    team.triage.model_settings = ModelSettings(retry=ModelRetrySettings(max_retries=2, policy=lambda context: True))
    stub_provider.queue(Reply(status=500), Reply(content="fine"))
    assert Runner.run_sync(team.triage, "hi").final_output == "fine"
    agentwatch.flush()
    assert stub_provider.count() == 2
    assert [(span["status"], span["input_tokens"]) for span in llm_spans(memory)] == [("error", 0), ("ok", 10)]


@pytest.mark.parametrize("how", ["run_sync", "run_streamed"])
def test_a_hard_budget_refuses_the_request_whose_worst_case_does_not_fit(stub_provider: Any, memory: Any, how: str,
                                                                          loop: asyncio.AbstractEventLoop) -> None:
    # gpt-4o-mini's worst case (its output limit at $0.60/M) is far above $0.001: refused as it is sent.
    agentwatch.init(exporters=[memory], agents={"Triage": {"budget_per_hour": 0.001, "hard_budget": True}})
    team = Team(stub_provider)
    team.triage.model_settings = ModelSettings(retry=ModelRetrySettings(max_retries=3, policy=lambda context: True))
    with pytest.raises(CircuitBreakerException) as caught:
        _run(how, team.triage, "hi", loop)
    assert (caught.value.reason, caught.value.scope_id) == ("hard_budget", "triage") and stub_provider.count() == 0
    assert caught.value.resume.agent is team.triage
    agentwatch.flush()
    assert [(span["agent_name"], span["status"]) for span in llm_spans(memory)] == [("Triage", "blocked")]
