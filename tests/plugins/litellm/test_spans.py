"""One span and one charge per LiteLLM request, with the HTTP layer on: sync, async, streams, embeddings, Router."""

from __future__ import annotations

import asyncio
from typing import Any

import litellm
import pytest

import agentwatch
from tests.stubs.provider_server import Reply

from .conftest import ANTHROPIC, MESSAGES, OPENAI, anthropic_kwargs, llm_spans, openai_kwargs


def _charged(memory: Any) -> float:
    """What the global monitor was charged: must equal the sum of the spans' costs (one charge each)."""
    return float(agentwatch.get_client().monitor.snapshot()["spend_last_hour"])


def _assert_one_span_per_request(memory: Any, stub: Any) -> list[dict[str, Any]]:
    agentwatch.flush()
    spans = llm_spans(memory)
    assert len(spans) == stub.count()  # the HTTP layer joined each call, it opened none of its own
    assert all(span["name"].startswith("litellm.") for span in spans)
    assert all(span["attributes"].get("http.status_code") == 200 for span in spans)  # and it did see them
    # Each sent once. Found 2026-12-06: an async OpenAI call said http.attempts 2, its one request counted by httpx's
    # tap and again by the one in LiteLLM's aiohttp transport below it.
    assert [span["attributes"].get("http.attempts") for span in spans] == [None] * len(spans)
    assert _charged(memory) == pytest.approx(sum(span["cost_usd"] for span in spans))
    return spans


def test_sync_async_embedding_text_completion(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    assert {"litellm", "http"} <= set(agentwatch.get_client().instrumented)
    stub_provider.queue(Reply(content="first", input_tokens=100, output_tokens=20, cached_tokens=40),
                        Reply(content="claude", input_tokens=100, output_tokens=20, cached_tokens=40,
                              cache_creation_tokens=10))
    first = litellm.completion(**openai_kwargs(stub_provider))
    claude = litellm.completion(**anthropic_kwargs(stub_provider))
    litellm.embedding(model="openai/text-embedding-3-small", input=["a", "b"], api_base=stub_provider.openai_base_url,
                      api_key="test-key")
    text = litellm.text_completion(model=ANTHROPIC, prompt="hi", api_base=stub_provider.base_url, api_key="test-key")

    async def run() -> None:
        await litellm.acompletion(**openai_kwargs(stub_provider))
        await litellm.aembedding(model="openai/text-embedding-3-small", input="a",
                                 api_base=stub_provider.openai_base_url, api_key="test-key")

    asyncio.run(run())
    assert first.choices[0].message.content == "first" and claude.choices[0].message.content == "claude"
    assert text.choices[0].text == "ok"

    spans = _assert_one_span_per_request(memory, stub_provider)
    by_name = [(span["name"], span["kind"], span["model"], span["provider"]) for span in spans]
    assert by_name == [
        ("litellm.completion", "llm", OPENAI, "openai"),
        ("litellm.completion", "llm", ANTHROPIC, "anthropic"),
        ("litellm.embedding", "embedding", "openai/text-embedding-3-small", "openai"),
        ("litellm.text_completion", "llm", ANTHROPIC, "anthropic"),
        ("litellm.acompletion", "llm", OPENAI, "openai"),
        ("litellm.aembedding", "embedding", "openai/text-embedding-3-small", "openai")]
    openai_span, claude_span = spans[0], spans[1]
    assert (openai_span["input_tokens"], openai_span["output_tokens"], openai_span["cached_input_tokens"]) == (
        100, 20, 40)
    # Anthropic's input excludes cache reads and writes on the wire; the span counts them in.
    assert (claude_span["input_tokens"], claude_span["cached_input_tokens"]) == (150, 40)
    assert claude_span["attributes"]["cache_write_tokens"] == 10
    client = agentwatch.get_client()
    assert openai_span["cost_usd"] == pytest.approx(client.pricer.price(OPENAI, "openai", 100, 20, 40).cost_usd)
    assert all(span["attributes"]["cost.source"] == "genai-prices" for span in spans)
    assert all(span["cost_usd"] > 0 and not span["attributes"].get("cost_estimated") for span in spans)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_streams(stub_provider: Any, memory: Any, provider: str, include_usage: bool, mode: str) -> None:
    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(content="one two three four", input_tokens=30, output_tokens=12))
    make = openai_kwargs if provider == "openai" else anthropic_kwargs
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    kwargs = make(stub_provider, stream=True, **extra)
    if mode == "sync":
        chunks = list(litellm.completion(**kwargs))
    else:
        async def run() -> list[Any]:
            return [chunk async for chunk in await litellm.acompletion(**kwargs)]

        chunks = asyncio.run(run())
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "one two three four"
    # The caller gets a usage chunk only if it asked for one.
    assert any(getattr(chunk, "usage", None) for chunk in chunks) == include_usage

    (span,) = _assert_one_span_per_request(memory, stub_provider)
    assert span["status"] == "ok" and "time_to_first_token_ms" in span["attributes"]
    if provider == "openai" and not include_usage:
        # The provider sent no usage: LiteLLM's count of the prompt and the streamed text, flagged.
        assert span["attributes"]["usage_estimated"] is True and span["attributes"]["cost_estimated"] is True
        assert 0 < span["input_tokens"] < 30 and 0 < span["output_tokens"] < 12
    else:
        assert (span["input_tokens"], span["output_tokens"]) == (30, 12)
        assert "usage_estimated" not in span["attributes"]
    assert span["cost_usd"] > 0


