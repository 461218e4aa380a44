"""openai-agents' ``OpenAIResponsesCompactionSession`` calls ``responses.compact()`` after a turn: a model call of
its own, billed as a response. Found 2026-12-05: it was neither recorded nor limited (the path was not known as an
LLM API); it is now one span with the usage the API reports, and a budget already spent blocks it before it is sent."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import Agent, OpenAIResponsesModel, Runner, SQLiteSession
from agents.memory import OpenAIResponsesCompactionSession
from openai import AsyncOpenAI

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .conftest import MODEL, llm_spans


def _agent_and_session(stub: Any) -> tuple[Agent, OpenAIResponsesCompactionSession]:
    client = AsyncOpenAI(base_url=stub.openai_base_url, api_key="test-key", max_retries=0)
    agent = Agent(name="Writer", instructions="Answer briefly.", model=OpenAIResponsesModel(MODEL, client))
    session = OpenAIResponsesCompactionSession("conversation", SQLiteSession("conversation"), client=client,
                                               model=MODEL, should_trigger_compaction=lambda context: True)
    return agent, session


def test_a_compaction_between_turns_is_a_recorded_call(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    agent, session = _agent_and_session(stub_provider)
    stub_provider.queue(Reply(content="hello"), Reply(input_tokens=50_000, output_tokens=3_000))
    result = asyncio.run(Runner.run(agent, "hi", session=session))
    assert result.final_output == "hello"
    assert [request.path for request in stub_provider.requests] == ["/v1/responses", "/v1/responses/compact"]
    agentwatch.flush()
    compaction = [span for span in llm_spans(memory) if span["name"] == "openai.responses.compact"]
    assert len(compaction) == 1, [span["name"] for span in llm_spans(memory)]
    span = compaction[0]
    assert (span["status"], span["model"], span["input_tokens"], span["output_tokens"]) == ("ok", MODEL, 50_000, 3_000)
    assert span["cost_usd"] > 0.007  # 50k in, 3k out of gpt-4o-mini: $0.0093


def test_a_compaction_over_the_budget_is_blocked_before_it_is_sent(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    agent, session = _agent_and_session(stub_provider)
    stub_provider.queue(Reply(content="hello", input_tokens=400_000, output_tokens=100_000))  # ~$0.12
    with agentwatch.agent("writer", budget_per_hour=0.05, block_on_threshold=True):
        with pytest.raises(CircuitBreakerException) as caught:
            asyncio.run(Runner.run(agent, "hi", session=session))
    assert caught.value.reason == "budget_per_hour"
    assert [request.path for request in stub_provider.requests] == ["/v1/responses"]
    agentwatch.flush()
    assert [(span["name"], span["status"]) for span in llm_spans(memory)][-1] == ("openai.responses.compact",
                                                                                  "blocked")
