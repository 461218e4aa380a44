"""LlamaIndex streams read in part (found 2026-12-05 by a probe with the real OpenAI LLM on the stub):

- while a stream was open (peeked, read side by side with another, left by ``break``) its call stayed current in the
  caller's context, so the caller's other calls (to the same LLM object, or the openai SDK's own) were taken for part
  of it: never checked, never charged ($0.045 spent against a $0.02 budget, nothing blocked);
- a stream the caller stopped reading was charged $0 (LlamaIndex reports only the exit, no response, and its
  provider's usage comes last), so a budget never tripped on the "stop generation" pattern;
- cancelling the task reading it (a chat UI's stop) counted toward ``max_error_rate``: 10 stops opened the breaker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from llama_index.core.llms import ChatMessage

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .conftest import MODEL, llm_spans, openai_llm

BIG = {"input_tokens": 100_000, "output_tokens": 10}  # $0.015 with gpt-4o-mini
LIMITED = {"budget_per_hour": 0.02, "block_on_threshold": True}


def _messages(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


@pytest.mark.parametrize("other", ["same_llm", "openai_sdk"])
def test_calls_made_while_a_stream_is_open_are_checked_and_charged(stub_provider: Any, memory: Any,
                                                                     other: str) -> None:
    agentwatch.init(exporters=[memory], stream_usage="always", **LIMITED)
    llm = openai_llm(stub_provider)
    client = openai.OpenAI(base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)
    stub_provider.queue(Reply(content="one two three", **BIG))
    stream = llm.stream_chat(_messages("write"))
    first = next(stream)  # the caller peeks at the first chunk, then makes calls of its own
    outcomes = []
    for turn in range(3):
        stub_provider.queue(Reply(content="side", **BIG))
        try:
            if other == "same_llm":
                llm.chat(_messages(f"side {turn}"))
            else:
                client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"side {turn}"}])
            outcomes.append("sent")
        except CircuitBreakerException:
            outcomes.append("blocked")
    assert (first.delta or "") + "".join(chunk.delta or "" for chunk in stream) == "one two three"
    assert outcomes == ["sent", "sent", "blocked"]  # $0.015 each: the third exceeds $0.02 with the stream's
    assert stub_provider.count() == 3
    agentwatch.flush()
    spans = sorted(llm_spans(memory.spans), key=lambda span: span["start_time_unix_nano"])
    streamed = spans[0]
    assert [span["status"] for span in spans] == ["ok", "ok", "ok", "blocked"]
    assert all(span["parent_span_id"] != streamed["span_id"] for span in spans[1:])  # not under the stream
    assert [round(span["cost_usd"], 6) for span in spans[:3]] == [0.015006] * 3


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_stream_stopped_early_is_charged_from_an_estimate(stub_provider: Any, memory: Any, flavour: str) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=0.00001, block_on_threshold=True)
    llm = openai_llm(stub_provider)
    prompt = "tell me a long story " * 20

    async def read_async() -> None:
        stream = await llm.astream_chat(_messages(prompt))
        async for chunk in stream:
            if "STOP" in chunk.delta:
                break
        await stream.aclose()  # as asyncio's finaliser does for an abandoned one

    outcomes = []
    for _ in range(2):
        stub_provider.queue(Reply(content="alpha beta STOP gamma delta"))
        try:
            if flavour == "sync":
                for chunk in llm.stream_chat(_messages(prompt)):
                    if "STOP" in chunk.delta:
                        break
            else:
                asyncio.run(read_async())
            outcomes.append("read")
        except CircuitBreakerException:
            outcomes.append("blocked")
    assert outcomes == ["read", "blocked"] and stub_provider.count() == 1
    agentwatch.flush()
    stopped = llm_spans(memory.spans)[0]
    attributes = stopped["attributes"]
    assert attributes["stream_incomplete"] and attributes["usage_estimated"] and "usage_missing" not in attributes
    assert stopped["input_tokens"] >= 100 and 0 < stopped["output_tokens"] < 10 and stopped["cost_usd"] > 0.00001


def test_cancelling_the_task_reading_a_stream_is_no_provider_error(stub_provider: Any, memory: Any) -> None:
    """12 stops of a chat UI (the reading task cancelled mid-stream): recorded on the spans, charged from an estimate,
    and the breaker stays closed with ``max_error_rate=0.5``; a provider error still counts."""
    agentwatch.init(exporters=[memory], max_error_rate=0.5, block_on_threshold=True)
    llm = openai_llm(stub_provider)

    async def read() -> None:
        async for _ in await llm.astream_chat(_messages("a story")):
            pass

    async def stop_twelve_times() -> None:
        for stop in range(12):
            stub_provider.queue(Reply(content="word " * 40, chunk_delay=0.01))
            task = asyncio.create_task(read())
            # Mid-stream: the request has arrived (the first one, on a cold client, may take longer than a fixed
            # wait; cancelled before it, its reply would answer the next request) and some words have been read.
            for _ in range(2000):
                if stub_provider.count() > stop:
                    break
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(stop_twelve_times())
    stub_provider.queue(Reply(content="fine"))
    assert llm.chat(_messages("hi")).message.content == "fine"  # not blocked by max_error_rate
    snapshot = agentwatch.get_client().monitor.snapshot()  # type: ignore[union-attr]
    assert (snapshot["errors_in_error_window"], snapshot["state"]) == (0, "CLOSED")
    agentwatch.flush()
    stopped = llm_spans(memory.spans)[:12]
    assert {(span["status"], span["attributes"]["error.type"]) for span in stopped} == {("error", "CancelledError")}
    assert all(span["attributes"]["usage_estimated"] and span["cost_usd"] > 0 for span in stopped)
