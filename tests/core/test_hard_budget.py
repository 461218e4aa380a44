"""Hard budgets: a call's worst-case cost is reserved before it is sent, so the budget is never overshot.

The acceptance figures (issue 14): 16 threads, 1,000 asyncio tasks and 3 processes sharing Redis against a
$1.00 hard budget with calls of up to $0.02: recorded spend never exceeds $1.00 and reaches at least $0.96.
Calls go through the real ``openai`` client to the loopback stub provider, priced by a cost-table override.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import httpx
import openai
import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from agentwatch._breaker import Monitor, admit, settle, top_up
from agentwatch._reservation import (
    DEFAULT_OUTPUT_TOKENS,
    FETCH_CONTENT_TOKENS,
    MEDIA_PART_TOKENS,
    ORIGINAL_IMAGE_TOKENS,
    SEARCH_RESULT_TOKENS,
    input_token_bound,
    output_token_cap,
    server_tool_input_tokens,
    worst_case_usd,
)
from tests.core.test_redis_limits import ROOT, RedisServer, redis_server, redis_url  # noqa: F401 - fixtures
from tests.stubs.provider_server import Reply, StubProvider

MODEL = "hb-model"
#: $1 per 1M input tokens, $9 per 1M output tokens.
PRICES = {MODEL: {"input": 1.0, "output": 9.0}}
MAX_TOKENS = 2000
MESSAGES = [{"role": "user", "content": "hello"}]
#: What the openai client sends for ``create(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS)``: the
#: bytes of its strings and numbers plus the fixed overhead, at $1/1M; 2000 output tokens at $9/1M.
WORST_CASE = (len("messagesroleusercontenthellomodelhb-modelmax_tokens2000") + 64) * 1e-6 + MAX_TOKENS * 9e-6
#: What the stub says each call used: a little less than the worst case, up to $0.02.
ACTUAL = 100 * 1e-6 + MAX_TOKENS * 9e-6


@pytest.fixture
def stub(stub_provider: StubProvider) -> StubProvider:
    """The stub provider with a listen backlog for many concurrent connections (the default is 5: more
    simultaneous connects wait for SYN retransmits, seconds each)."""
    stub_provider._server.socket.listen(512)
    return stub_provider


def _reply() -> Reply:
    return Reply(content="x", input_tokens=100, output_tokens=MAX_TOKENS)


def _init(memory: agentwatch.InMemoryExporter | None = None, **config: Any) -> agentwatch.Client:
    settings: dict[str, Any] = {"budget_per_hour": 1.0, "hard_budget": True, "cost_table_override": PRICES}
    settings.update(config)
    return agentwatch.init(exporters=[memory] if memory is not None else [], **settings)


def _costs(memory: agentwatch.InMemoryExporter) -> tuple[float, int, int]:
    """(sum of LLM span costs, ok spans, blocked spans)."""
    agentwatch.flush()
    spans = memory.by_kind("llm")
    return (sum(s["cost_usd"] for s in spans), sum(s["status"] == "ok" for s in spans),
            sum(s["status"] == "blocked" for s in spans))


# ---- the bound --------------------------------------------------------------------------------------------


def test_input_bound_counts_utf8_bytes_of_every_string_and_media_parts() -> None:
    assert input_token_bound({"content": "abc"}) == 64 + len("content") + 3
    assert input_token_bound({"content": "é€😀"}) == 64 + len("content") + 2 + 3 + 4  # UTF-8 bytes, not chars
    image = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    assert input_token_bound([image]) == 64 + MEDIA_PART_TOKENS


def test_a_media_part_counts_once_an_image_by_what_it_is_other_media_at_least_by_their_bytes() -> None:
    photo = "A" * 533_000  # a 400 KB photo, base64: billed ~1,100-1,600 tokens, whatever its file size
    inline_images = [
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{photo}"}},  # OpenAI chat
        {"type": "input_image", "image_url": f"data:image/jpeg;base64,{photo}"},  # Responses
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": photo}},  # Anthropic
        {"inlineData": {"mimeType": "image/jpeg", "data": photo}},  # Gemini
    ]
    for part in inline_images:
        assert input_token_bound([part]) == 64 + MEDIA_PART_TOKENS, part
    original = {"type": "input_image", "image_url": f"data:image/jpeg;base64,{photo}", "detail": "original"}
    assert input_token_bound([original]) == 64 + ORIGINAL_IMAGE_TOKENS
    # Gemini's parts have no "type": a file by reference still gets the allowance.
    by_uri = {"fileData": {"mimeType": "application/pdf", "fileUri": "https://generativelanguage.googleapis.com/f/1"}}
    assert input_token_bound([by_uri]) >= 64 + MEDIA_PART_TOKENS
    assert input_token_bound([{"file_data": {"file_uri": "gs://bucket/a.mp3"}}]) >= 64 + MEDIA_PART_TOKENS
    # Audio and PDFs inline: their bytes (far more than their tokens), counted once.
    audio = "B" * 100_000
    for part in ({"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}},
                 {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{audio}"}},
                 {"inlineData": {"mimeType": "audio/wav", "data": audio}}):
        assert 64 + len(audio) <= input_token_bound([part]) < 64 + len(audio) + 200, part


def test_output_cap_is_the_requests_own_else_the_models_limit() -> None:
    assert output_token_cap({"max_tokens": 10}, "gpt-4o") == 10
    assert output_token_cap({"max_completion_tokens": 12, "max_tokens": 10}, "gpt-4o") == 12
    assert output_token_cap({"max_output_tokens": 7}, "gpt-4o") == 7
    assert output_token_cap({"generationConfig": {"maxOutputTokens": 9}}, "gemini-2.0-flash") == 9
    assert output_token_cap({"max_tokens": 10, "n": 3}, "gpt-4o") == 30
    assert output_token_cap({"max_tokens": 10, "n": 2, "best_of": 5}, "gpt-3.5-turbo-instruct") == 50
    # Each Gemini candidate is up to maxOutputTokens, all billed.
    assert output_token_cap({"generationConfig": {"maxOutputTokens": 9, "candidateCount": 4}}, "gemini-2.5-flash") == 36
    snake_case = {"generation_config": {"max_output_tokens": 9, "candidate_count": 2}}
    assert output_token_cap(snake_case, "gemini-2.5-flash") == 18
    assert output_token_cap({}, "gpt-4o-2024-11-20") == 16_384
    assert output_token_cap({}, "claude-3-5-sonnet-latest") == 8_192
    assert output_token_cap({}, "my-own-model") == DEFAULT_OUTPUT_TOKENS
    # A family's newer members write longer answers than its first; a gateway's or Bedrock's name is its family's.
    assert output_token_cap({}, "gpt-5-pro") == 272_000
    assert output_token_cap({}, "gemini-3-pro-preview") == 65_536
    assert output_token_cap({}, "claude-opus-4-1") == 32_000
    assert output_token_cap({}, "claude-opus-4-6") == 128_000
    assert output_token_cap({}, "us.anthropic.claude-opus-4-8") == 128_000
    assert output_token_cap({}, "openrouter/anthropic/claude-opus-4.5") == 64_000
    # A priced model of no family in the table: its context window, which no answer can exceed.
    assert output_token_cap({}, "grok-4") == 256_000


def test_the_output_limit_of_every_model_litellm_lists_is_at_least_its_published_one() -> None:
    """litellm ships the published max_output_tokens of every model it knows: no priced OpenAI, Anthropic or
    Gemini model may be reserved fewer output tokens than that when its request sets no cap."""
    from genai_prices import data_snapshot

    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("litellm is not installed")
    path = os.path.join(spec.submodule_search_locations[0], "model_prices_and_context_window_backup.json")
    with open(path, encoding="utf-8") as source:
        models = json.load(source)
    snapshot = data_snapshot.get_snapshot()
    short = []
    checked = 0
    for name, entry in models.items():
        published = entry.get("max_output_tokens") if isinstance(entry, dict) else None
        if (entry.get("litellm_provider") not in ("openai", "anthropic", "gemini")
                or entry.get("mode") not in ("chat", "responses") or not isinstance(published, int)
                or "-tts" in name):  # speech models write audio; genai-prices' window is their input's
            continue
        try:
            snapshot.find_provider_model(name.rsplit("/", 1)[-1], None, None, None)
        except LookupError:
            continue  # not priced: reserved at the default rate, a caveat of its own
        checked += 1
        if output_token_cap({}, name) < published:
            short.append((name, output_token_cap({}, name), published))
    assert checked > 50
    assert short == []


def test_worst_case_prices_bound_and_cap_at_the_models_rates() -> None:
    client = _init()
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    assert worst_case_usd(client, MODEL, "openai", body) == pytest.approx(WORST_CASE)
    # Embeddings produce no output tokens.
    assert worst_case_usd(client, MODEL, "openai", {"input": "abc"}, output=False) == pytest.approx(
        input_token_bound({"input": "abc"}) * 1e-6)


def test_worst_case_reserves_the_searches_a_request_allows() -> None:
    # An override's web search price is per 1,000 searches: $20 here, so each allowed search adds $0.02.
    client = _init(cost_table_override={MODEL: {"input": 1.0, "output": 9.0, "web_search_requests": 20.0}})
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    searching = {**body, "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]}
    unbounded = {**body, "tools": [{"type": "web_search"}]}  # OpenAI's: no max_uses, nothing to bound it by
    plain = worst_case_usd(client, MODEL, "anthropic", body)
    # Each search's results are billed as input on every later iteration: 3 + 2 + 1 allowances, at $1 per 1M.
    results = (3 + 2 + 1) * SEARCH_RESULT_TOKENS * 1e-6
    assert worst_case_usd(client, MODEL, "anthropic", searching) == pytest.approx(
        plain + input_token_bound(searching) * 1e-6 - input_token_bound(body) * 1e-6 + 3 * 0.02 + results)
    assert worst_case_usd(client, MODEL, "openai", unbounded) == pytest.approx(
        plain + input_token_bound(unbounded) * 1e-6 - input_token_bound(body) * 1e-6)


def test_what_server_tools_return_is_reserved_as_input_read_by_every_later_iteration() -> None:
    search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    fetch = {"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 1, "max_content_tokens": 50_000}
    assert server_tool_input_tokens({"tools": [search]}) == (2 + 1) * SEARCH_RESULT_TOKENS
    # The largest content first is the dearest order: the fetch read by all three iterations after it.
    assert server_tool_input_tokens({"tools": [search, fetch]}) == 3 * 50_000 + (2 + 1) * SEARCH_RESULT_TOKENS
    assert server_tool_input_tokens({"tools": [{**fetch, "max_content_tokens": None}]}) == FETCH_CONTENT_TOKENS
    assert server_tool_input_tokens({"tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}]}) == 0
    assert server_tool_input_tokens({"tools": [{"type": "function", "name": "f"}], "messages": []}) == 0


def test_worst_case_of_a_request_for_the_one_hour_cache_is_at_that_rate() -> None:
    client = _init(cost_table_override={MODEL: {"input": 1.0, "output": 9.0, "cache_write": 1.25,
                                                "cache_write_1h": 2.0}})
    system = [{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}]
    five = {"model": MODEL, "system": system, "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    hour = {**five, "system": [{**system[0], "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}
    output = MAX_TOKENS * 9e-6
    assert worst_case_usd(client, MODEL, "anthropic", five) == pytest.approx(input_token_bound(five) * 1.25e-6 + output)
    assert worst_case_usd(client, MODEL, "anthropic", hour) == pytest.approx(input_token_bound(hour) * 2e-6 + output)


# ---- admission, settlement, release -----------------------------------------------------------------------


def test_a_reservation_that_does_not_fit_blocks_and_says_what_was_reserved_and_left() -> None:
    m = Monitor("global", "g", budget_per_hour=1.0, hard_budget=True)
    first = admit([m], reserve=0.6)
    assert m.snapshot()["reserved"] == pytest.approx(0.6)
    with pytest.raises(CircuitBreakerException) as caught:
        admit([m], reserve=0.5)
    error = caught.value
    assert (error.reason, error.scope, error.threshold) == ("hard_budget", "global", 1.0)
    assert error.reserved == pytest.approx(0.5)
    assert error.remaining == pytest.approx(0.4)
    assert "may cost up to $0.5" in str(error) and "$0.4 of the $1 budget is left" in str(error)
    assert m.state == "CLOSED"  # not tripped: a smaller call, or this one once others settle, may fit
    settle(first, cost_usd=0.45, error=False)
    snap = m.snapshot()
    assert (snap["spend_last_hour"], snap["reserved"]) == (pytest.approx(0.45), 0.0)
    settle(admit([m], reserve=0.5), cost_usd=0.5, error=False)  # now it fits
    assert m.snapshot()["spend_last_hour"] == pytest.approx(0.95)


def test_hard_budget_blocks_without_block_on_threshold_and_soft_budgets_overshoot() -> None:
    soft = Monitor("global", "soft", budget_per_hour=1.0)
    hard = Monitor("global", "hard", budget_per_hour=1.0, hard_budget=True)
    for m in (soft, hard):
        settle(admit([m], reserve=0.9), cost_usd=0.9, error=False)
    settle(admit([soft], reserve=0.9), cost_usd=0.9, error=False)  # alert-only soft budget: overshoots
    assert soft.snapshot()["spend_last_hour"] == pytest.approx(1.8)
    with pytest.raises(CircuitBreakerException):
        admit([hard], reserve=0.9)


def test_a_block_in_an_outer_scope_releases_the_inner_reservation() -> None:
    agent = Monitor("agent", "a", budget_per_hour=5.0, hard_budget=True)
    outer = Monitor("global", "g", budget_per_hour=1.0, hard_budget=True)
    with pytest.raises(CircuitBreakerException) as caught:
        admit([agent, outer], reserve=2.0)
    assert caught.value.scope == "global"
    assert agent.snapshot()["reserved"] == 0.0
    assert agent.snapshot()["calls_last_minute"] == 0


def test_top_up_reserves_more_or_blocks_and_holds_nothing_more() -> None:
    agent = Monitor("agent", "a", budget_per_hour=5.0, hard_budget=True)
    outer = Monitor("global", "g", budget_per_hour=1.0, hard_budget=True)
    admission = admit([agent, outer])  # a framework call: its cost unknown yet
    top_up(admission, 0.7)
    assert (agent.snapshot()["reserved"], outer.snapshot()["reserved"]) == (pytest.approx(0.7), pytest.approx(0.7))
    with pytest.raises(CircuitBreakerException) as caught:
        top_up(admission, 0.5)
    assert (caught.value.reason, caught.value.reserved) == ("hard_budget", pytest.approx(0.5))
    assert (agent.snapshot()["reserved"], outer.snapshot()["reserved"]) == (pytest.approx(0.7), pytest.approx(0.7))
    settle(admission, cost_usd=0.2, error=False)
    assert (agent.snapshot()["reserved"], outer.snapshot()["reserved"]) == (0.0, 0.0)
    assert outer.snapshot()["spend_last_hour"] == pytest.approx(0.2)


class _FrameworkStop(CircuitBreakerException):
    """A framework's own stop exception, as a plugin makes one (CrewAI's is also a ``HookAborted``)."""


def test_a_call_refused_by_its_top_up_is_raised_as_its_opener_asks_and_ends_blocked_whatever_the_error(
        memory: agentwatch.InMemoryExporter) -> None:
    client = agentwatch.init(exporters=[memory], budget_per_hour=1.0, hard_budget=True, max_error_rate=0.5)
    call = agentwatch.start_llm_call("framework", model=MODEL)
    call.raise_refusal_as(lambda blocked: _FrameworkStop(blocked.reason, blocked.threshold, blocked.current,
                                                         scope=blocked.scope, scope_id=blocked.scope_id))
    with pytest.raises(_FrameworkStop) as caught:
        call.top_up(2.0)  # a lower layer (the HTTP tap) reserving the request's worst case
    assert caught.value.reason == "hard_budget"
    # The framework then reports the call failed with its own message: nothing was sent, so no failure.
    call.end(error="the framework's message about the refusal")
    agentwatch.flush()
    [span] = [span for span in memory.spans if span["kind"] == "llm"]
    assert span["status"] == "blocked" and span["attributes"]["breaker.reason"] == "hard_budget"
    assert "error.message" not in span["attributes"]
    state = client.monitor.snapshot()
    assert (state["errors_in_error_window"], state["reserved"], state["state"]) == (0, 0.0, "CLOSED")


def test_a_plugins_refusal_wrap_that_fails_still_raises_the_block(memory: agentwatch.InMemoryExporter,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Only a block reaches the program: an internal error of the plugin's wrap is logged, the block raised."""
    agentwatch.init(exporters=[memory], budget_per_hour=1.0, hard_budget=True)
    call = agentwatch.start_llm_call("framework", model=MODEL)

    def broken(blocked: CircuitBreakerException) -> CircuitBreakerException:
        raise KeyError("a bug in the plugin")

    call.raise_refusal_as(broken)
    with pytest.raises(CircuitBreakerException) as caught:
        call.top_up(2.0)
    assert caught.value.reason == "hard_budget" and "internal error while raising a refusal" in caplog.text