def test_router_is_one_span_per_request(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    router = litellm.Router(model_list=[
        {"model_name": "main", "litellm_params": {"model": OPENAI, "api_base": stub_provider.openai_base_url,
                                                  "api_key": "test-key"}},
        {"model_name": "claude", "litellm_params": {"model": ANTHROPIC, "api_base": stub_provider.base_url,
                                                    "api_key": "test-key"}}])
    router.completion(model="main", messages=MESSAGES)
    asyncio.run(router.acompletion(model="claude", messages=MESSAGES))
    spans = _assert_one_span_per_request(memory, stub_provider)
    assert stub_provider.count() == 2
    assert [(span["model"], span["provider"]) for span in spans] == [(OPENAI, "openai"), (ANTHROPIC, "anthropic")]


def test_litellm_cost_map_prices_what_genai_prices_does_not_know(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    model = "openai/gpt-luna-latest"  # in LiteLLM's bundled map, not in genai-prices
    assert agentwatch.get_client().pricer.rates(model, "openai").source == "default"
    litellm.completion(**openai_kwargs(stub_provider, model=model))
    litellm.completion(**openai_kwargs(stub_provider, model="openai/no-such-model-anywhere"))
    known, unknown = _assert_one_span_per_request(memory, stub_provider)
    rates = litellm.model_cost["gpt-luna-latest"]
    assert known["cost_usd"] == pytest.approx(10 * rates["input_cost_per_token"] + 5 * rates["output_cost_per_token"])
    assert known["attributes"]["cost.source"] == "litellm" and "cost_estimated" not in known["attributes"]
    assert unknown["attributes"]["cost.source"] == "default" and unknown["attributes"]["cost_estimated"] is True
    assert unknown["cost_usd"] == pytest.approx((10 * 1.0 + 5 * 2.0) / 1e6)  # DEFAULT_RATES


def test_uninstalled_on_shutdown(stub_provider: Any, memory: Any) -> None:
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

    names = ("completion", "acompletion", "embedding", "aembedding", "text_completion", "atext_completion")
    originals = {name: getattr(litellm, name) for name in names}
    stream_next = CustomStreamWrapper.__dict__["__next__"]
    agentwatch.init(exporters=[memory])
    assert all(getattr(litellm, name).__wrapped__ is originals[name] for name in names)
    agentwatch.shutdown()
    assert all(getattr(litellm, name) is originals[name] for name in names)
    assert CustomStreamWrapper.__dict__["__next__"] is stream_next
    litellm.completion(**openai_kwargs(stub_provider))
    assert stub_provider.count() == 1 and not llm_spans(memory)


def test_stream_closed_early_is_charged_for_what_was_streamed(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(content="one two three four five six", input_tokens=30, output_tokens=12))
    with litellm.completion(**openai_kwargs(stub_provider, stream=True)) as stream:
        for _chunk in stream:
            break
    (span,) = _assert_one_span_per_request(memory, stub_provider)
    assert span["attributes"]["stream_incomplete"] is True and span["cost_usd"] > 0


def test_router_streams(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(content="a b c", input_tokens=30, output_tokens=12),
                        Reply(content="d e f", input_tokens=40, output_tokens=13))
    router = litellm.Router(model_list=[
        {"model_name": "claude", "litellm_params": {"model": ANTHROPIC, "api_base": stub_provider.base_url,
                                                    "api_key": "test-key"}}])
    text = "".join(chunk.choices[0].delta.content or "" for chunk in
                   router.completion(model="claude", messages=MESSAGES, stream=True))

    async def run() -> str:
        stream = await router.acompletion(model="claude", messages=MESSAGES, stream=True)
        return "".join([chunk.choices[0].delta.content or "" async for chunk in stream])

    assert (text, asyncio.run(run())) == ("a b c", "d e f")
    spans = _assert_one_span_per_request(memory, stub_provider)
    assert [(span["input_tokens"], span["output_tokens"], span["status"]) for span in spans] == [
        (30, 12, "ok"), (40, 13, "ok")]


def test_a_framework_call_around_litellm_is_joined_not_counted_again(stub_provider: Any, memory: Any) -> None:
    """A framework that routes through LiteLLM (CrewAI, LangChain's ChatLiteLLM) opens and activates its
    own call; LiteLLM's request then adds to it."""
    agentwatch.init(exporters=[memory])
    with agentwatch.llm_call("framework.llm", model="gpt-4o-mini", provider="openai"):
        litellm.completion(**openai_kwargs(stub_provider))
    agentwatch.flush()
    (span,) = llm_spans(memory)
    assert span["name"] == "framework.llm" and (span["input_tokens"], span["output_tokens"]) == (10, 5)


@pytest.mark.parametrize(("model", "provider"), [
    ("bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0", "bedrock"),
    ("vertex_ai/gemini-1.5-pro", "vertex_ai"),
    ("anthropic/claude-3-5-haiku-20241022", "anthropic"),
    ("gpt-4o-mini", "openai")])
def test_model_and_provider_as_litellm_names_them(memory: Any, model: str, provider: str) -> None:
    """LiteLLM's ``mock_response`` answers without a request, so any provider's naming can be checked."""
    agentwatch.init(exporters=[memory])
    litellm.completion(model=model, messages=MESSAGES, mock_response="hi")
    agentwatch.flush()
    (span,) = llm_spans(memory)
    assert (span["model"], span["provider"]) == (model, provider)
    assert span["input_tokens"] > 0 and span["cost_usd"] > 0
    assert span["attributes"]["cost.source"] in ("genai-prices", "litellm")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_attempts_of_num_retries_that_time_out_are_each_charged_their_prompt(stub_provider: Any, memory: Any,
                                                                             mode: str) -> None:
    """Found 2026-12-07 (review): each of LiteLLM's ``num_retries`` sends the request anew through an SDK call of its
    own, joining the one LiteLLM call, and each timed-out SDK call's estimate replaced the one before: five prompts
    sent to a slow provider were charged as one. They now add up; a call answered after some timed out is still
    charged the answer's usage only (as the SDK's own retries)."""
    agentwatch.init(exporters=[memory])
    prompt = [{"role": "user", "content": "summarise this report " * 200}]

    def call(retries: int) -> Any:
        kwargs = openai_kwargs(stub_provider, messages=prompt, timeout=0.5, max_retries=0, num_retries=retries)
        if mode == "sync":
            return litellm.completion(**kwargs)
        return asyncio.run(litellm.acompletion(**kwargs))

    slow = Reply(content="late", delay=3.0)
    for retries in (0, 2):
        stub_provider.queue(*[slow] * 8)
        with pytest.raises(litellm.Timeout):
            call(retries)
        stub_provider.clear()
    stub_provider.queue(slow, Reply(content="on time", input_tokens=100, output_tokens=20))
    call(1)
    agentwatch.flush()
    once, retried, answered = llm_spans(memory)
    assert once["attributes"]["usage_estimated"] and once["input_tokens"] > 600 and once["output_tokens"] == 0
    attempts = retried["attributes"]["http.attempts"]
    assert attempts >= 3  # the first try and two retries, each timed out (LiteLLM may retry inside a try too)
    assert retried["input_tokens"] == attempts * once["input_tokens"]
    assert retried["cost_usd"] == pytest.approx(attempts * once["cost_usd"])
    assert (answered["status"], answered["input_tokens"], answered["output_tokens"]) == ("ok", 100, 20)
    assert _charged(memory) == pytest.approx(once["cost_usd"] + retried["cost_usd"] + answered["cost_usd"])
