"""The Agents SDK with a LiteLLM model (``LitellmModel``): LiteLLM maps whatever its provider call raised to its own
errors. Found 2026-12-05: a hard budget's refusal of the request (the HTTP layer's top-up, under LiteLLM) reached
``Runner.run`` as ``litellm.InternalServerError`` (the block only in its chain of causes), not as the block."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import Agent, Runner
from agents.extensions.models.litellm_model import LitellmModel

import agentwatch
from agentwatch import CircuitBreakerException

MODEL = "openai/gpt-4o-mini"


def _agent(stub_provider: Any) -> Agent:
    return Agent(name="Triage", instructions="answer",
                 model=LitellmModel(model=MODEL, base_url=stub_provider.openai_base_url, api_key="k"))


async def _streamed(agent: Agent) -> None:
    run = Runner.run_streamed(agent, "hi")
    async for _ in run.stream_events():
        pass


@pytest.mark.parametrize("how", ["run", "run_streamed"])
def test_a_hard_budget_refusal_under_litellm_reaches_the_caller_as_the_block(stub_provider: Any, memory: Any,
                                                                              how: str) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=0.005, hard_budget=True)  # the call's worst case is $0.0099
    agent = _agent(stub_provider)
    with pytest.raises(CircuitBreakerException) as caught:
        asyncio.run(Runner.run(agent, "hi") if how == "run" else _streamed(agent))
    assert caught.value.reason == "hard_budget" and caught.value.monitor is not None
    assert stub_provider.count() == 0
    agentwatch.flush()
    assert [span["status"] for span in memory.spans if span["kind"] == "llm"] == ["blocked"]


def test_a_litellm_model_run_within_the_budget_is_charged_once(stub_provider: Any, memory: Any) -> None:
    client = agentwatch.init(exporters=[memory], budget_per_hour=1.0, hard_budget=True)
    result = asyncio.run(Runner.run(_agent(stub_provider), "hi"))
    assert result.final_output == "ok" and stub_provider.count() == 1
    agentwatch.flush()
    [span] = [span for span in memory.spans if span["kind"] == "llm"]
    assert span["status"] == "ok" and client.monitor.snapshot()["spend_last_hour"] == pytest.approx(span["cost_usd"])