def test_a_call_withdrawn_before_its_request_is_no_call_and_holds_nothing(memory: agentwatch.InMemoryExporter) -> None:
    client = agentwatch.init(exporters=[memory], budget_per_hour=1.0, hard_budget=True, max_calls_per_minute=5)
    with agentwatch.agent("Worker", max_calls_per_minute=5) as worker:
        call = agentwatch.start_llm_call("framework", model=MODEL, reserve=0.4)
    assert client.monitor.snapshot()["reserved"] == pytest.approx(0.4)
    call.withdraw("denied by a later check")  # e.g. a framework hook of the user's, after AgentWatch's
    call.end(error="the framework's error")  # ended already: no effect
    agentwatch.flush()
    for state in (client.monitor.snapshot(), worker.monitor.snapshot()):  # type: ignore[union-attr]
        assert (state["calls_last_minute"], state["reserved"], state["errors_in_error_window"]) == (0, 0.0, 0)
    [span] = [span for span in memory.spans if span["kind"] == "llm"]
    assert span["status"] == "blocked" and span["attributes"]["reason"] == "denied by a later check"
    assert "breaker.reason" not in span["attributes"]


def test_hard_budget_is_set_by_init_agent_and_agents_preset(memory: agentwatch.InMemoryExporter,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTWATCH_HARD_BUDGET", "true")
    client = agentwatch.init(exporters=[], agents={"Preset": {"budget_per_hour": 1.0, "hard_budget": False}})
    assert client.monitor.hard_budget is True
    with agentwatch.agent("Preset") as preset, agentwatch.agent("Other", hard_budget=True) as other:
        assert preset.monitor is not None and preset.monitor.hard_budget is False
        assert other.monitor is not None and other.monitor.hard_budget is True
    with pytest.raises(TypeError, match="hard_budget"):
        agentwatch.init(exporters=[], hard_budget="yes")


# ---- through the real openai client -----------------------------------------------------------------------


def test_the_sdk_call_reserves_its_request_and_a_block_sends_nothing(memory: agentwatch.InMemoryExporter,
                                                                     stub_provider: StubProvider) -> None:
    client = _init(memory, budget_per_hour=WORST_CASE * 1.5)
    oai = openai.OpenAI(base_url=stub_provider.openai_base_url, api_key="sk-test", max_retries=0)
    stub_provider.queue(_reply())
    oai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS)  # type: ignore[arg-type]
    assert client.monitor.snapshot()["reserved"] == 0.0
    with pytest.raises(CircuitBreakerException) as caught:
        oai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS)  # type: ignore[arg-type]
    assert caught.value.reserved == pytest.approx(WORST_CASE)
    assert caught.value.remaining == pytest.approx(WORST_CASE * 1.5 - ACTUAL)
    assert stub_provider.count("/chat/completions") == 1
    spent, ok, blocked = _costs(memory)
    assert (spent, ok, blocked) == (pytest.approx(ACTUAL), 1, 1)
    [blocked_span] = [s for s in memory.by_kind("llm") if s["status"] == "blocked"]
    assert blocked_span["attributes"]["breaker.reserved"] == pytest.approx(WORST_CASE)


