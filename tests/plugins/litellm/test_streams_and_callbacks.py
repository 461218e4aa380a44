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
import weakref
from typing import Any

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .conftest import OPENAI, anthropic_kwargs, llm_spans, openai_kwargs

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


def _collected(stream: weakref.ref[Any]) -> None:
    """Wait until the collector has taken the dropped stream: LiteLLM's logging thread holds it a while."""
    deadline = time.monotonic() + 10
    while stream() is not None:
        assert time.monotonic() < deadline, "the stream was never collected"
        gc.collect()
        time.sleep(0.02)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_stream_left_by_break_is_charged_once_dropped(stub_provider: Any, memory: Any, mode: str) -> None:
    """Charged before the next call is checked (not from the finaliser: it may run while a lock is held)."""
    agentwatch.init(exporters=[memory], budget_per_hour=0.000001, block_on_threshold=True)
    stub_provider.queue(Reply(content="alpha beta STOP gamma delta " * 5))
    kwargs = {"model": OPENAI, "messages": PROMPT, "stream": True, "api_base": stub_provider.openai_base_url,
              "api_key": "k"}
    dropped: list[weakref.ref[Any]] = []

    async def read_async() -> None:
        stream = await litellm.acompletion(**kwargs)
        dropped.append(weakref.ref(stream))
        async for chunk in stream:
            if "STOP" in (chunk.choices[0].delta.content or ""):
                break

    def read() -> None:
        stream = litellm.completion(**kwargs)
        dropped.append(weakref.ref(stream))
        for chunk in stream:
            if "STOP" in (chunk.choices[0].delta.content or ""):
                break

    read() if mode == "sync" else asyncio.run(read_async())
    _collected(dropped[0])
    with pytest.raises(CircuitBreakerException):
        litellm.completion(**openai_kwargs(stub_provider))
    assert stub_provider.count() == 1
    agentwatch.flush()
    span = next(span for span in llm_spans(memory) if span["status"] == "ok")
    attributes = span["attributes"]
    assert attributes["stream_incomplete"] and attributes["usage_estimated"]
    assert span["input_tokens"] > 50 and span["cost_usd"] > 0.000001  # the prompt counted: LiteLLM saw it


def test_a_stream_closed_after_its_finish_chunk_ends_its_call(stub_provider: Any, memory: Any) -> None:
    """LiteLLM marks the last chunk as sent with the finish_reason chunk: a caller that stops there and closes the
    stream ends its call (complete), and a hard budget's reservation is released (review of 2026-12-05)."""
    agentwatch.init(exporters=[memory], budget_per_hour=0.01, hard_budget=True)
    for _ in range(3):
        stub_provider.queue(Reply(content="one two", input_tokens=30, output_tokens=12))
        with litellm.completion(**openai_kwargs(stub_provider, stream=True, max_tokens=4000)) as stream:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].finish_reason:
                    break
    agentwatch.flush()
    spans = llm_spans(memory)
    assert [span["status"] for span in spans] == ["ok"] * 3 and stub_provider.count() == 3
    assert all(span["cost_usd"] > 0 for span in spans)
    assert agentwatch.get_client().monitor.snapshot()["reserved"] == 0  # type: ignore[union-attr]


def test_a_provider_error_made_while_handling_a_block_stays_that_error(stub_provider: Any, memory: Any) -> None:
    """A call made in the ``except`` of an earlier block (a fallback outside the blocked agent) that fails at the
    provider raises LiteLLM's error, not the earlier block found in its context (review of 2026-12-05)."""
    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(content="spent", input_tokens=1000, output_tokens=100))
    try:
        with agentwatch.agent("research", budget_per_hour=0.0001, block_on_threshold=True):
            litellm.completion(**openai_kwargs(stub_provider))
            litellm.completion(**openai_kwargs(stub_provider))
    except CircuitBreakerException:
        stub_provider.queue(Reply(status=400))
        with pytest.raises(litellm.BadRequestError):  # outside the agent, and the provider says no
            litellm.completion(**openai_kwargs(stub_provider))
    agentwatch.flush()
    assert [span["status"] for span in llm_spans(memory)] == ["ok", "blocked", "error"]


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


