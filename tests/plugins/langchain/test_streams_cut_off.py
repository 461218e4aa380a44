"""A model call the caller cuts off (a stream left by ``break``, a cancelled task) is charged from an estimate.

Found 2026-12-05 by a probe: ``async for chunk in llm.astream(...): break`` with ``ChatOpenAI`` against the stub ended
the call (LangChain's ``on_llm_error`` with the exit) before the provider's stream was closed, so the HTTP layer's
estimate came too late: each of three stopped streams was charged $0 and sent, past a $0.00001 budget."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_openai import ChatOpenAI

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

PROMPT = "tell me a long story " * 20


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_a_stream_left_by_break_is_charged_and_the_next_call_blocked(stub_provider: Any, memory: Any,
                                                                     how: str) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=0.00001, block_on_threshold=True)
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)

    async def read_async() -> None:
        async for chunk in llm.astream(PROMPT):
            if "STOP" in chunk.content:
                break

    stub_provider.queue(Reply(content="alpha beta STOP gamma delta " * 5, chunk_delay=0.005))
    if how == "stream":
        for chunk in llm.stream(PROMPT):
            if "STOP" in chunk.content:
                break
    else:
        asyncio.run(read_async())
    with pytest.raises(CircuitBreakerException):
        llm.invoke("hi")
    assert stub_provider.count() == 1
    agentwatch.flush()
    stopped = next(span for span in memory.spans if span["kind"] == "llm" and span["status"] != "blocked")
    attributes = stopped["attributes"]
    assert attributes["usage_estimated"] and attributes["stream_incomplete"]
    assert stopped["input_tokens"] > 50 and 0 < stopped["output_tokens"] < 10 and stopped["cost_usd"] > 0.00001
    assert agentwatch.get_client().monitor.snapshot()["errors_in_error_window"] == 0  # type: ignore[union-attr]