def test_a_call_continuing_a_recorded_response_or_conversation_reserves_what_it_carries(
        memory: agentwatch.InMemoryExporter, stub_provider: StubProvider) -> None:
    """The Responses API bills a stored conversation as input though the request does not carry it: a call naming
    a response (or conversation) recorded here reserves that response's input and output on top of its body."""
    client = _init(memory, budget_per_hour=0.1)
    oai = openai.OpenAI(base_url=stub_provider.openai_base_url, api_key="sk-test", max_retries=0)
    stub_provider.queue(Reply(content="noted", input_tokens=60_000, output_tokens=400))  # a long spec, uploaded
    first = oai.responses.create(model=MODEL, input="Keep this spec in mind.", max_output_tokens=500)
    body = {"model": MODEL, "input": "Summarize chapter 1.", "previous_response_id": first.id,
            "max_output_tokens": 500}
    carried = 60_400 * 1e-6
    assert worst_case_usd(client, MODEL, "openai", body) == pytest.approx(
        input_token_bound(body) * 1e-6 + 500 * 9e-6 + carried)
    with pytest.raises(CircuitBreakerException) as caught:  # $0.0636 spent: the $0.065 it can cost does not fit
        oai.responses.create(model=MODEL, input="Summarize chapter 1.", previous_response_id=first.id,
                             max_output_tokens=500)
    assert caught.value.reserved >= carried
    assert stub_provider.count("/responses") == 1

    # A conversation's answers name it: the next call in it carries the last one's input and output.
    answer = {"id": "resp_conv1", "object": "response", "created_at": 1, "status": "completed", "model": MODEL,
              "conversation": {"id": "conv_1"}, "output": [], "parallel_tool_calls": True, "tool_choice": "auto",
              "tools": [], "usage": {"input_tokens": 30_000, "output_tokens": 100, "total_tokens": 30_100,
                                     "input_tokens_details": {"cached_tokens": 0},
                                     "output_tokens_details": {"reasoning_tokens": 0}}}
    stub_provider.queue(Reply(raw_body=json.dumps(answer).encode(), headers={"content-type": "application/json"}))
    client = _init(memory, budget_per_hour=10.0)
    oai.responses.create(model=MODEL, input="Hello", conversation="conv_1", max_output_tokens=10)
    continuing = {"model": MODEL, "input": "And then?", "conversation": "conv_1", "max_output_tokens": 10}
    assert worst_case_usd(client, MODEL, "openai", continuing) == pytest.approx(
        (input_token_bound(continuing) + 30_100) * 1e-6 + 10 * 9e-6)


