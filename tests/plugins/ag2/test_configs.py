"""An ``llm_config`` with several configs, and AG2's cache: each request AG2 sends is a call of the config that sent
it (its model, its price, its reservation); an answer from AG2's cache sent nothing, costs $0 and counts toward no
limit."""

from __future__ import annotations

from typing import Any

import pytest
from autogen import ConversableAgent
from autogen.cache.in_memory_cache import InMemoryCache
from genai_prices import Usage, calc_price

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .test_ag2 import chat_requests, spans


def price(model: str, input_tokens: int, output_tokens: int) -> float:
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return float(calc_price(usage, model, provider_id="openai").total_price)


def two_models(stub: Any, **extra: Any) -> dict[str, Any]:
    config = {"api_key": "test-key", "base_url": stub.openai_base_url, "max_retries": 0}
    return {"config_list": [{"model": "gpt-4o-mini", **config}, {"model": "gpt-4o", **config}], "cache_seed": None,
            **extra}


def chat(llm_config: dict[str, Any], turns: int, **kwargs: Any) -> Any:
    assistant = ConversableAgent("assistant", llm_config=llm_config, human_input_mode="NEVER")
    user = ConversableAgent("user", llm_config=False, human_input_mode="NEVER", default_auto_reply="more")
    return user.initiate_chat(assistant, message="hi", max_turns=turns, silent=True, **kwargs)


def test_round_robin_calls_are_named_and_priced_as_the_model_that_answered(memory, stub_provider):
    """Found by a probe: every call was named and priced as the first config's model (gpt-4o-mini), so the spend of
    the gpt-4o calls was 16 times too low."""
    agentwatch.init(exporters=[memory])
    for _ in range(4):
        stub_provider.queue(Reply(input_tokens=1000, output_tokens=1000))

    chat(two_models(stub_provider, routing_method="round_robin"), turns=4)

    sent = [request.json["model"] for request in stub_provider.requests]
    assert sent == ["gpt-4o-mini", "gpt-4o", "gpt-4o-mini", "gpt-4o"]
    llm_spans = spans(memory, "llm")
    assert [span["model"] for span in llm_spans] == sent
    assert [span["cost_usd"] for span in llm_spans] == pytest.approx([price(model, 1000, 1000) for model in sent])
    spend = agentwatch.get_client().monitor.snapshot()["spend_last_hour"]
    assert spend == pytest.approx(sum(price(model, 1000, 1000) for model in sent))


def test_a_failed_config_and_its_fallback_are_two_calls_of_their_models(memory, stub_provider):
    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(status=500), Reply(content="fallback answer", input_tokens=1000, output_tokens=1000))

    result = chat(two_models(stub_provider), turns=1)

    assert result.chat_history[-1]["content"] == "fallback answer"
    failed, answered = spans(memory, "llm")
    assert (failed["model"], failed["status"], failed["cost_usd"]) == ("gpt-4o-mini", "error", 0.0)
    assert (answered["model"], answered["status"]) == ("gpt-4o", "ok")
    assert answered["cost_usd"] == pytest.approx(price("gpt-4o", 1000, 1000))
    assert answered["attributes"]["ag2.cost_usd"] > 0  # AG2's report of the completion reached its call
    snapshot = agentwatch.get_client().monitor.snapshot()
    assert (snapshot["calls_last_minute"], snapshot["errors_in_error_window"]) == (2, 1)


def test_a_hard_budget_reserves_for_the_model_of_the_config_sent(memory, stub_provider):
    """gpt-4o-mini's worst case fits the budget, gpt-4o's does not: the round robin's second request (gpt-4o) is
    refused before it is sent. It was reserved at gpt-4o-mini's price and sent."""
    agentwatch.init(exporters=[memory], budget_per_hour=0.004, hard_budget=True)
    stub_provider.queue(Reply(input_tokens=100, output_tokens=100), Reply(input_tokens=100, output_tokens=100))

    with pytest.raises(CircuitBreakerException) as blocked:
        chat(two_models(stub_provider, routing_method="round_robin", max_tokens=400), turns=2)

    assert blocked.value.reason == "hard_budget"
    assert chat_requests(stub_provider) == 1
    assert [(span["model"], span["status"]) for span in spans(memory, "llm")] == [
        ("gpt-4o-mini", "ok"), ("gpt-4o", "blocked")]


def test_answers_from_ag2s_cache_cost_nothing_and_count_toward_no_limit(memory, stub_provider, llm_config):
    """Found by a probe: a chat repeated with AG2's cache was answered from it, sending nothing, yet each answer was
    admitted as a call, so ``max_calls_per_minute`` blocked it."""
    agentwatch.init(exporters=[memory], max_calls_per_minute=2, block_on_threshold=True)
    stub_provider.queue(Reply(content="first", input_tokens=100, output_tokens=10),
                        Reply(content="second", input_tokens=120, output_tokens=10))
    cache = InMemoryCache()
    llm_config = {**llm_config, "cache_seed": None}

    # summary_args of our own: AG2 stores the chat's cache in initiate_chat's shared default summary_args dict when
    # it has no "cache" yet, and every later chat of the process without summary_args would summarize from this cache.
    fresh = chat(llm_config, turns=2, cache=cache, summary_args={})
    repeated = chat(llm_config, turns=2, cache=cache, summary_args={})

    assert [m["content"] for m in repeated.chat_history] == [m["content"] for m in fresh.chat_history]
    assert chat_requests(stub_provider) == 2
    recorded = [(span["status"], span["cost_usd"] > 0, span["attributes"].get("cache_hit"), span["agent_name"])
                for span in spans(memory, "llm")]
    assert recorded == [("ok", True, None, "assistant")] * 2 + [("ok", False, True, "assistant")] * 2
    snapshot = agentwatch.get_client().monitor.snapshot()
    assert (snapshot["calls_last_minute"], snapshot["blocked_calls"]) == (2, 0)
