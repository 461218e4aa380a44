"""Pydantic AI runs (delegation, tools, run/run_sync/run_stream/iter; chat and Responses APIs) give one LLM
span and one charge per request under the agent that made it, and behave exactly as without AgentWatch."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

import agentwatch
from tests.stubs.provider_server import Reply

from .conftest import DELEGATION_RUN, MODEL, Team, by_id, llm_spans

HOWS = ["run_sync", "run", "run_stream", "iter"]


def run(how: str, team: Team, prompt: str = "what is 1 + 2?", **options: Any) -> Any:
    if how == "run_sync":
        return team.support.run_sync(prompt, **options).output
    if how == "run":
        return asyncio.run(team.support.run(prompt, **options)).output

    async def streamed() -> Any:
        async with team.support.run_stream(prompt, **options) as result:
            return "".join([text async for text in result.stream_text(delta=True)])

    async def iterated() -> Any:
        async with team.support.iter(prompt, **options) as agent_run:
            async for _ in agent_run:
                pass
        assert agent_run.result is not None
        return agent_run.result.output

    return asyncio.run(streamed() if how == "run_stream" else iterated())


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("how", HOWS)
def test_one_span_and_one_charge_per_request_under_the_agent(stub_provider: Any, memory: Any, how: str,
                                                             api: str) -> None:
    agentwatch.init(exporters=[memory])
    team = Team(stub_provider, api)
    stub_provider.queue(*DELEGATION_RUN)
    assert run(how, team) == "the sum is 3" and team.tool_calls == 1
    agentwatch.flush()
    calls = llm_spans(memory)
    assert stub_provider.count() == 4 and len(calls) == 4  # the HTTP layer added to ours, counted nothing again
    assert [span["agent_name"] for span in calls] == ["Support", "Billing", "Billing", "Support"]
    for span in calls:
        assert (span["model"], span["provider"], span["status"]) == (MODEL, "openai", "ok")
        assert (span["input_tokens"], span["output_tokens"]) == (10, 5) and span["cost_usd"] > 0
    spans = by_id(memory)
    support = next(span for span in memory.spans if span["kind"] == "agent" and span["name"] == "Support")
    billing = next(span for span in memory.spans if span["kind"] == "agent" and span["name"] == "Billing")
    ask = next(span for span in memory.spans if span["kind"] == "tool" and span["name"] == "ask_billing")
    add = next(span for span in memory.spans if span["kind"] == "tool" and span["name"] == "add")
    assert support["parent_span_id"] is None and ask["parent_span_id"] == support["span_id"]
    assert billing["parent_span_id"] == ask["span_id"] and add["parent_span_id"] == billing["span_id"]
    assert [spans[span["parent_span_id"]]["name"] for span in calls] == ["Support", "Billing", "Billing", "Support"]
    assert sum(span["cost_usd"] for span in memory.spans) == pytest.approx(sum(span["cost_usd"] for span in calls))


def _requests(stub: Any) -> list[str]:
    return [re.sub(r"stub_?\d+", "stub#", f"{request.path} {json.dumps(request.json)}") for request in stub.requests]


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("how", HOWS)
def test_behaves_as_without_agentwatch_when_no_limit_is_hit(stub_provider: Any, memory: Any, how: str,
                                                            api: str) -> None:
    stub_provider.queue(*DELEGATION_RUN)
    plain = run(how, Team(stub_provider, api))
    plain_requests = _requests(stub_provider)
    stub_provider.requests.clear()
    agentwatch.init(exporters=[memory], budget_per_hour=100.0, block_on_threshold=True,
                    agents={"Support": {"budget_per_hour": 50.0}, "Billing": {"budget_per_hour": 50.0}})
    stub_provider.queue(*DELEGATION_RUN)
    assert run(how, Team(stub_provider, api)) == plain
    assert _requests(stub_provider) == plain_requests  # the same requests but the stub's ids


def test_concurrent_runs_keep_their_agents_apart(stub_provider: Any, memory: Any) -> None:
    from pydantic_ai import Agent

    agentwatch.init(exporters=[memory])
    model = Team(stub_provider).model
    agents: list[Agent[None, str]] = [Agent(model, name=f"Worker{index}") for index in range(6)]

    async def together() -> list[str]:
        results = await asyncio.gather(*(agent.run("hi") for agent in agents))
        return [result.output for result in results]

    assert asyncio.run(together()) == ["ok"] * 6
    agentwatch.flush()
    spans = by_id(memory)
    calls = llm_spans(memory)
    assert sorted(span["agent_name"] for span in calls) == [f"Worker{index}" for index in range(6)]
    for span in calls:
        assert spans[span["parent_span_id"]]["name"] == span["agent_name"]  # under its own agent's span


def test_a_stream_left_by_break_is_an_incomplete_call_not_a_failed_one(stub_provider: Any, memory: Any) -> None:
    """Pydantic AI stops reading a stream the caller left (``break`` out of ``stream_text``) by cancelling its read:
    the call ends ok, ``stream_incomplete``, charged for what arrived, as a stream closed early does elsewhere."""
    agentwatch.init(exporters=[memory], max_error_rate=0.5, block_on_threshold=True)
    team = Team(stub_provider)

    async def left_early() -> str:
        async with team.support.run_stream("write a lot") as result:
            async for text in result.stream_text(delta=True):
                return text
        raise AssertionError("nothing streamed")

    for _ in range(11):  # more than the 10 calls max_error_rate judges from: none of them an error
        stub_provider.queue(Reply(content="word " * 100, chunk_delay=0.002))
        assert asyncio.run(left_early())
    agentwatch.flush()
    calls = llm_spans(memory)
    assert len(calls) == 11
    for span in calls:
        assert (span["status"], span["model"]) == ("ok", MODEL) and "error.type" not in span["attributes"]
        assert span["attributes"]["stream_incomplete"] is True and span["cost_usd"] > 0
    assert agentwatch.get_client().monitor.snapshot()["errors_in_error_window"] == 0  # type: ignore[union-attr]