def test_a_call_that_costs_more_than_its_reservation_is_logged_once_per_model(
        memory: agentwatch.InMemoryExporter, stub_provider: StubProvider, caplog: pytest.LogCaptureFixture) -> None:
    """A provider (a gateway ignoring the cap) that writes past max_tokens is charged what it reports, above the
    reservation: the budget can then be passed, and the log says so once, naming the model."""
    model = "hb-overrun-model"  # warned once per process: a name no other test overruns
    _init(memory, cost_table_override={model: PRICES[MODEL]})
    oai = openai.OpenAI(base_url=stub_provider.openai_base_url, api_key="sk-test", max_retries=0)
    stub_provider.queue(*[Reply(content="x", input_tokens=100, output_tokens=4 * MAX_TOKENS) for _ in range(2)],
                        _reply())
    for _ in range(3):
        oai.chat.completions.create(model=model, messages=MESSAGES, max_tokens=MAX_TOKENS)  # type: ignore[arg-type]
    warnings = [record.getMessage() for record in caplog.records if "more than the" in record.getMessage()]
    assert len(warnings) == 1
    assert model in warnings[0] and f"${100e-6 + 4 * MAX_TOKENS * 9e-6:.6f}" in warnings[0]



def test_a_model_missing_from_the_price_table_is_logged_once_per_name(caplog: pytest.LogCaptureFixture) -> None:
    """Its worst case is reserved at the default rate: the log says so once per name, whatever the number of calls
    (and whatever else was logged once already)."""
    client = _init()
    body = {"model": "hb-unpriced-a", "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    for model in ["hb-unpriced-a", "hb-unpriced-b", "hb-unpriced-a", "hb-unpriced-b"]:
        worst_case_usd(client, model, "openai", body)
    warnings = [record.getMessage() for record in caplog.records if "not in the price table" in record.getMessage()]
    assert len(warnings) == 2 and "'hb-unpriced-a'" in warnings[0] and "'hb-unpriced-b'" in warnings[1]

def test_errors_cancellation_and_abandoned_streams_release_the_reservation(
        memory: agentwatch.InMemoryExporter, stub_provider: StubProvider) -> None:
    client = _init(memory)
    oai = openai.OpenAI(base_url=stub_provider.openai_base_url, api_key="sk-test", max_retries=0)
    stub_provider.queue(Reply(status=500))
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS)  # type: ignore[arg-type]
    assert client.monitor.snapshot()["reserved"] == 0.0

    stub_provider.queue(Reply(content="a b c d e f", chunk_delay=0.05))
    stream = oai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS,  # type: ignore[arg-type]
                                         stream=True)
    next(iter(stream))
    # Held while it streams; the body also says "stream": true (6 + 5 more bytes).
    assert client.monitor.snapshot()["reserved"] == pytest.approx(WORST_CASE + 11e-6)
    stream.close()
    assert client.monitor.snapshot()["reserved"] == 0.0

    aoai = openai.AsyncOpenAI(base_url=stub_provider.openai_base_url, api_key="sk-test", max_retries=0)

    async def cancel_mid_request() -> None:
        stub_provider.queue(Reply(delay=2.0))
        task = asyncio.create_task(aoai.chat.completions.create(  # type: ignore[call-overload]
            model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if client.monitor.snapshot()["reserved"] > 0:
                break
        assert client.monitor.snapshot()["reserved"] == pytest.approx(WORST_CASE)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_mid_request())
    assert client.monitor.snapshot()["reserved"] == 0.0


def test_sixteen_threads_never_overshoot(memory: agentwatch.InMemoryExporter, stub: StubProvider) -> None:
    client = _init(memory)
    stub.queue(*[_reply() for _ in range(120)])
    oai = openai.OpenAI(base_url=stub.openai_base_url, api_key="sk-test", max_retries=0)
    # One call before the threads: openai builds its response models on first use, not thread-safely (see _PROCESS).
    oai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS)  # type: ignore[arg-type]
    done: list[int] = [1]
    lock = threading.Lock()

    def worker() -> None:
        made = 0
        while True:
            try:
                oai.chat.completions.create(model=MODEL, messages=MESSAGES,  # type: ignore[arg-type]
                                            max_tokens=MAX_TOKENS)
            except CircuitBreakerException:
                break
            made += 1
        with lock:
            done.append(made)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spent = client.monitor.snapshot()["spend_last_hour"]
    assert 0.96 <= spent <= 1.0
    assert client.monitor.snapshot()["reserved"] == 0.0
    span_costs, ok, _ = _costs(memory)
    assert ok == sum(done) == stub.count("/chat/completions")
    assert span_costs == pytest.approx(spent)


