"""The anthropic SDK against the stub provider: messages and streams, cache usage, limits in the SDK."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from tests.plugins.providers.conftest import SpansOf, calls_counted
from tests.stubs.provider_server import Reply, StubProvider

MESSAGES = [{"role": "user", "content": "hi"}]
MODEL = "claude-haiku-4-5"


@pytest.fixture
def claude(stub_provider: StubProvider) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stub_provider.base_url, api_key="sk-ant-secret", max_retries=0)


@pytest.fixture
def aclaude(stub_provider: StubProvider) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=stub_provider.base_url, api_key="sk-ant-secret", max_retries=0)


def test_message_counts_cache_reads_and_writes_into_input(watch: Any, llm_spans: SpansOf,
                                                          stub_provider: StubProvider,
                                                          claude: anthropic.Anthropic) -> None:
    client = watch()
    stub_provider.queue(Reply(content="hey", input_tokens=100, output_tokens=20, cached_tokens=300,
                              cache_creation_tokens=50))
    assert claude.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES).content[0].text == "hey"
    [span] = llm_spans()
    assert (span["name"], span["model"], span["provider"]) == ("anthropic.messages", MODEL, "anthropic")
    # Anthropic's input_tokens excludes the cache; the span's includes it.
    assert (span["input_tokens"], span["output_tokens"], span["cached_input_tokens"]) == (450, 20, 300)
    assert span["attributes"]["cache_write_tokens"] == 50
    assert span["attributes"]["finish_reason"] == "end_turn"
    assert span["attributes"]["http.request_id"] == "req_stub1"
    assert span["cost_usd"] > 0
    assert calls_counted(client) == 1


def test_stream_helper_and_raw_stream(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                      claude: anthropic.Anthropic) -> None:
    watch()
    stub_provider.queue(Reply(content="x y z", input_tokens=9, output_tokens=3, cached_tokens=1),
                        Reply(content="", tool_calls=[{"name": "lookup", "arguments": {"q": 1}}],
                              output_tokens=4))
    with claude.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        assert list(stream.text_stream) == ["x ", "y ", "z"]
    events = [event.type for event in claude.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES,
                                                             stream=True)]
    assert events[-1] == "message_stop"
    helper, raw = llm_spans()
    assert (helper["input_tokens"], helper["output_tokens"], helper["cached_input_tokens"]) == (10, 3, 1)
    assert "time_to_first_token_ms" in helper["attributes"]
    assert raw["output_tokens"] == 4 and raw["attributes"]["finish_reason"] == "tool_use"
    assert "stream_incomplete" not in helper["attributes"] and "stream_incomplete" not in raw["attributes"]


def test_stream_left_early_ends_the_span(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                         claude: anthropic.Anthropic) -> None:
    watch()
    stub_provider.queue(Reply(content="a b c d e f", chunk_delay=0.01))
    with claude.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        for _text in stream.text_stream:
            break
    [span] = llm_spans()
    assert span["attributes"]["stream_incomplete"] is True
    assert span["input_tokens"] == 10  # message_start had already arrived


def test_overloaded_error(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                         claude: anthropic.Anthropic) -> None:
    client = watch()
    stub_provider.queue(Reply(status=529))
    with pytest.raises(anthropic.APIStatusError):
        claude.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    [span] = llm_spans()
    assert span["status"] == "error" and span["attributes"]["http.status_code"] == 529
    assert client.monitor.snapshot()["errors_in_error_window"] == 1


async def test_async_message_and_stream(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                        aclaude: anthropic.AsyncAnthropic) -> None:
    watch()
    stub_provider.queue(Reply(input_tokens=5, output_tokens=1), Reply(content="p q", input_tokens=6,
                                                                      output_tokens=2))
    await aclaude.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    async with aclaude.messages.stream(model=MODEL, max_tokens=8, messages=MESSAGES) as stream:
        assert [text async for text in stream.text_stream] == ["p ", "q"]
    plain, streamed = llm_spans()
    assert (plain["input_tokens"], plain["output_tokens"]) == (5, 1)
    assert (streamed["input_tokens"], streamed["output_tokens"]) == (6, 2)


def test_a_call_whose_attempts_time_out_is_charged_for_each_prompt_sent(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider) -> None:
    """Found 2026-12-07: ``APITimeoutError`` after the client's own ``timeout=`` and its retries was charged $0; each
    attempt reached the provider, which bills its prompt: each is charged an estimate of it."""

    class QuickRetries(anthropic.Anthropic):  # the real client, its retries' backoff cut short
        def _calculate_retry_timeout(self, *args: Any, **kwargs: Any) -> float:
            return 0.01

    client = watch()
    prompt = [{"role": "user", "content": "summarise this report " * 200}]
    stub_provider.queue(*[Reply(content="late", delay=1.0)] * 2)
    slow = QuickRetries(base_url=stub_provider.base_url, api_key="k", timeout=0.3, max_retries=1)
    with pytest.raises(anthropic.APITimeoutError):
        slow.messages.create(model=MODEL, max_tokens=64, messages=prompt)
    assert stub_provider.count() == 2
    [span] = llm_spans()
    attributes = span["attributes"]
    assert (attributes["error.type"], attributes["http.attempts"], attributes["usage_estimated"]) == (
        "APITimeoutError", 2, True)
    assert span["input_tokens"] > 1200 and span["output_tokens"] == 0 and span["cost_usd"] > 0
    assert client.monitor.snapshot()["spend_last_hour"] == pytest.approx(span["cost_usd"])


def test_blocked_before_sending(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider) -> None:
    client = watch()
    retrying = anthropic.Anthropic(base_url=stub_provider.base_url, api_key="k", max_retries=3)
    client.monitor.pause(60)
    with pytest.raises(CircuitBreakerException):
        retrying.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    with pytest.raises(CircuitBreakerException):
        with retrying.messages.stream(model=MODEL, max_tokens=8, messages=MESSAGES):
            pass
    assert stub_provider.count() == 0
    assert [span["status"] for span in llm_spans()] == ["blocked", "blocked"]


async def test_blocked_async_before_sending(watch: Any, stub_provider: StubProvider,
                                            aclaude: anthropic.AsyncAnthropic) -> None:
    client = watch()
    client.monitor.pause(60)
    with pytest.raises(CircuitBreakerException):
        await aclaude.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    assert stub_provider.count() == 0


def test_merged_into_an_enclosing_call(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                       claude: anthropic.Anthropic) -> None:
    client = watch(providers={stub_provider.base_url: "anthropic"})
    stub_provider.queue(Reply(input_tokens=10, cached_tokens=90, output_tokens=3))
    with agentwatch.llm_call("framework.chat", model=MODEL, provider="anthropic"):
        claude.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    [span] = llm_spans()
    assert span["name"] == "framework.chat"
    assert (span["input_tokens"], span["cached_input_tokens"]) == (100, 90)
    assert calls_counted(client) == 1


def test_count_tokens_is_not_an_llm_call(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                         claude: anthropic.Anthropic) -> None:
    watch()
    stub_provider.queue(Reply(raw_body=b'{"input_tokens": 3}'))
    claude.messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert stub_provider.last.path == "/v1/messages/count_tokens"
    assert llm_spans() == []


# Claude Sonnet 4.5 as published (https://www.anthropic.com/pricing#api) and as genai-prices 0.2.3 holds it: $3.00
# input, $15.00 output per 1M tokens, $3.75 / $6.00 per 1M for 5-minute / 1-hour cache writes, $10 per 1,000 web
# searches.
SONNET = "claude-sonnet-4-5"


def _claude_call(claude: anthropic.Anthropic, stream: bool) -> None:
    if stream:
        with claude.messages.stream(model=SONNET, max_tokens=64, messages=MESSAGES) as events:
            events.get_final_message()
    else:
        claude.messages.create(model=SONNET, max_tokens=64, messages=MESSAGES)


@pytest.mark.parametrize("capture", [False, True], ids=["plain", "captured"])
@pytest.mark.parametrize("stream", [False, True], ids=["message", "stream"])
def test_web_searches_are_charged_and_count_toward_the_budget(watch: Any, llm_spans: SpansOf,
                                                              stub_provider: StubProvider,
                                                              claude: anthropic.Anthropic, stream: bool,
                                                              capture: bool) -> None:
    client = watch(budget_per_hour=100.0, capture_messages=capture)
    stub_provider.queue(Reply(input_tokens=100, output_tokens=10, web_search_requests=5),
                        Reply(input_tokens=100, output_tokens=10))
    _claude_call(claude, stream)
    _claude_call(claude, stream)
    searched, plain = llm_spans()
    tokens = 100 * 3.00 / 1e6 + 10 * 15.00 / 1e6
    assert searched["cost_usd"] == pytest.approx(tokens + 5 * 10.00 / 1000, rel=1e-9)  # $0.05045
    assert searched["attributes"]["web_search_requests"] == 5
    assert plain["cost_usd"] == pytest.approx(tokens, rel=1e-9)
    assert "web_search_requests" not in plain["attributes"]
    assert "cost_estimated" not in searched["attributes"]
    assert client.monitor.snapshot()["spend_last_hour"] == pytest.approx(2 * tokens + 0.05, rel=1e-9)


@pytest.mark.parametrize("capture", [False, True], ids=["plain", "captured"])
@pytest.mark.parametrize("stream", [False, True], ids=["message", "stream"])
def test_one_hour_cache_writes_are_priced_at_their_rate(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                                        claude: anthropic.Anthropic, stream: bool,
                                                        capture: bool) -> None:
    # usage.cache_creation splits cache_creation_input_tokens by time to live: 1-hour writes cost $6.00 per 1M on
    # Sonnet 4.5, 5-minute ones $3.75.
    client = watch(budget_per_hour=100.0, capture_messages=capture)
    stub_provider.queue(Reply(input_tokens=50, output_tokens=20, cache_creation_tokens=3000,
                              cache_creation_1h_tokens=3000),
                        Reply(input_tokens=50, output_tokens=20, cache_creation_tokens=3000,
                              cache_creation_1h_tokens=1000))
    _claude_call(claude, stream)
    _claude_call(claude, stream)
    hour, mixed = llm_spans()
    assert hour["cost_usd"] == pytest.approx((50 * 3.00 + 3000 * 6.00 + 20 * 15.00) / 1e6, rel=1e-9)  # $0.01845
    assert mixed["cost_usd"] == pytest.approx((50 * 3.00 + 2000 * 3.75 + 1000 * 6.00 + 20 * 15.00) / 1e6, rel=1e-9)
    assert (hour["input_tokens"], hour["attributes"]["cache_write_tokens"]) == (3050, 3000)
    assert hour["attributes"]["cache_write_1h_tokens"] == 3000 and mixed["attributes"]["cache_write_1h_tokens"] == 1000
    assert client.monitor.snapshot()["spend_last_hour"] == pytest.approx(hour["cost_usd"] + mixed["cost_usd"])


@pytest.mark.parametrize("stream", [False, True], ids=["message", "stream"])
def test_captured_output_keeps_the_models_tool_calls(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                                     claude: anthropic.Anthropic, stream: bool) -> None:
    # The same shape as OpenAI's (tests/plugins/providers/test_openai.py): the text and [{id, name, arguments}],
    # the arguments as the JSON text of the tool_use block's input.
    watch(capture_messages=True)
    weather = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    stub_provider.queue(Reply(content="", tool_calls=weather), Reply(content="Looking.", tool_calls=weather))
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    for _ in range(2):
        if stream:
            with claude.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES,
                                        tools=tools) as events:  # type: ignore[arg-type]
                events.get_final_message()
        else:
            claude.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, tools=tools)  # type: ignore
    bare, with_text = llm_spans()
    for span, text in ((bare, None), (with_text, "Looking.")):
        output = span["output"]
        assert (output["role"], output["content"]) == ("assistant", text)
        [call] = output["tool_calls"]
        assert set(call) == {"id", "name", "arguments"} and call["id"].startswith("toolu_")
        assert (call["name"], json.loads(call["arguments"])) == ("get_weather", {"city": "Paris"})


@pytest.mark.parametrize("stream", [False, True], ids=["message", "stream"])
def test_captured_input_has_the_system_prompt_and_reply_blocks_as_json(watch: Any, llm_spans: SpansOf,
                                                                       stub_provider: StubProvider,
                                                                       claude: anthropic.Anthropic,
                                                                       stream: bool) -> None:
    watch(capture_messages=True)
    weather = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    stub_provider.queue(Reply(content="Let me look.", tool_calls=weather), Reply(content="Sunny."))
    system = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    first = claude.messages.create(model=MODEL, max_tokens=64, system="You are terse.", messages=MESSAGES,
                                   tools=tools)  # type: ignore[arg-type]
    # The reply's content blocks (the SDK's own objects) passed back, as its docs show for tool use.
    history = [*MESSAGES, {"role": "assistant", "content": first.content},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_stub1_0",
                                             "content": "sunny"}]}]
    if stream:
        with claude.messages.stream(model=MODEL, max_tokens=64, system=system, messages=history,  # type: ignore
                                    tools=tools) as events:  # type: ignore[arg-type]
            events.get_final_message()
    else:
        claude.messages.create(model=MODEL, max_tokens=64, system=system, messages=history,  # type: ignore
                               tools=tools)  # type: ignore[arg-type]
    asked, answered = llm_spans()
    assert asked["input"] == [{"role": "system", "content": "You are terse."}, *MESSAGES]
    assert answered["input"][0] == {"role": "system", "content": system}
    assert answered["input"][2] == {"role": "assistant", "content": [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_stub1_0", "name": "get_weather", "input": {"city": "Paris"}}]}
    assert answered["input"][3] == history[2]
    assert answered["input"][1:] == stub_provider.requests[1].json["messages"]  # what the SDK sent


@pytest.mark.parametrize("stream", [False, True], ids=["message", "stream"])
def test_captured_input_of_a_call_without_a_system_prompt_has_no_system_message(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider, claude: anthropic.Anthropic, stream: bool) -> None:
    """The SDK's request options hold its ``Omit`` / ``NotGiven`` sentinel for an argument not given: that is no
    system prompt (it was captured, and exported over OTLP, as a system message ``<anthropic.Omit object ...>``)."""
    watch(capture_messages=True)
    stub_provider.queue(Reply(content="hi"))
    if stream:
        with claude.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as events:  # type: ignore[arg-type]
            events.get_final_message()
    else:
        claude.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)  # type: ignore[arg-type]
    (span,) = llm_spans()
    assert span["input"] == MESSAGES
    assert "system" not in stub_provider.requests[0].json
