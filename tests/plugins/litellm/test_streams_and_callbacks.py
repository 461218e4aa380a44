"""What a probe found 2026-12-05 (real LiteLLM against the stub):

- LiteLLM's callbacks saw ``call_type`` ``"function"`` and the messages ``"default-message-value"`` with AgentWatch:
  LiteLLM tells the kind of call by the ``__name__`` of the function its ``@client`` wrapper calls, which was ours;
  its own count of a stream's tokens was then of the wrong messages (10 tokens for a 100k-token prompt);
- a stream left by ``break`` without ``close()`` was never ended: no span, nothing charged, a hard budget's
  reservation held;
- a hard budget's refusal raised by the HTTP layer inside LiteLLM's provider handler came out as LiteLLM's
  ``InternalServerError`` (and was retried), not as the block.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .conftest import OPENAI, llm_spans, openai_kwargs

PROMPT = [{"role": "user", "content": "tell me a long story " * 20}]


class Seen(CustomLogger):
    """What LiteLLM hands its callbacks: the kind of call and the messages."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.calls.append((kwargs.get("call_type"), kwargs.get("messages")))

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.log_success_event(kwargs, response_obj, start_time, end_time)


def _callbacks_saw(stub: Any, seen: Seen) -> list[tuple[str, Any]]:
    seen.calls.clear()
    stub.queue(Reply(content="one"), Reply(content="two"), Reply(content="three"))
    litellm.completion(**openai_kwargs(stub))
    asyncio.run(litellm.acompletion(**openai_kwargs(stub)))
    "".join(chunk.choices[0].delta.content or "" for chunk in litellm.completion(**openai_kwargs(stub, stream=True)))
    deadline = time.monotonic() + 10  # LiteLLM logs a sync call's success on a thread of its own
    while len(seen.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    return sorted(seen.calls, key=repr)


def test_litellms_callbacks_see_what_they_see_without_agentwatch(stub_provider: Any, memory: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    seen = Seen()
    monkeypatch.setattr(litellm, "callbacks", [seen])
    without = _callbacks_saw(stub_provider, seen)
    agentwatch.init(exporters=[memory])
    assert _callbacks_saw(stub_provider, seen) == without
    assert len(without) >= 2 and all(call_type in ("completion", "acompletion") for call_type, _ in without)
    assert all(messages == [{"role": "user", "content": "hi"}] for _, messages in without)


def _dropped_stream_span(memory: Any) -> dict[str, Any]:
    """The span of a stream left unfinished, once it is dropped: LiteLLM's logging thread holds the stream a while."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        gc.collect()
        agentwatch.flush()
        spans = llm_spans(memory)
        if spans:
            return spans[0]
        time.sleep(0.05)
    raise AssertionError("the stream's call was never ended")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_stream_left_by_break_is_charged_when_dropped(stub_provider: Any, memory: Any, mode: str) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=0.000001, block_on_threshold=True)
    stub_provider.queue(Reply(content="alpha beta STOP gamma delta " * 5))

    async def read_async() -> None:
        async for chunk in await litellm.acompletion(model=OPENAI, messages=PROMPT, stream=True,
                                                     api_base=stub_provider.openai_base_url, api_key="k"):
            if "STOP" in (chunk.choices[0].delta.content or ""):
                break

    if mode == "sync":
        for chunk in litellm.completion(model=OPENAI, messages=PROMPT, stream=True,
                                        api_base=stub_provider.openai_base_url, api_key="k"):
            if "STOP" in (chunk.choices[0].delta.content or ""):
                break
        del chunk
    else:
        asyncio.run(read_async())
    span = _dropped_stream_span(memory)
    attributes = span["attributes"]
    assert attributes["stream_incomplete"] and attributes["usage_estimated"]
    assert span["input_tokens"] > 50 and span["cost_usd"] > 0.000001  # the prompt counted: LiteLLM saw it
    with pytest.raises(CircuitBreakerException):
        litellm.completion(**openai_kwargs(stub_provider))
    assert stub_provider.count() == 1


def test_a_stream_read_to_its_end_is_complete(stub_provider: Any, memory: Any) -> None:
    """LiteLLM closes a stream itself after its last chunk: that is no early close."""
    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(content="one two three", input_tokens=30, output_tokens=12))
    assert "".join(chunk.choices[0].delta.content or "" for chunk in litellm.completion(
        **openai_kwargs(stub_provider, stream=True, stream_options={"include_usage": True}))
        if chunk.choices) == "one two three"
    agentwatch.flush()
    (span,) = llm_spans(memory)
    assert "stream_incomplete" not in span["attributes"] and (span["input_tokens"], span["output_tokens"]) == (30, 12)


@pytest.mark.parametrize("retries", [0, 2])
def test_a_hard_budgets_refusal_below_litellm_reaches_the_caller_as_the_block(stub_provider: Any, memory: Any,
                                                                            retries: int) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=0.005, hard_budget=True)
    with pytest.raises(CircuitBreakerException) as caught:  # 16,000 output tokens at most: more than $0.005
        litellm.completion(**openai_kwargs(stub_provider, max_tokens=16000, num_retries=retries))
    assert caught.value.reason == "hard_budget" and stub_provider.count() == 0
    agentwatch.flush()
    assert [span["status"] for span in llm_spans(memory)] == ["blocked"]
    stub_provider.queue(Reply(content="fits"))
    litellm.completion(**openai_kwargs(stub_provider, max_tokens=50))  # a call that fits is sent
    assert stub_provider.count() == 1