def test_a_thousand_asyncio_tasks_never_overshoot(memory: agentwatch.InMemoryExporter,
                                                  stub: StubProvider) -> None:
    client = _init(memory)
    stub.queue(*[_reply() for _ in range(120)])

    async def run() -> list[Any]:
        # The stub's listen backlog is small: 16 pooled connections, the other admitted requests queue for one.
        pool = openai.DefaultAsyncHttpxClient(limits=httpx.Limits(max_connections=16))
        aoai = openai.AsyncOpenAI(base_url=stub.openai_base_url, api_key="sk-test", max_retries=0,
                                  http_client=pool)

        async def one() -> Any:
            return await aoai.chat.completions.create(model=MODEL, messages=MESSAGES,  # type: ignore[call-overload]
                                                      max_tokens=MAX_TOKENS)

        return await asyncio.gather(*(one() for _ in range(1000)), return_exceptions=True)

    results = asyncio.run(run())
    blocked = [r for r in results if isinstance(r, CircuitBreakerException)]
    answered = [r for r in results if not isinstance(r, BaseException)]
    assert len(blocked) + len(answered) == 1000
    spent = client.monitor.snapshot()["spend_last_hour"]
    assert 0.96 <= spent <= 1.0
    assert len(answered) == stub.count("/chat/completions")
    assert {e.reason for e in blocked} <= {"hard_budget", "budget_per_hour"}


