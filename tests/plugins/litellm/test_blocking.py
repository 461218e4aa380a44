"""A block is raised before any request, reaches the caller as ``CircuitBreakerException`` unchanged, is not
retried by ``num_retries`` nor sent to a Router fallback, and recovers with ``increase_budget``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import litellm
import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import Reply

from .conftest import ANTHROPIC, MESSAGES, OPENAI, anthropic_kwargs, llm_spans, openai_kwargs

BUDGET = 0.0001  # one call of 1,000 in / 100 out tokens on gpt-4o-mini costs $0.00021
EXPENSIVE = Reply(content="spent", input_tokens=1000, output_tokens=100)


def _router(stub: Any) -> Any:
    return litellm.Router(
        model_list=[
            {"model_name": "main", "litellm_params": {"model": OPENAI, "api_base": stub.openai_base_url,
                                                      "api_key": "test-key"}},
            {"model_name": "backup", "litellm_params": {"model": ANTHROPIC, "api_base": stub.base_url,
                                                        "api_key": "test-key"}}],
        fallbacks=[{"main": ["backup"]}], num_retries=2)


def _call(how: str, stub: Any, router: Any, **extra: Any) -> Any:
    if how == "completion":
        return litellm.completion(**openai_kwargs(stub, num_retries=2, **extra))
    if how == "acompletion":
        return asyncio.run(litellm.acompletion(**openai_kwargs(stub, num_retries=2, **extra)))
    if how == "stream":
        return "".join(chunk.choices[0].delta.content or "" for chunk in
                       litellm.completion(**anthropic_kwargs(stub, stream=True, num_retries=2, **extra)))
    if how == "router":
        return router.completion(model="main", messages=MESSAGES, **extra)
    if how == "arouter":
        return asyncio.run(router.acompletion(model="main", messages=MESSAGES, **extra))
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["completion", "acompletion", "stream", "router", "arouter"])
def test_agent_budget_blocks_before_the_request_then_recovers(stub_provider: Any, memory: Any, how: str) -> None:
    agentwatch.init(exporters=[memory])
    router = _router(stub_provider)
    stub_provider.queue(EXPENSIVE)
    with agentwatch.agent("researcher", budget_per_hour=BUDGET, block_on_threshold=True):
        _call(how, stub_provider, router)  # under the budget when sent; over it once charged
        assert stub_provider.count() == 1
        with pytest.raises(CircuitBreakerException) as caught:
            _call(how, stub_provider, router)
    assert stub_provider.count() == 1  # nothing sent: not by LiteLLM's retries, not to the Router's fallback
    blocked = caught.value
    assert type(blocked) is CircuitBreakerException  # not mapped to a LiteLLM error type
    assert (blocked.reason, blocked.scope) == ("budget_per_hour", "agent")
    agentwatch.flush()
    spans = llm_spans(memory)
    assert [span["status"] for span in spans] == ["ok", "blocked"]
    assert spans[0]["agent_name"] == "researcher" and spans[1]["agent_name"] == "researcher"
    # A Router is checked once before its first attempt; a direct call where it is made.
    expected = {"router": "litellm.router.completion", "arouter": "litellm.router.acompletion",
                "stream": "litellm.completion"}.get(how, f"litellm.{how}")
    assert spans[1]["name"] == expected and spans[1]["attributes"]["breaker.reason"] == "budget_per_hour"
    assert blocked.current == pytest.approx(spans[0]["cost_usd"])

    blocked.monitor.increase_budget(1.0)
    with agentwatch.agent("researcher"):
        result = _call(how, stub_provider, router)
    assert stub_provider.count() == 2
    assert result == "ok" if how == "stream" else result.choices[0].message.content == "ok"
    agentwatch.flush()
    assert [span["status"] for span in llm_spans(memory)] == ["ok", "blocked", "ok"]
    # The global monitor was charged once per request, the blocked call charged nothing.
    total = sum(span["cost_usd"] or 0 for span in llm_spans(memory))
    assert agentwatch.get_client().monitor.snapshot()["spend_last_hour"] == pytest.approx(total)


def test_global_budget_blocks_router_with_fallbacks_and_retries(stub_provider: Any, memory: Any) -> None:
    agentwatch.init(exporters=[memory], budget_per_hour=BUDGET, block_on_threshold=True)
    router = _router(stub_provider)
    stub_provider.queue(EXPENSIVE)
    asyncio.run(router.acompletion(model="main", messages=MESSAGES))
    for how in ("router", "arouter", "completion", "acompletion"):
        with pytest.raises(CircuitBreakerException) as caught:
            _call(how, stub_provider, router)
        assert caught.value.scope == "global"
    assert stub_provider.count() == 1


def test_provider_errors_still_retried_and_mapped(stub_provider: Any, memory: Any) -> None:
    """LiteLLM's own behaviour is kept when no limit is hit: a 500 is retried, then surfaces as its type."""
    agentwatch.init(exporters=[memory])
    stub_provider.queue(Reply(status=500), Reply(status=500), Reply(status=500), Reply(status=500))
    with pytest.raises(litellm.InternalServerError):
        litellm.completion(**openai_kwargs(stub_provider, num_retries=1, max_retries=0))
    agentwatch.flush()
    (span,) = llm_spans(memory)  # one user call, one span, whatever LiteLLM retried inside it
    assert span["status"] == "error"


