"""Per-agent budgets by the agent's ``name``: the block is raised before the request (before Pydantic AI's
request hooks, model retries and fallbacks), reaches the caller of ``run``/``run_sync``/``run_stream``/``iter``
as ``CircuitBreakerException`` with no request after it, and the run recovers. Pydantic AI's own
``UsageLimits`` keep working beside ours; tool retries are spans."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.exceptions import UsageLimitExceeded
from pydantic_ai.models.fallback import FallbackModel
from pydantic_ai.usage import UsageLimits

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .conftest import DELEGATION_RUN, Team, by_id, llm_spans
from .test_runs import HOWS, run

BUDGET = 0.0001  # 1,000 in / 100 out tokens of gpt-4o-mini cost $0.00021: one such call crosses it
EXPENSIVE_TOOL_CALL = Reply(content="", tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 2}}],
                            input_tokens=1000, output_tokens=100)


@pytest.mark.parametrize("how", HOWS)
def test_agent_budget_blocks_before_the_request_then_recovers(stub_provider: Any, memory: Any, how: str) -> None:
    agentwatch.init(exporters=[memory], agents={"Billing": {"budget_per_hour": BUDGET, "block_on_threshold": True}})
    team = Team(stub_provider)
    stub_provider.queue(DELEGATION_RUN[0], EXPENSIVE_TOOL_CALL)
    with pytest.raises(CircuitBreakerException) as caught:
        run(how, team)
    blocked = caught.value
    assert type(blocked) is CircuitBreakerException  # not a model retry, not a tool error, not wrapped
    assert (blocked.reason, blocked.scope, blocked.scope_id) == ("budget_per_hour", "agent", "billing")
    assert stub_provider.count() == 2 and team.tool_calls == 1  # Billing's second request was never sent
    agentwatch.flush()
    calls = llm_spans(memory)
    assert [(span["agent_name"], span["status"]) for span in calls] == [
        ("Support", "ok"), ("Billing", "ok"), ("Billing", "blocked")]
    spans = by_id(memory)
    assert (spans[calls[-1]["parent_span_id"]]["name"], spans[calls[-1]["parent_span_id"]]["status"]) == (
        "Billing", "blocked")

    blocked.monitor.increase_budget(1.0)
    stub_provider.queue(*DELEGATION_RUN)
    assert run(how, Team(stub_provider)) == "the sum is 3"
    assert stub_provider.count() == 6


@pytest.mark.parametrize("how", HOWS)
def test_a_block_is_not_retried_nor_sent_to_a_fallback_model(stub_provider: Any, memory: Any, how: str) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=BUDGET, block_on_threshold=True)
    with agentwatch.llm_call(model="gpt-4o-mini") as spent:  # the hour's budget is spent
        spent.set_usage(100_000, 10_000)
    team = Team(stub_provider)
    team.support.model = FallbackModel(team.model, Team(stub_provider, "responses").model, fallback_on=(Exception,))
    with pytest.raises(CircuitBreakerException) as caught:
        run(how, team)
    assert caught.value.scope == "global" and stub_provider.count() == 0
    agentwatch.flush()
    assert [(span["agent_name"], span["status"]) for span in llm_spans(memory)][1:] == [("Support", "blocked")]


def test_pydantic_ais_usage_limits_work_beside_ours(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=100.0, block_on_threshold=True)
    team = Team(stub_provider)
    stub_provider.queue(*DELEGATION_RUN)
    with pytest.raises(UsageLimitExceeded):
        team.support.run_sync("what is 1 + 2?", usage_limits=UsageLimits(request_limit=2))
    # Support's first request and Billing's two (its run shares the usage, not the limits); Support's second
    # request was refused by Pydantic AI: three requests, and no blocked span of ours.
    assert stub_provider.count() == 3
    agentwatch.flush()
    assert [span["status"] for span in llm_spans(memory)] == ["ok", "ok", "ok"]
    assert agentwatch.get_client().monitor.snapshot()["spend_last_hour"] == pytest.approx(  # type: ignore[union-attr]
        sum(span["cost_usd"] for span in llm_spans(memory)))


def test_a_tool_retry_is_a_span_and_the_next_request_another(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(content="", tool_calls=[{"name": "flaky", "arguments": {}}]),
                        Reply(content="", tool_calls=[{"name": "flaky", "arguments": {}}]),
                        Reply(content="done"))
    attempts: list[int] = []
    agent: Agent[None, str] = Agent(Team(stub_provider).model, name="Worker")

    @agent.tool_plain(retries=2)
    def flaky() -> str:
        """Works the second time."""
        attempts.append(1)
        if len(attempts) == 1:
            raise ModelRetry("try again")
        return "ok"

    assert agent.run_sync("go").output == "done"
    agentwatch.flush()
    tools = [span for span in memory.spans if span["kind"] == "tool"]
    assert [(span["status"], span["attributes"].get("tool.retry")) for span in tools] == [("error", True),
                                                                                           ("ok", None)]
    assert len(llm_spans(memory)) == stub_provider.count() == 3


def test_an_output_retry_is_marked_on_the_request_that_retries(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(content="", tool_calls=[{"name": "final_result", "arguments": {"response": "many"}}]),
                        Reply(content="", tool_calls=[{"name": "final_result", "arguments": {"response": 3}}]))
    agent: Agent[None, int] = Agent(Team(stub_provider).model, name="Counter", output_type=int)
    assert agent.run_sync("how many?").output == 3
    agentwatch.flush()
    assert [span["attributes"].get("retry") for span in llm_spans(memory)] == [None, 1]
    assert stub_provider.count() == 2


@pytest.mark.parametrize("how", HOWS)
def test_a_hard_budget_refuses_the_request_whose_worst_case_does_not_fit(stub_provider: Any, memory: Any,
                                                                          how: str) -> None:
    # gpt-4o-mini's worst case (its output limit at $0.60/M) is far above $0.001: refused as it is sent.
    agentwatch.init(exporters=[memory], agents={"Support": {"budget_per_hour": 0.001, "hard_budget": True}})
    team = Team(stub_provider)
    with pytest.raises(CircuitBreakerException) as caught:
        run(how, team)
    assert type(caught.value) is CircuitBreakerException
    assert (caught.value.reason, caught.value.scope_id) == ("hard_budget", "support") and stub_provider.count() == 0
    agentwatch.flush()
    assert [(span["agent_name"], span["status"]) for span in llm_spans(memory)] == [("Support", "blocked")]