_PROCESS = textwrap.dedent("""
    import json, sys, threading
    import openai
    import agentwatch
    from agentwatch import CircuitBreakerException

    url, base_url, prices = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    # Fail closed: on a loaded machine a slow round trip must not fall back to per-process limits.
    agentwatch.init(exporters=[], limits_backend=url, limits_fallback="block", budget_per_hour=1.0,
                    hard_budget=True, cost_table_override=prices)
    oai = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
    # openai builds its response models on first use, and pydantic's build is not thread-safe (openai-python#3079):
    # threads making a process's first calls at once can fail inside openai. One call first, as such a program must
    # (the other processes may have spent the budget already).
    try:
        oai.chat.completions.create(model="hb-model", messages=[{"role": "user", "content": "hello"}],
                                    max_tokens=2000)
        made = [1]
    except CircuitBreakerException:
        made = [0]

    def worker():
        n = 0
        while True:
            try:
                oai.chat.completions.create(model="hb-model", messages=[{"role": "user", "content": "hello"}],
                                            max_tokens=2000)
            except CircuitBreakerException:
                break
            n += 1
        made.append(n)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"calls": sum(made)}), flush=True)
""")


def test_three_processes_sharing_redis_never_overshoot(redis_url: str, stub: StubProvider) -> None:  # noqa: F811
    stub.queue(*[_reply() for _ in range(120)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env["PYTHONPATH"] = str(ROOT)
    url = redis_url.replace("socket_timeout=1", "socket_timeout=5")
    processes = [subprocess.Popen([sys.executable, "-c", _PROCESS, url, stub.openai_base_url,
                                   json.dumps(PRICES)], stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
                 for _ in range(3)]
    calls = 0
    for process in processes:
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0
        calls += json.loads(out.strip().splitlines()[-1])["calls"]
    assert calls == stub.count("/chat/completions")
    client = _init(limits_backend=redis_url)
    snapshot = client.monitor.snapshot()
    assert 0.96 <= snapshot["spend_last_hour"] <= 1.0
    assert snapshot["spend_last_hour"] == pytest.approx(calls * ACTUAL)
    assert snapshot["reserved"] == 0.0


def test_a_dead_process_reservation_expires_in_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from agentwatch import _redis_windows
    from agentwatch._redis_windows import RedisWindowStore, backend_for

    monkeypatch.setattr(_redis_windows, "RESERVATION_TTL_S", 0.3)
    backend = backend_for(redis_url)
    dead = Monitor("global", "fleet", budget_per_hour=1.0, hard_budget=True,
                   store=RedisWindowStore(backend, "global", "fleet"))
    alive = Monitor("global", "fleet", budget_per_hour=1.0, hard_budget=True,
                    store=RedisWindowStore(backend, "global", "fleet"))
    admit([dead], reserve=0.9)  # never settled: its process "died"
    with pytest.raises(CircuitBreakerException) as caught:
        admit([alive], reserve=0.5)
    assert caught.value.remaining == pytest.approx(0.1)
    assert alive.snapshot()["reserved"] == pytest.approx(0.9)  # fleet-wide
    time.sleep(0.5)
    settle(admit([alive], reserve=0.5), cost_usd=0.4, error=False)
    snapshot = alive.snapshot()
    assert (snapshot["spend_last_hour"], snapshot["reserved"]) == (pytest.approx(0.4), 0.0)


_TERMINATED = textwrap.dedent("""
    import json, sys
    import openai
    import agentwatch

    url, base_url, prices = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    agentwatch.init(exporters=[], limits_backend=url, budget_per_hour=1.0, hard_budget=True,
                    cost_table_override=prices)
    client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
    print("calling", flush=True)
    client.chat.completions.create(model="hb-model", messages=[{"role": "user", "content": "hello"}],
                                   max_tokens=80_000)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
def test_a_process_ended_by_sigterm_releases_its_reservation_in_redis(redis_url: str, stub: StubProvider) -> None:  # noqa: F811
    """``docker stop``, Kubernetes and systemd end a process with SIGTERM: its call in flight will never settle, so
    its reservation is released before it dies (as Ctrl-C's KeyboardInterrupt does), not held from the fleet for
    15 minutes; the process still dies by the signal."""
    stub.queue(Reply(content="never sent", input_tokens=100, output_tokens=1000, delay=30.0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env.update(PYTHONPATH=str(ROOT), AGENTWATCH_DISABLED_PLUGINS="crewai,llamaindex,autogen,ag2")
    process = subprocess.Popen([sys.executable, "-c", _TERMINATED, redis_url, stub.openai_base_url,
                                json.dumps(PRICES)], stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "calling"
        deadline = time.monotonic() + 30
        while stub.count("/chat/completions") == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        client = _init(limits_backend=redis_url)
        assert client.monitor.snapshot()["reserved"] == pytest.approx(80_000 * 9e-6, abs=0.001)  # in flight
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert client.monitor.snapshot()["reserved"] == 0.0
    stub.clear()
    stub.queue(_reply())
    oai = openai.OpenAI(base_url=stub.openai_base_url, api_key="sk-test", max_retries=0)
    oai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=80_000)  # type: ignore[arg-type]


_PREFORK = textwrap.dedent("""
    import json, os, sys, time
    import openai
    import agentwatch

    url, base_url, prices = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    agentwatch.init(exporters=[], limits_backend=url, budget_per_hour=1.0, hard_budget=True,
                    cost_table_override=prices)
    workers = []
    for _ in range(2):  # a prefork server: the workers are forked after init(), and count their calls alike
        pid = os.fork()
        if pid == 0:
            client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
            client.chat.completions.create(model="hb-model", messages=[{"role": "user", "content": "hello"}],
                                           max_tokens=20_000)
            os._exit(0)
        workers.append(pid)
    print(json.dumps([os.waitpid(pid, 0)[1] for pid in workers]), flush=True)
""")


def test_forked_workers_hold_reservations_of_their_own(redis_url: str, redis_server: RedisServer,  # noqa: F811
                                                       stub: StubProvider) -> None:  # noqa: F811
    """Found 2026-12-06: workers forked after ``init()`` named their reservations as their parent did, and their
    first calls alike: two calls in flight shared one id in Redis, so a settlement sent again after a timeout (which
    counts only while its id is still held) counted a cost twice and released the other worker's reservation of a
    call in flight, letting the fleet admit more than its budget. Each worker's call now holds its own."""
    stub.queue(*[Reply(content="slow", input_tokens=100, output_tokens=1000, delay=2.0) for _ in range(2)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env.update(PYTHONPATH=str(ROOT), AGENTWATCH_DISABLED_PLUGINS="crewai,llamaindex,autogen,ag2")
    process = subprocess.Popen([sys.executable, "-c", _PREFORK, redis_url, stub.openai_base_url,
                                json.dumps(PRICES)], stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
    try:
        deadline = time.monotonic() + 60
        while stub.count("/chat/completions") < 2:
            assert time.monotonic() < deadline and process.poll() is None, "the workers' calls never arrived"
            time.sleep(0.02)
        held = redis_server.client.hgetall("agentwatch:{global:global}:rh")
        assert process.stdout is not None and json.loads(process.stdout.readline()) == [0, 0]
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    worst_case = 20_000 * 9e-6 * 1e12
    assert sorted(int(units) for id_, units in held.items() if id_ != b"t") == [pytest.approx(worst_case, rel=0.01)] * 2


def test_a_call_running_longer_than_the_reservation_lifetime_keeps_its_reservation_in_redis(
        redis_url: str, stub: StubProvider, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A reservation expires only once its process stops renewing it: the export worker renews those of the calls
    in flight, so a call running past the lifetime (a long reasoning call) still holds its money fleet-wide."""
    from agentwatch import _redis_windows

    # Stands for 15 minutes; renewed every third of it by the export worker, which a loaded machine may not run for
    # half a second (a 0.6 s lifetime lapsed then).
    monkeypatch.setattr(_redis_windows, "RESERVATION_TTL_S", 1.5)
    client = _init(limits_backend=redis_url, flush_interval=0.05)
    oai = openai.OpenAI(base_url=stub.openai_base_url, api_key="sk-test", max_retries=0)
    stub.queue(Reply(content="a long report", input_tokens=100, output_tokens=70_000, delay=4.0))
    long_call = threading.Thread(target=lambda: oai.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=80_000))  # type: ignore[arg-type]
    long_call.start()
    time.sleep(2.5)  # past the lifetime, still in flight: its $0.72 held, $0.28 left
    stub.queue(_reply())
    with pytest.raises(CircuitBreakerException) as caught:
        oai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=40_000)  # type: ignore[arg-type]
    assert caught.value.remaining == pytest.approx(1.0 - 80_000 * 9e-6, abs=0.001)
    long_call.join()
    snapshot = client.monitor.snapshot()
    assert (snapshot["spend_last_hour"], snapshot["reserved"]) == (pytest.approx(100e-6 + 70_000 * 9e-6), 0.0)
    assert stub.count("/chat/completions") == 1
