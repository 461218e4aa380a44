"""While a caller holds an agent's run open (``async with agent.run_stream(...)`` or ``agent.iter(...)``), its own code
in that block is not the agent's. Found 2026-12-05 by a probe: the agent's scope stayed current in the caller for the
whole block, so the caller's own LLM calls there (a moderation call, another agent's run) were charged to the agent,
hung from its span, and blocked by its budget."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

import agentwatch
from tests.stubs.provider_server import Reply

from .conftest import MODEL

BIG = {"input_tokens": 100_000, "output_tokens": 10}  # $0.015 with gpt-4o-mini


def test_the_callers_own_calls_inside_an_open_run_are_not_the_agents(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory], agents={"Writer": {"budget_per_hour": 0.02, "block_on_threshold": True}})
    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(base_url=stub_provider.openai_base_url, api_key="k"))
    writer, helper = Agent(model, name="Writer"), Agent(model, name="Helper")
    raw = openai.AsyncOpenAI(base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)

    async def main() -> tuple[str, str]:
        stub_provider.queue(Reply(content="one two three", chunk_delay=0.02, **BIG))
        async with writer.run_stream("write") as result:
            deltas = result.stream_text(delta=True, debounce_by=None).__aiter__()
            first = await deltas.__anext__()
            for _ in range(2):  # the app's own calls while the stream is open: $0.015 each
                stub_provider.queue(Reply(content="fine", **BIG))
                await raw.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "moderate"}])
            stub_provider.queue(Reply(content="a title"))
            title = (await helper.run("title it")).output  # another agent, run by the app, not by Writer
            rest = "".join([delta async for delta in deltas])
        return first + rest, title

    text, title = asyncio.run(main())
    assert (text, title) == ("one two three", "a title")  # nothing blocked: only Writer's own $0.015 is Writer's
    assert stub_provider.count() == 4
    agentwatch.flush()
    spans = {span["span_id"]: span for span in memory.spans}
    llm = sorted((span for span in memory.spans if span["kind"] == "llm"),
                 key=lambda span: span["start_time_unix_nano"])
    owners = [(span["name"], span["agent_name"], spans.get(span["parent_span_id"], {}).get("name")) for span in llm]
    assert owners == [("pydantic_ai.request_stream", "Writer", "Writer"), ("openai.chat.completions", None, None),
                      ("openai.chat.completions", None, None), ("pydantic_ai.request", "Helper", "Helper")]
    helper_run = next(span for span in memory.spans if span["kind"] == "agent" and span["name"] == "Helper")
    assert helper_run["parent_span_id"] is None  # not under Writer's run


def test_the_runs_own_code_outside_requests_and_tools_is_the_agents(stub_provider: Any, memory: Any) -> None:
    """Dynamic instructions and an output validator run in the run's steps: an LLM call they make (the openai SDK used
    directly) is the agent's, under its span, and blocked by its budget (a review of 13f43cb found them scopeless)."""
    from pydantic_ai import RunContext

    agentwatch.init(exporters=[memory], agents={"Writer": {"budget_per_hour": 0.02, "block_on_threshold": True}})
    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(base_url=stub_provider.openai_base_url, api_key="k"))
    writer = Agent(model, name="Writer")
    raw = openai.AsyncOpenAI(base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)

    @writer.instructions
    async def instructions(ctx: RunContext[None]) -> str:
        await raw.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "which style?"}])
        return "be brief"

    @writer.output_validator
    async def judged(ctx: RunContext[None], output: str) -> str:
        for question in ("judge", "judge again"):  # $0.015 each: the second is past Writer's $0.02
            await raw.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": question}])
        return output

    stub_provider.queue(Reply(content="brief", **BIG), Reply(content="a draft"), Reply(content="fine", **BIG))
    with pytest.raises(agentwatch.CircuitBreakerException) as caught:
        asyncio.run(writer.run("write"))
    assert caught.value.scope_id == "writer" and stub_provider.count() == 3  # its second judging: blocked
    agentwatch.flush()
    run = next(span for span in memory.spans if span["kind"] == "agent")
    raw_calls = [span for span in memory.spans if span["name"] == "openai.chat.completions" and span["status"] == "ok"]
    assert len(raw_calls) == 2 and all((span["agent_name"], span["parent_span_id"]) == ("Writer", run["span_id"])
                                       for span in raw_calls)
