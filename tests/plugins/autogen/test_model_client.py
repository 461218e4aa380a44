"""The ChatCompletionClient layer: figures, streams, dedupe, explicit watch, and clean removal."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from autogen_core import EVENT_LOGGER_NAME, ComponentBase
from autogen_core.models import UserMessage
from autogen_ext.models.openai import BaseOpenAIChatCompletionClient, OpenAIChatCompletionClient
from genai_prices import Usage, calc_price

import agentwatch
from agentwatch import CircuitBreakerException
from agentwatch.plugins.autogen import is_watched, unwatch, watch
from agentwatch.plugins.autogen._patching import ORIGINAL
from tests.stubs.provider_server import Reply

from .conftest import MODEL, chat_requests, spans

HELLO = [UserMessage(content="hello", source="user")]


def expected_cost(input_tokens: int, output_tokens: int, cached: int = 0) -> float:
    usage = Usage(input_tokens=input_tokens, cache_read_tokens=cached, output_tokens=output_tokens)
    return float(calc_price(usage, MODEL, provider_id="openai").total_price)


async def test_create_records_model_tokens_cached_tokens_cost_latency(memory, stub_provider, model_client):
    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(content="hi there", input_tokens=1200, output_tokens=80, cached_tokens=1000))

    result = await model_client.create(HELLO)

    assert result.content == "hi there"
    [call] = spans(memory, "llm")
    assert call["name"] == "OpenAIChatCompletionClient"
    assert call["model"] == MODEL
    assert (call["input_tokens"], call["output_tokens"], call["cached_input_tokens"]) == (1200, 80, 1000)
    # The stub is not api.openai.com, so the price comes from the model name alone; same figure.
    assert call["cost_usd"] == pytest.approx(expected_cost(1200, 80, 1000), rel=1e-6)
    assert call["attributes"]["latency_ms"] > 0
    assert call["attributes"]["finish_reason"] == "stop"
    assert call["status"] == "ok"


async def _streamed(model_client: Any, stub: Any) -> list[Any]:
    stub.queue(Reply(content="one two three", input_tokens=40, output_tokens=3))
    items = [item async for item in model_client.create_stream(HELLO)]
    # What the caller sees: each text chunk, and the final result's content, reason and usage.
    return [item if isinstance(item, str) else (item.content, item.finish_reason, item.usage) for item in items]


async def test_stream_is_charged_once_and_streams_as_without_agentwatch(memory, stub_provider, model_client):
    """The stream's usage is the core's (``init(stream_usage=...)``): asked for where configured, its chunk
    hidden before the client reads the response, so the client yields what it would without AgentWatch."""
    plain = await _streamed(model_client, stub_provider)
    assert "stream_options" not in stub_provider.last.json

    agentwatch.init(exporters=[memory], stream_usage=[stub_provider.openai_base_url])
    watched = await _streamed(model_client, stub_provider)

    assert stub_provider.last.json["stream_options"] == {"include_usage": True}  # the core asked for usage
    assert watched == plain and "".join(item for item in watched if isinstance(item, str)) == "one two three"
    [call] = spans(memory, "llm")
    assert (call["input_tokens"], call["output_tokens"]) == (40, 3)
    assert call["attributes"]["streaming"] is True and "usage_estimated" not in call["attributes"]
    assert 0 < call["attributes"]["time_to_first_token_ms"] <= call["attributes"]["latency_ms"]
    assert call["cost_usd"] == pytest.approx(expected_cost(40, 3), rel=1e-6)
    spend = agentwatch.get_client().monitor.snapshot()["spend_last_hour"]
    assert spend == pytest.approx(call["cost_usd"])  # charged once


async def test_stream_keeps_the_callers_own_stream_options(memory, stub_provider, model_client):
    agentwatch.init(exporters=[memory])

    _ = [item async for item in model_client.create_stream(
        HELLO, extra_create_args={"stream_options": {"include_usage": False}})]

    assert stub_provider.last.json["stream_options"] == {"include_usage": False}
    [call] = spans(memory, "llm")
    # No usage came: the HTTP tap's estimate from the request and the streamed text is charged.
    assert call["attributes"]["usage_estimated"] is True and call["input_tokens"] > 0


async def test_blocked_call_sends_nothing_and_recovers(memory, stub_provider, model_client):
    agentwatch.init(exporters=[memory], max_calls_per_minute=1, block_on_threshold=True)
    await model_client.create(HELLO)

    with pytest.raises(CircuitBreakerException) as blocked:
        await model_client.create(HELLO)
    with pytest.raises(CircuitBreakerException):
        _ = [item async for item in model_client.create_stream(HELLO)]

    assert chat_requests(stub_provider) == 1
    assert [span["status"] for span in spans(memory, "llm")] == ["ok", "blocked", "blocked"]
    blocked.value.monitor.update(max_calls_per_minute=100)
    blocked.value.monitor.reset_windows()
    await model_client.create(HELLO)
    assert chat_requests(stub_provider) == 2


async def test_provider_error_is_recorded_and_the_original_error_raised(memory, stub_provider, model_client):
    import openai

    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(status=400))

    with pytest.raises(openai.BadRequestError):
        await model_client.create(HELLO)

    [call] = spans(memory, "llm")
    assert call["status"] == "error"
    assert call["attributes"]["error.type"] == "BadRequestError"


async def test_zero_config_and_explicit_watch_together_count_once(memory, stub_provider, model_client):
    agentwatch.init(exporters=[memory])
    assert watch(model_client) is model_client and watch(model_client) is model_client

    await model_client.create(HELLO)
    _ = [item async for item in model_client.create_stream(HELLO)]

    assert chat_requests(stub_provider) == 2
    llm_spans = spans(memory, "llm")
    assert len(llm_spans) == 2
    # No lower layer (an HTTP tap) recorded the same request as a span of its own.
    assert not [span for span in spans(memory) if span["kind"] == "http"]
    unwatch(model_client)
    assert not is_watched(model_client)


async def test_explicit_watch_works_with_the_plugin_disabled(memory, stub_provider, model_client):
    agentwatch.init(exporters=[memory], disabled_plugins=["autogen", "http", "openai"],
                    max_calls_per_minute=1, block_on_threshold=True)
    await model_client.create(HELLO)
    assert spans(memory, "llm") == []  # the plugin is really off: only watch() can record

    watch(model_client)
    stub_provider.queue(Reply(input_tokens=7, output_tokens=2))
    await model_client.create(HELLO)
    with pytest.raises(CircuitBreakerException):  # the second watched call of the minute
        _ = [item async for item in model_client.create_stream(HELLO)]

    assert chat_requests(stub_provider) == 2
    recorded = [(span["status"], span["input_tokens"]) for span in spans(memory, "llm")]
    assert recorded == [("ok", 7), ("blocked", 0)]


async def test_a_client_class_defined_after_init_is_watched_once_through_super(memory, stub_provider):
    agentwatch.init(exporters=[memory])

    class LoggingClient(OpenAIChatCompletionClient):
        async def create(self, *args: Any, **kwargs: Any) -> Any:
            return await super().create(*args, **kwargs)

    assert hasattr(LoggingClient.__dict__["create"], ORIGINAL)
    client = LoggingClient(model=MODEL, base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)
    await client.create(HELLO)

    assert len(spans(memory, "llm")) == 1 == chat_requests(stub_provider)


async def test_shutdown_removes_every_patch_and_init_starts_clean(memory, stub_provider, model_client):
    event_logger = logging.getLogger(EVENT_LOGGER_NAME)
    level_before, filters_before = event_logger.level, list(event_logger.filters)
    agentwatch.init(exporters=[memory])
    assert hasattr(BaseOpenAIChatCompletionClient.__dict__["create"], ORIGINAL)
    assert "__init_subclass__" in ComponentBase.__dict__

    agentwatch.shutdown()

    patched = [cls for cls in (OpenAIChatCompletionClient, *OpenAIChatCompletionClient.__mro__)
               for name in ("create", "create_stream") if hasattr(cls.__dict__.get(name), ORIGINAL)]
    assert patched == []
    assert "__init_subclass__" not in ComponentBase.__dict__
    assert (event_logger.level, event_logger.filters) == (level_before, filters_before)
    await model_client.create(HELLO)
    assert memory.spans == [] or all(span["kind"] != "llm" for span in memory.spans)

    second = agentwatch.InMemoryExporter()
    agentwatch.init(exporters=[second])
    await model_client.create(HELLO)
    assert len(spans(second, "llm")) == 1


async def test_events_do_not_reach_the_applications_handlers(memory, stub_provider, model_client):
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Collect(level=logging.NOTSET)
    logging.getLogger().addHandler(handler)
    try:
        agentwatch.init(exporters=[memory])
        await model_client.create(HELLO)
    finally:
        logging.getLogger().removeHandler(handler)

    assert spans(memory, "llm")[0]["cached_input_tokens"] == 0
    assert [record for record in seen if record.name == EVENT_LOGGER_NAME] == []


async def test_a_stream_stopped_early_is_charged_from_an_estimate(memory, stub_provider, model_client):
    """``create_stream`` closed after a few chunks (a chat UI's stop): AutoGen leaves the provider's stream open, so
    the HTTP layer's estimate came after the call had ended and it was charged $0 (found by a probe). It is charged
    from an estimate of the prompt and the text so far, and the next call is blocked by the budget."""
    agentwatch.init(exporters=[memory], budget_per_hour=0.00001, block_on_threshold=True)
    prompt = [UserMessage(content="tell me a long story " * 20, source="user")]
    stub_provider.queue(Reply(content="alpha beta STOP gamma delta " * 5, chunk_delay=0.01))
    stream = model_client.create_stream(prompt)
    first, second = await stream.__anext__(), await stream.__anext__()
    await stream.aclose()
    with pytest.raises(CircuitBreakerException):
        await model_client.create(HELLO)
    assert chat_requests(stub_provider) == 1
    stopped = spans(memory, "llm")[0]
    assert stopped["attributes"]["usage_estimated"] and stopped["attributes"]["stream_incomplete"]
    assert stopped["input_tokens"] > 50 and 0 < stopped["output_tokens"] < 10 and stopped["cost_usd"] > 0.00001
    assert isinstance(first, str) and isinstance(second, str)