def test_block_inside_a_router_call_reaches_the_caller_once(stub_provider: Any, memory: Any) -> None:
    """A limit crossed by the Router's own first attempt (a failed request counts a call): its retries and
    fallbacks send nothing more, record one blocked span, and the caller gets the block unchanged."""
    agentwatch.init(exporters=[memory], max_calls_per_minute=1, block_on_threshold=True)
    stub_provider.queue(Reply(status=500), Reply(status=500))
    params = {"api_base": stub_provider.openai_base_url, "api_key": "test-key", "max_retries": 0}
    deployments = [{"model_name": "main", "litellm_params": {"model": OPENAI, **params}},
                   {"model_name": "backup", "litellm_params": {"model": "openai/gpt-4o", **params}}]
    router = litellm.Router(model_list=deployments, fallbacks=[{"main": ["backup"]}], num_retries=1)
    with pytest.raises(CircuitBreakerException) as caught:
        router.completion(model="main", messages=MESSAGES)
    assert type(caught.value) is CircuitBreakerException and caught.value.reason == "max_calls_per_minute"
    assert stub_provider.count() == 1
    agentwatch.flush()
    assert [span["status"] for span in llm_spans(memory)] == ["error", "blocked"]


@pytest.mark.parametrize("how", ["router", "arouter"])
def test_a_block_inside_a_router_call_leaves_its_retry_loop_at_once(stub_provider: Any, memory: Any,
                                                                    how: str) -> None:
    """Found 2026-12-05: a limit crossed by the Router's first attempt was raised again by each later attempt, but the
    Router slept its backoff before each of them: 18 s for four retries (2.6 s now: the one backoff after the
    provider's error, which the Router owes it). The block leaves the retry loop as it is met."""
    agentwatch.init(exporters=[memory], max_calls_per_minute=1, block_on_threshold=True)
    params = {"api_base": stub_provider.openai_base_url, "api_key": "test-key", "max_retries": 0}
    router = litellm.Router(model_list=[{"model_name": "main", "litellm_params": {"model": OPENAI, **params}}],
                            num_retries=4)
    stub_provider.queue(Reply(status=500))
    started = time.monotonic()
    with pytest.raises(CircuitBreakerException) as caught:
        _call(how, stub_provider, router)
    assert time.monotonic() - started < 9.0  # four backoffs took 18 s
    assert type(caught.value) is CircuitBreakerException and caught.value.reason == "max_calls_per_minute"
    assert stub_provider.count() == 1
    agentwatch.flush()
    assert [span["status"] for span in llm_spans(memory)] == ["error", "blocked"]


def _primary_fails_then_fallback(stub: Any) -> Any:
    """Group ``main`` (gpt-4o-mini) falls back to ``backup`` (gpt-4o, no ``max_tokens``: its worst case is 16k
    output tokens); no retries, so the primary's one attempt is its last."""
    params = {"api_base": stub.openai_base_url, "api_key": "test-key", "max_retries": 0}
    return litellm.Router(model_list=[
        {"model_name": "main", "litellm_params": {"model": OPENAI, "max_tokens": 100, **params}},
        {"model_name": "backup", "litellm_params": {"model": "openai/gpt-4o", **params}}],
        fallbacks=[{"main": ["backup"]}], num_retries=0)


