"""``ChatCompletionCache``: a miss is one call of the inner client (its model, its price); a hit sent nothing, so it
costs $0 and no limit counts or blocks it."""

from __future__ import annotations

from typing import Any

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_core import InMemoryStore
from autogen_core.models import UserMessage
from autogen_ext.models.cache import ChatCompletionCache
from genai_prices import Usage, calc_price

import agentwatch
from agentwatch.plugins.autogen import is_watched, unwatch, watch
from tests.stubs.provider_server import Reply

from .conftest import MODEL, chat_requests, spans

HELLO = [UserMessage(content="hello", source="user")]


def price(input_tokens: int, output_tokens: int) -> float:
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return float(calc_price(usage, MODEL, provider_id="openai").total_price)


async def _ask_four_times_and_stream(cache: Any) -> list[Any]:
    answers = [await cache.create(HELLO) for _ in range(4)]
    streamed = [item async for item in cache.create_stream(HELLO)]
    return [(r.content, r.cached, r.usage) for r in answers] + [
        item if isinstance(item, str) else (item.content, item.cached, item.usage) for item in streamed]


async def test_cache_hits_cost_nothing_and_count_toward_no_limit(memory, stub_provider, model_client):
    """Found by a probe: every hit was an LLM call of the cache wrapper, model None, charged its original usage at
    the default rate and counted, so ``max_calls_per_minute=2`` blocked the third hit though nothing was sent."""
    stub_provider.queue(Reply(content="answer", input_tokens=1000, output_tokens=500))
    plain = await _ask_four_times_and_stream(ChatCompletionCache(model_client, InMemoryStore()))
    assert chat_requests(stub_provider) == 1

    agentwatch.init(exporters=[memory], max_calls_per_minute=2, block_on_threshold=True)
    stub_provider.queue(Reply(content="answer", input_tokens=1000, output_tokens=500))
    watched = await _ask_four_times_and_stream(ChatCompletionCache(model_client, InMemoryStore()))

    assert watched == plain  # nothing blocked, every answer as without AgentWatch
    assert chat_requests(stub_provider) == 2
    miss, *hits = spans(memory, "llm")
    assert (miss["name"], miss["model"], miss["input_tokens"], miss["output_tokens"]) == (
        "OpenAIChatCompletionClient", MODEL, 1000, 500)
    assert miss["cost_usd"] == pytest.approx(price(1000, 500), rel=1e-6)
    assert "cache_hit" not in miss["attributes"]
    assert [(hit["name"], hit["model"], hit["cost_usd"], hit["status"], hit["attributes"]["cache_hit"],
             hit["attributes"]["streaming"]) for hit in hits] == [
        ("ChatCompletionCache", MODEL, 0.0, "ok", True, False)] * 3 + [
        ("ChatCompletionCache", MODEL, 0.0, "ok", True, True)]
    snapshot = agentwatch.get_client().monitor.snapshot()
    assert (snapshot["calls_last_minute"], snapshot["blocked_calls"]) == (1, 0)
    assert snapshot["spend_last_hour"] == pytest.approx(miss["cost_usd"])


async def test_an_agents_cached_reply_is_not_blocked(memory, stub_provider, model_client):
    """The same task asked twice of an AssistantAgent on a cached client, with one call a minute allowed: the second
    run's reply comes from the cache, sends nothing and is not blocked."""
    agentwatch.init(exporters=[memory], max_calls_per_minute=1, block_on_threshold=True)
    stub_provider.queue(Reply(content="four", input_tokens=30, output_tokens=2))
    cache = ChatCompletionCache(model_client, InMemoryStore())

    first = await AssistantAgent("math", model_client=cache).run(task="2+2?")
    second = await AssistantAgent("math", model_client=cache).run(task="2+2?")

    assert first.messages[-1].content == second.messages[-1].content == "four"
    assert chat_requests(stub_provider) == 1
    recorded = [(span["name"], span["agent_name"], span["cost_usd"] > 0, span["attributes"].get("cache_hit"))
                for span in spans(memory, "llm")]
    assert recorded == [("OpenAIChatCompletionClient", "math", True, None),
                        ("ChatCompletionCache", "math", False, True)]


async def test_explicit_watch_of_a_cache_watches_its_inner_client(memory, stub_provider, model_client):
    agentwatch.init(exporters=[memory], disabled_plugins=["autogen", "http", "openai"])
    cache = ChatCompletionCache(model_client, InMemoryStore())
    watch(cache)
    assert is_watched(model_client)
    stub_provider.queue(Reply(content="answer", input_tokens=10, output_tokens=5))

    await cache.create(HELLO)
    await cache.create(HELLO)

    assert [(span["name"], span["model"], span["input_tokens"], span["attributes"].get("cache_hit"))
            for span in spans(memory, "llm")] == [
        ("OpenAIChatCompletionClient", MODEL, 10, None), ("ChatCompletionCache", MODEL, 0, True)]
    unwatch(cache)
    assert not is_watched(model_client) and not is_watched(cache)
