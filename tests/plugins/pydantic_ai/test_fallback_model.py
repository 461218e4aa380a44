"""A ``FallbackModel``: each model it tries is an LLM call of its own, with that model's name and provider (not the
composite ``fallback:…`` name), charged and reserved as that model; a block met by any of them reaches the caller,
never the next model."""

from __future__ import annotations

from typing import Any

import pytest
from openai import AsyncOpenAI
from pydantic_ai import Agent
from pydantic_ai.models.fallback import FallbackModel
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .conftest import Team, llm_spans
from .test_runs import HOWS, run


def _model(stub: Any, name: str) -> OpenAIChatModel:
    client = AsyncOpenAI(base_url=stub.openai_base_url, api_key="test-key", max_retries=0)
    return OpenAIChatModel(name, provider=OpenAIProvider(openai_client=client))


def _team(stub: Any, *names: str, **options: Any) -> Team:
    team = Team(stub)
    team.support.model = FallbackModel(*(_model(stub, name) for name in names), **options)
    return team


@pytest.mark.parametrize("how", HOWS)
def test_each_model_tried_is_a_call_of_its_own(stub_provider: Any, memory: Any, how: str) -> None:
    agentwatch.init(exporters=[memory])
    team = _team(stub_provider, "gpt-4o-mini", "gpt-4o")
    stub_provider.queue(Reply(status=500), Reply(content="from gpt-4o", input_tokens=1000, output_tokens=100))
    assert run(how, team) == "from gpt-4o"
    assert [request.json["model"] for request in stub_provider.requests] == ["gpt-4o-mini", "gpt-4o"]
    agentwatch.flush()
    calls = llm_spans(memory)
    assert [(span["model"], span["provider"], span["status"], span["agent_name"]) for span in calls] == [
        ("gpt-4o-mini", "openai", "error", "Support"), ("gpt-4o", "openai", "ok", "Support")]
    # Charged as gpt-4o ($2.50/M in, $10/M out), not at the default rate of an unknown composite name.
    assert calls[1]["cost_usd"] == pytest.approx(1000 * 2.5e-6 + 100 * 10e-6)
    assert calls[1]["attributes"].get("cost.source") != "default"


@pytest.mark.parametrize("fallback_on", ["default", "every exception"])
@pytest.mark.parametrize("how", HOWS)
def test_a_hard_budget_reserves_the_worst_case_of_the_model_sent_to(stub_provider: Any, memory: Any, how: str,
                                                                    fallback_on: str) -> None:
    """gpt-4o's worst case without ``max_tokens`` (16k output tokens, $0.16) does not fit a $0.10 hard budget: the
    request is refused as it is for a plain gpt-4o agent, and not sent to gpt-4o-mini (whose worst case fits)
    either, even when ``fallback_on`` takes every exception."""
    agentwatch.init(exporters=[memory], budget_per_hour=0.10, hard_budget=True)
    options = {"fallback_on": (Exception,)} if fallback_on == "every exception" else {}
    team = _team(stub_provider, "gpt-4o", "gpt-4o-mini", **options)
    stub_provider.queue(Reply(content="a long answer", input_tokens=20, output_tokens=12_000))  # $0.12 as gpt-4o
    with pytest.raises(CircuitBreakerException) as caught:
        run(how, team)
    blocked = caught.value
    assert type(blocked) is CircuitBreakerException and blocked.reason == "hard_budget"
    assert blocked.reserved > 0.10 and stub_provider.count() == 0
    agentwatch.flush()
    assert [(span["model"], span["status"]) for span in llm_spans(memory)] == [("gpt-4o", "blocked")]
    monitor = agentwatch.get_client().monitor  # type: ignore[union-attr]
    assert monitor.snapshot()["spend_last_hour"] <= 0.10


def test_a_block_before_the_request_names_the_first_model(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=0.0001, block_on_threshold=True)
    with agentwatch.llm_call(model="gpt-4o-mini") as spent:  # the hour's budget is spent
        spent.set_usage(100_000, 10_000)
    agent: Agent[None, str] = Agent(FallbackModel(_model(stub_provider, "gpt-4o"),
                                                  _model(stub_provider, "gpt-4o-mini")), name="Support")
    with pytest.raises(CircuitBreakerException):
        agent.run_sync("hi")
    agentwatch.flush()
    assert [(span["model"], span["provider"], span["status"]) for span in llm_spans(memory)][1:] == [
        ("gpt-4o", "openai", "blocked")]
    assert stub_provider.count() == 0