@pytest.mark.parametrize("limit", ["max_error_rate", "hard_budget"])
@pytest.mark.parametrize("how", ["router", "arouter"])
def test_block_met_by_a_fallback_reaches_the_caller_as_the_block(stub_provider: Any, memory: Any, how: str,
                                                                 limit: str) -> None:
    """The primary's last attempt fails (a 500), then its fallback is blocked: by the error-rate trip that failure
    causes, or by a hard budget that cannot hold the fallback model's worst case. LiteLLM re-raises the primary's
    error when a fallback fails; the caller gets the block instead, with its monitor, and recovers from it."""
    if limit == "max_error_rate":
        agentwatch.init(exporters=[memory], max_error_rate=0.5, block_on_threshold=True)
        for _ in range(4):  # 4 ok and 5 failed calls: the Router's failed attempt makes 6 errors of 10
            litellm.completion(**openai_kwargs(stub_provider))
        for _ in range(5):
            stub_provider.queue(Reply(status=400))
            with pytest.raises(litellm.BadRequestError):
                litellm.completion(**openai_kwargs(stub_provider))
    else:  # gpt-4o's worst case (16k output tokens) is $0.16
        agentwatch.init(exporters=[memory], budget_per_hour=0.05, hard_budget=True)
    router = _primary_fails_then_fallback(stub_provider)
    before = stub_provider.count()
    stub_provider.queue(Reply(status=500), Reply(content="from the fallback"))
    with pytest.raises(CircuitBreakerException) as caught:
        _call(how, stub_provider, router)
    assert stub_provider.count() == before + 1  # the primary's attempt only: nothing sent to the fallback
    blocked = caught.value
    assert type(blocked) is CircuitBreakerException and blocked.reason == limit
    agentwatch.flush()
    spans = llm_spans(memory)[-2:]
    assert [(span["status"], span["model"]) for span in spans] == [("error", OPENAI), ("blocked", "openai/gpt-4o")]

    if limit == "max_error_rate":
        blocked.monitor.reset_windows()
    else:
        blocked.monitor.increase_budget(1.0)
    result = _call(how, stub_provider, router)  # the queued fallback answer, now to the primary
    assert result.choices[0].message.content == "from the fallback"
    assert stub_provider.count() == before + 2


def _respond(how: str, stub: Any) -> Any:
    kwargs = {"model": OPENAI, "input": "hi", "api_base": stub.openai_base_url, "api_key": "test-key",
              "num_retries": 2}
    if how == "responses":
        return litellm.responses(**kwargs).output_text
    if how == "aresponses":
        return asyncio.run(litellm.aresponses(**kwargs)).output_text

    async def streamed() -> list[Any]:
        return [event.type async for event in await litellm.aresponses(stream=True, **kwargs)]

    return [event.type for event in litellm.responses(stream=True, **kwargs)] if how == "stream" else \
        asyncio.run(streamed())


@pytest.mark.parametrize("how", ["responses", "aresponses", "stream", "astream"])
def test_litellms_responses_api_is_one_span_and_is_limited(stub_provider: Any, memory: Any, how: str) -> None:
    """Found by a probe: ``litellm.responses()`` went unrecorded and unlimited at a base URL the HTTP layer does not
    know (an agent's $0.0001 budget spent again and again), and at OpenAI's own a block came back as LiteLLM's
    ``InternalServerError``, re-run by ``num_retries`` (three blocked spans)."""
    agentwatch.init(exporters=[memory])
    stub_provider.queue(EXPENSIVE)
    with agentwatch.agent("researcher", budget_per_hour=BUDGET, block_on_threshold=True):
        _respond(how, stub_provider)
        with pytest.raises(CircuitBreakerException) as caught:
            _respond(how, stub_provider)
    assert stub_provider.count() == 1 and type(caught.value) is CircuitBreakerException
    agentwatch.flush()
    spans = llm_spans(memory)
    assert [(span["model"], span["status"]) for span in spans] == [(OPENAI, "ok"), (OPENAI, "blocked")]
    assert (spans[0]["input_tokens"], spans[0]["output_tokens"]) == (1000, 100) and spans[0]["cost_usd"] > BUDGET