class Attempts(CustomLogger):
    """The attempts LiteLLM makes of a call: one ``log_pre_api_call`` each (its ``num_retries`` re-run the whole
    attempt)."""

    def __init__(self) -> None:
        super().__init__()
        self.models: list[str] = []

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        self.models.append(model)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_hard_budgets_refusal_below_litellm_is_not_retried_by_num_retries(stub_provider: Any, memory: Any,
                                                                            mode: str) -> None:
    """A probe found the refusal (no ``max_tokens``: gpt-4o's worst case $0.16 against $0.05) re-run 1 + num_retries
    times by LiteLLM: ``on_block`` and LiteLLM's loggers saw 4 attempts for ``num_retries=3``, each refused again."""
    blocks: list[Any] = []
    agentwatch.init(exporters=[memory], budget_per_hour=0.05, hard_budget=True, on_block=blocks.append)
    attempts = Attempts()
    litellm.callbacks = [attempts]
    try:
        kwargs = openai_kwargs(stub_provider, model="openai/gpt-4o", num_retries=3)
        with pytest.raises(CircuitBreakerException) as caught:
            if mode == "sync":
                litellm.completion(**kwargs)
            else:
                asyncio.run(litellm.acompletion(**kwargs))
    finally:
        litellm.callbacks = []
    assert caught.value.reason == "hard_budget" and stub_provider.count() == 0
    assert len(blocks) == 1 and attempts.models == ["gpt-4o"]
    agentwatch.flush()
    assert [span["status"] for span in llm_spans(memory)] == ["blocked"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_fallback_with_retries_made_while_handling_a_block_is_not_refused_by_it(stub_provider: Any, memory: Any,
                                                                                 mode: str) -> None:
    """Found by review: the program catches a block of its agent and falls back, in its ``except``, to
    ``completion_with_retries`` outside that agent; the old block, being handled, was raised again although no
    limit blocked the fallback."""
    agentwatch.init(exporters=[memory])
    kwargs = openai_kwargs(stub_provider, model="openai/gpt-4o-mini")
    stub_provider.queue(Reply(content="one", input_tokens=1000, output_tokens=100))
    with agentwatch.agent("expensive", budget_per_hour=0.0001, block_on_threshold=True):
        litellm.completion(**kwargs)
    try:
        with agentwatch.agent("expensive"):
            litellm.completion(**kwargs)
    except CircuitBreakerException:
        stub_provider.queue(Reply(content="fallback"))
        if mode == "sync":
            answer = litellm.completion_with_retries(**kwargs, num_retries=2)
        else:
            answer = asyncio.run(litellm.acompletion_with_retries(**kwargs, num_retries=2))
    assert answer.choices[0].message.content == "fallback" and stub_provider.count() == 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_anthropic_stream_read_to_its_end_is_complete(stub_provider: Any, memory: Any, mode: str) -> None:
    """LiteLLM's sync Anthropic stream ends after ``message_delta`` (the stop reason and final usage) and closes the
    body without reading the empty ``message_stop``: the stream was read to its end, not cut off."""
    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(content="one two three", input_tokens=200, output_tokens=30))

    async def read_async() -> str:
        stream = await litellm.acompletion(**anthropic_kwargs(stub_provider, stream=True))
        return "".join([chunk.choices[0].delta.content or "" async for chunk in stream])

    text = "".join(chunk.choices[0].delta.content or "" for chunk in litellm.completion(
        **anthropic_kwargs(stub_provider, stream=True))) if mode == "sync" else asyncio.run(read_async())
    assert text == "one two three"
    agentwatch.flush()
    (span,) = llm_spans(memory)
    assert "stream_incomplete" not in span["attributes"] and "usage_estimated" not in span["attributes"]
    assert (span["status"], span["input_tokens"], span["output_tokens"]) == ("ok", 200, 30)
