"""The openai SDK against the stub provider: every kind of call traced, limits checked in the SDK."""

from __future__ import annotations

import asyncio
import gc
import json
import os
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from tests.plugins.providers.conftest import SpansOf, calls_counted
from tests.stubs.provider_server import Reply, StubProvider

MESSAGES = [{"role": "user", "content": "hi"}]
FAST_RETRY = {"retry-after-ms": "1"}  # the SDK honours it, so retry tests do not sleep


@pytest.fixture
def oai(stub_provider: StubProvider) -> openai.OpenAI:
    return openai.OpenAI(base_url=stub_provider.openai_base_url, api_key="sk-secret-openai", max_retries=0)


@pytest.fixture
def aoai(stub_provider: StubProvider) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stub_provider.openai_base_url, api_key="sk-secret-openai",
                              max_retries=0)


def test_chat_completion_is_one_priced_span(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                            oai: openai.OpenAI) -> None:
    client = watch()
    stub_provider.queue(Reply(content="hello", input_tokens=1000, output_tokens=200, cached_tokens=400))
    reply = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == "hello"
    [span] = llm_spans()
    assert (span["name"], span["kind"], span["status"]) == ("openai.chat.completions", "llm", "ok")
    assert (span["model"], span["provider"]) == ("gpt-4o-mini", "openai")
    assert (span["input_tokens"], span["output_tokens"], span["cached_input_tokens"]) == (1000, 200, 400)
    assert span["cost_usd"] > 0
    attributes = span["attributes"]
    assert attributes["http.status_code"] == 200
    assert attributes["http.url"] == f"{stub_provider.openai_base_url}/chat/completions"
    assert attributes["http.request_id"] == "req_stub1"
    assert attributes["finish_reason"] == "stop"
    assert "usage_missing" not in attributes
    assert calls_counted(client) == 1
    assert client.monitor.snapshot()["spend_last_hour"] == pytest.approx(span["cost_usd"])


def test_stream_with_usage_passes_chunks_through_and_reads_the_final_chunk(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    watch()
    stub_provider.queue(Reply(content="one two three", input_tokens=30, output_tokens=3, cached_tokens=10))
    stream = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True,
                                         stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert chunks[-1].usage.prompt_tokens == 30  # the user still gets the usage chunk
    [span] = llm_spans()
    assert (span["input_tokens"], span["output_tokens"], span["cached_input_tokens"]) == (30, 3, 10)
    assert span["attributes"]["time_to_first_token_ms"] >= 0
    assert "stream_incomplete" not in span["attributes"]


def test_stream_without_usage_is_estimated_and_the_request_is_left_alone(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    watch()  # stream_usage="auto": a server that is not OpenAI's own API is not asked for usage
    stub_provider.queue(Reply(content="word " * 40))
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert all(chunk.usage is None for chunk in chunks)
    assert "stream_options" not in stub_provider.last.json  # nothing injected into the user's request
    [span] = llm_spans()
    attributes = span["attributes"]
    assert attributes["usage_estimated"] is True and attributes["cost_estimated"] is True
    assert "usage_missing" not in attributes
    assert span["input_tokens"] > 0 and span["output_tokens"] == 50  # 200 bytes of text, 4 per token
    assert span["cost_usd"] > 0 and span["status"] == "ok"


def test_early_break_then_close_ends_the_span(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                              oai: openai.OpenAI) -> None:
    watch()
    stub_provider.queue(Reply(content="a b c d e f g h", chunk_delay=0.01))
    stream = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    for _chunk in stream:
        break
    assert llm_spans() == []  # still streaming: not ended yet
    stream.close()
    [span] = llm_spans()
    assert span["attributes"]["stream_incomplete"] is True
    assert span["end_time_unix_nano"] is not None


def test_a_stream_dropped_after_a_break_still_ends_its_span(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    watch()

    def read_one() -> str | None:
        for chunk in oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):
            return chunk.choices[0].delta.content
        return None

    stub_provider.queue(Reply(content="a b c d e f", chunk_delay=0.01))
    read_one()
    gc.collect()
    [span] = llm_spans()
    assert span["attributes"]["stream_incomplete"] is True


def test_a_stream_cut_by_the_server_ends_the_span_with_the_error(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    client = watch()
    stub_provider.queue(Reply(content="a b c d e f", cut_stream_after=3))
    with pytest.raises(httpx.RemoteProtocolError):
        for _chunk in oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):
            pass
    [span] = llm_spans()
    assert span["status"] == "error"
    assert span["attributes"]["error.type"] == "RemoteProtocolError"
    assert client.monitor.snapshot()["errors_in_error_window"] == 1


def test_error_response_is_an_error_span_and_retries_are_one_call(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    client = watch()
    stub_provider.queue(Reply(status=429, headers=FAST_RETRY))
    with pytest.raises(openai.RateLimitError):
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    stub_provider.queue(Reply(status=500, headers=FAST_RETRY), Reply(content="second try"))
    retrying = oai.with_options(max_retries=1)
    reply = retrying.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert reply.choices[0].message.content == "second try"
    failed, retried = llm_spans()
    assert failed["status"] == "error" and failed["attributes"]["error.type"] == "RateLimitError"
    assert failed["attributes"]["http.status_code"] == 429
    assert retried["status"] == "ok" and retried["attributes"]["http.attempts"] == 2
    assert retried["attributes"]["http.status_code"] == 200 and retried["input_tokens"] == 10
    assert calls_counted(client) == 2


def test_responses_and_embeddings(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                  oai: openai.OpenAI) -> None:
    watch()
    stub_provider.queue(Reply(content="r", input_tokens=50, output_tokens=5, cached_tokens=20),
                        Reply(content="s t", input_tokens=40, output_tokens=2), Reply(input_tokens=7))
    assert oai.responses.create(model="gpt-4.1", input="hi").output_text == "r"
    with oai.responses.stream(model="gpt-4.1", input="hi") as stream:
        assert stream.get_final_response().output_text == "s t"
    vectors = oai.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(vectors.data) == 2
    plain, streamed, embedded = llm_spans()
    assert plain["name"] == "openai.responses"
    assert (plain["input_tokens"], plain["output_tokens"], plain["cached_input_tokens"]) == (50, 5, 20)
    assert (streamed["input_tokens"], streamed["output_tokens"]) == (40, 2)
    assert streamed["attributes"]["finish_reason"] == "completed"
    assert (embedded["name"], embedded["kind"]) == ("openai.embeddings", "embedding")
    assert embedded["input_tokens"] == 7
    assert embedded["model"] == "text-embedding-3-small" and embedded["cost_usd"] > 0


def test_raw_and_streaming_responses(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                     oai: openai.OpenAI) -> None:
    watch()
    stub_provider.queue(Reply(input_tokens=11), Reply(input_tokens=12), Reply(input_tokens=13))
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert raw.headers["x-request-id"] == "req_stub1" and raw.parse().usage.prompt_tokens == 11
    with oai.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MESSAGES) as response:
        assert json.loads(response.read())["usage"]["prompt_tokens"] == 12
    with oai.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MESSAGES,
                                                             stream=True) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    spans = llm_spans()
    assert [span["input_tokens"] for span in spans[:2]] == [11, 12]
    assert spans[2]["attributes"]["usage_estimated"] is True  # that stream did not ask for usage
    assert spans[2]["input_tokens"] > 0 and spans[2]["output_tokens"] > 0
    request_ids = [span["attributes"]["http.request_id"] for span in spans]
    assert request_ids == ["req_stub1", "req_stub2", "req_stub3"]


async def test_async_chat_and_stream(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                     aoai: openai.AsyncOpenAI) -> None:
    watch()
    stub_provider.queue(Reply(input_tokens=21, output_tokens=2), Reply(content="x y", input_tokens=22))
    await aoai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    stream = await aoai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True,
                                                stream_options={"include_usage": True})
    texts = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
    assert "".join(t or "" for t in texts) == "x y"
    plain, streamed = llm_spans()
    assert (plain["input_tokens"], plain["output_tokens"]) == (21, 2)
    assert streamed["input_tokens"] == 22 and "time_to_first_token_ms" in streamed["attributes"]


@pytest.mark.parametrize("how", ["wait_for", "cancel"])
async def test_a_call_cut_off_before_its_answer_is_charged_for_its_prompt(
        how: str, watch: Any, llm_spans: SpansOf, stub_provider: StubProvider, aoai: openai.AsyncOpenAI) -> None:
    """Found 2026-12-05: an ``AsyncOpenAI`` call its program cut off (``asyncio.wait_for`` around a slow provider,
    ``task.cancel()``) before the answer was charged $0, so a retry loop around a slow provider sent billed requests
    no budget ever saw. The request went out: its prompt is charged from an estimate, as a cut-off stream's is; no
    error of the provider's (``max_error_rate`` is not fed)."""
    client = watch(budget_per_hour=100.0, max_error_rate=0.5, block_on_threshold=True)
    prompt = [{"role": "user", "content": "summarise this report " * 200}]
    for sent in range(1, 13):
        stub_provider.queue(Reply(content="late", delay=2.0))
        if how == "wait_for":
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(aoai.chat.completions.create(model="gpt-4o", messages=prompt), 0.3)
        else:
            task = asyncio.create_task(aoai.chat.completions.create(model="gpt-4o", messages=prompt))
            await stub_provider.until_received(sent)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    spans = llm_spans()
    assert len(spans) == 12 and {span["attributes"]["error.type"] for span in spans} == {"CancelledError"}
    assert all(span["attributes"]["usage_estimated"] and span["input_tokens"] > 600 for span in spans)
    assert all(span["output_tokens"] == 0 and span["cost_usd"] > 0 for span in spans)
    snapshot = client.monitor.snapshot()
    assert snapshot["spend_last_hour"] == pytest.approx(sum(span["cost_usd"] for span in spans))
    assert (snapshot["errors_in_error_window"], snapshot["state"]) == (0, "CLOSED")


class _QuickRetries(openai.OpenAI):
    """The real client, with its retries' backoff (0.5 s doubling) cut short: the tests wait for timeouts only."""

    def _calculate_retry_timeout(self, *args: Any, **kwargs: Any) -> float:
        return 0.01


def test_a_call_whose_attempts_time_out_is_charged_for_each_prompt_sent(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider) -> None:
    """Found 2026-12-07: a call ended by the client's own ``timeout=`` (``APITimeoutError`` after its retries) was
    charged $0, although each attempt's request had reached the provider, which bills its prompt. Each attempt that
    went out unanswered (a read timeout) is now charged an estimate of the prompt, as a call cut off by
    ``asyncio.wait_for`` is; one that never went out (connection refused) is charged nothing."""
    client = watch()
    prompt = [{"role": "user", "content": "summarise this report " * 200}]
    for retries in (0, 2):
        stub_provider.queue(*[Reply(content="late", delay=1.0)] * (retries + 1))
        slow = _QuickRetries(base_url=stub_provider.openai_base_url, api_key="k", timeout=0.3, max_retries=retries)
        with pytest.raises(openai.APITimeoutError):
            slow.chat.completions.create(model="gpt-4o", messages=prompt)
    assert stub_provider.count() == 4
    unreachable = _QuickRetries(base_url="http://127.0.0.1:9/v1", api_key="k", timeout=0.3, max_retries=1)
    with pytest.raises(openai.APIConnectionError):
        unreachable.chat.completions.create(model="gpt-4o", messages=prompt)
    once, thrice, refused = llm_spans()
    assert once["attributes"]["error.type"] == thrice["attributes"]["error.type"] == "APITimeoutError"
    assert once["attributes"]["usage_estimated"] and once["input_tokens"] > 600 and once["output_tokens"] == 0
    assert thrice["input_tokens"] == 3 * once["input_tokens"] and thrice["attributes"]["http.attempts"] == 3
    assert thrice["cost_usd"] == pytest.approx(3 * once["cost_usd"])
    assert refused["input_tokens"] == 0 and refused["cost_usd"] == 0
    assert client.monitor.snapshot()["spend_last_hour"] == pytest.approx(4 * once["cost_usd"])


def test_a_hard_budget_reserves_the_prompt_of_each_attempt_that_timed_out_before_retrying(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider) -> None:
    """Each attempt that times out is charged its prompt (above): the call's reservation covers one request, so a
    retry first reserves the prompt of the attempt that went unanswered; one that does not fit is refused before it
    is sent. Without that, six attempts of a prompt charged past a hard budget its one reservation fitted in."""
    budget = 0.012
    client = watch(budget_per_hour=budget, hard_budget=True)
    prompt = [{"role": "user", "content": "x" * 4000}]  # worst case with max_tokens=1: ~$0.0103 as gpt-4o
    stub_provider.queue(*[Reply(content="late", delay=1.0)] * 6)
    slow = _QuickRetries(base_url=stub_provider.openai_base_url, api_key="k", timeout=0.3, max_retries=5)
    with pytest.raises(CircuitBreakerException) as refused:
        slow.chat.completions.create(model="gpt-4o", messages=prompt, max_tokens=1)
    assert refused.value.reason == "hard_budget" and stub_provider.count() == 1
    [span] = llm_spans()
    assert span["attributes"]["usage_estimated"] and span["cost_usd"] > 0
    snapshot = client.monitor.snapshot()
    assert snapshot["spend_last_hour"] == pytest.approx(span["cost_usd"]) and snapshot["spend_last_hour"] <= budget
    assert snapshot["reserved"] == 0


def test_blocked_call_raises_its_own_type_and_sends_nothing(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider) -> None:
    client = watch()
    retrying = openai.OpenAI(base_url=stub_provider.openai_base_url, api_key="k", max_retries=3)
    client.monitor.pause(60)
    with pytest.raises(CircuitBreakerException) as blocked:
        retrying.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    with pytest.raises(CircuitBreakerException):
        retrying.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    assert stub_provider.count() == 0  # no request, no retry
    assert blocked.value.monitor is client.monitor
    spans = llm_spans()
    assert [span["status"] for span in spans] == ["blocked", "blocked"]
    assert spans[0]["model"] == "gpt-4o"


async def test_blocked_async_call_raises_its_own_type(watch: Any, stub_provider: StubProvider,
                                                      aoai: openai.AsyncOpenAI) -> None:
    client = watch()
    client.monitor.pause(60)
    with pytest.raises(CircuitBreakerException):
        await aoai.embeddings.create(model="text-embedding-3-small", input="a")
    assert stub_provider.count() == 0


def test_a_call_inside_a_manual_llm_call_is_merged_into_it(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    client = watch(providers={stub_provider.base_url: "openai"})  # the raw tap sees it too
    stub_provider.queue(Reply(input_tokens=300, output_tokens=30))
    with agentwatch.llm_call("framework.chat", model="gpt-4o-mini", provider="openai") as call:
        oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        stream = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        list(stream)
    [span] = llm_spans()
    assert span["span_id"] == call.span.span_id and span["name"] == "framework.chat"
    assert (span["input_tokens"], span["output_tokens"]) == (300, 30)  # usage the framework did not give
    assert span["attributes"]["http.request_id"] == "req_stub2"  # the last request's details
    assert "usage_missing" not in span["attributes"]
    assert calls_counted(client) == 1


def test_the_frameworks_own_usage_wins(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                       oai: openai.OpenAI) -> None:
    watch()
    with agentwatch.llm_call("framework.chat", model="gpt-4o-mini") as call:
        call.set_usage(input_tokens=7, output_tokens=1)
        oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    [span] = llm_spans()
    assert (span["input_tokens"], span["output_tokens"]) == (7, 1)
    assert span["attributes"]["http.status_code"] == 200


def test_sdk_call_to_a_registered_url_is_counted_once(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    client = watch(providers={stub_provider.openai_base_url: "openai"})
    oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    [span] = llm_spans()
    assert span["name"] == "openai.chat.completions"
    assert calls_counted(client) == 1


def test_secrets_are_never_recorded(watch: Any, memory: agentwatch.InMemoryExporter,
                                    stub_provider: StubProvider) -> None:
    watch(capture_messages=True)
    azure = openai.AzureOpenAI(azure_endpoint=stub_provider.base_url, api_key="sk-secret-azure",
                               api_version="2024-10-21", max_retries=0)
    azure.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert stub_provider.last.headers["api-key"] == "sk-secret-azure"
    agentwatch.flush()
    exported = json.dumps(memory.spans)
    assert "sk-secret" not in exported
    [span] = [s for s in memory.spans if s["kind"] == "llm"]
    assert span["attributes"]["http.url"].endswith("/openai/deployments/gpt-4o/chat/completions"
                                                   "?api-version=2024-10-21")


def test_text_is_kept_only_when_asked(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                      oai: openai.OpenAI) -> None:
    watch(capture_messages=True)
    stub_provider.queue(Reply(content="plain answer"), Reply(content="streamed answer"))
    oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    plain, streamed = llm_spans()
    assert (plain["input"], plain["output"]) == (MESSAGES, "plain answer")
    assert streamed["output"] == "streamed answer"
    agentwatch.shutdown()
    watch()
    oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert "input" not in llm_spans()[-1] and "output" not in llm_spans()[-1]


def test_shutdown_removes_every_patch_and_init_starts_clean(
        watch: Any, memory: agentwatch.InMemoryExporter, oai: openai.OpenAI) -> None:
    import requests
    from openai import _base_client

    originals = (_base_client.SyncAPIClient.request, _base_client.AsyncAPIClient.request, httpx.Client.send,
                 httpx.AsyncClient.send, requests.Session.send)
    watch()
    assert _base_client.SyncAPIClient.request is not originals[0] and httpx.Client.send is not originals[2]
    agentwatch.shutdown()
    assert (_base_client.SyncAPIClient.request, _base_client.AsyncAPIClient.request, httpx.Client.send,
            httpx.AsyncClient.send, requests.Session.send) == originals
    oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # not watched: nothing recorded
    assert [s for s in memory.spans if s["kind"] == "llm"] == []
    watch()
    oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    agentwatch.flush()
    assert len([s for s in memory.spans if s["kind"] == "llm"]) == 1


def test_disabled_plugin_is_not_installed(watch: Any, llm_spans: SpansOf, oai: openai.OpenAI) -> None:
    from openai import _base_client

    original = _base_client.SyncAPIClient.request
    watch(disabled_plugins=["openai", "http"])
    assert _base_client.SyncAPIClient.request is original
    oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert llm_spans() == []


def test_concurrent_calls_from_threads_keep_their_own_usage(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # openai builds its response models on first use, and pydantic's build is not thread-safe (openai-python#3079):
    # the pool's first calls at once could fail inside openai, with or without AgentWatch. One call first, unwatched.
    oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client = watch()
    stub_provider.queue(*[Reply(input_tokens=100 + n, content=f"reply {100 + n}") for n in range(16)])

    def ask(_: int) -> tuple[int, str | None]:
        reply = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return reply.usage.prompt_tokens, reply.choices[0].message.content

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(16)))
    spans = llm_spans()
    assert sorted(span["input_tokens"] for span in spans) == list(range(100, 116))
    assert len({span["attributes"]["http.request_id"] for span in spans}) == 16
    assert all(content == f"reply {tokens}" for tokens, content in answers)
    assert calls_counted(client) == 16


async def test_concurrent_async_calls_keep_their_own_usage(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider, aoai: openai.AsyncOpenAI) -> None:
    import asyncio

    watch()
    stub_provider.queue(*[Reply(input_tokens=200 + n, content="a b c", chunk_delay=0.001) for n in range(10)])

    async def ask(stream: bool) -> None:
        if stream:
            chunks = await aoai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                        stream_options={"include_usage": True})
            async for _chunk in chunks:
                pass
        else:
            await aoai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    await asyncio.gather(*(ask(n % 2 == 0) for n in range(10)))
    assert sorted(span["input_tokens"] for span in llm_spans()) == list(range(200, 210))


def test_calls_on_other_threads_do_not_meet_a_half_imported_httpx2(stub_provider: StubProvider,
                                                                    tmp_path: Path) -> None:
    """openai reads sys.modules["httpx2"] on every request, without the import lock. AgentWatch imports genai-prices,
    which imports httpx2, when it first prices a model its shipped index lacks; calls on other threads meanwhile must
    all succeed. init() itself imports no httpx2 (openai's requests then stay on their path without it). The import
    is slowed down here, as on a loaded machine, so that the other threads' calls surely meet it half done."""
    import subprocess
    import sys
    import textwrap

    program = textwrap.dedent(f"""
        import sys, threading, time, openai, agentwatch

        class SlowImport:  # httpx2/__init__ is half run while its submodule _api is found
            def find_spec(self, name, path=None, target=None):
                if name == "httpx2._api":
                    time.sleep(0.3)
                return None

        sys.meta_path.insert(0, SlowImport())
        client = openai.OpenAI(base_url="{stub_provider.openai_base_url}", api_key="k", max_retries=0)
        agentwatch.init(exporters=[])
        assert "httpx2" not in sys.modules, "init() imported httpx2"
        errors, during, stop = [], [0], threading.Event()
        # openai builds its response models on first use, not thread-safely (openai-python#3079): one call first.
        client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])

        def ask():
            while not stop.is_set():
                module = sys.modules.get("httpx2")
                half_done = module is not None and module.__spec__._initializing
                try:
                    client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
                except Exception as error:
                    errors.append(repr(error))
                during[0] += half_done

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.1)
        # A model the price index lacks (and no lookup remembered: a new cache directory): priced from genai-prices.
        client.chat.completions.create(model="gpt-4o-mini-next", messages=[{{"role": "user", "content": "hi"}}])
        assert hasattr(sys.modules.get("httpx2"), "Timeout"), "genai-prices was not imported"
        stop.set()
        for thread in threads:
            thread.join()
        assert not errors, errors[:3]
        assert during[0] > 0, "no call was made while httpx2 was half imported"
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_a_stream_in_one_chunk_and_one_chunk_per_event_read_alike(watch: Any, llm_spans: SpansOf) -> None:
    """The tap reads each chunk once the next has gone by (the last at the end), so the first chunk reaches
    the user untouched; whether the body comes in one piece or one event per piece, usage is read."""
    events = [b"data: " + json.dumps(event).encode() + b"\n\n" for event in (
        {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o-mini-2024-07-18",
         "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}], "usage": None},
        {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o-mini-2024-07-18",
         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None},
        {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o-mini-2024-07-18",
         "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}},
    )] + [b"data: [DONE]\n\n"]

    class Pieces(httpx.SyncByteStream):
        def __init__(self, pieces: list[bytes]) -> None:
            self.pieces = pieces

        def __iter__(self) -> Any:
            yield from self.pieces

    watch()
    for pieces in ([b"".join(events)], events):
        transport = httpx.MockTransport(lambda request, pieces=pieces: httpx.Response(
            200, stream=Pieces(pieces), headers={"content-type": "text/event-stream", "x-request-id": "req_9"}))
        oai = openai.OpenAI(base_url="http://stub.invalid/v1", api_key="k", max_retries=0,
                            http_client=httpx.Client(transport=transport))
        chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                  stream_options={"include_usage": True}))
        assert chunks[0].choices[0].delta.content == "hi" and chunks[-1].usage.prompt_tokens == 9
    for span in llm_spans():
        assert (span["input_tokens"], span["output_tokens"]) == (9, 4)
        attributes = span["attributes"]
        assert attributes["finish_reason"] == "stop" and attributes["response_model"] == "gpt-4o-mini-2024-07-18"
        assert attributes["http.request_id"] == "req_9" and attributes["http.status_code"] == 200
        assert attributes["http.url"] == "http://stub.invalid/v1/chat/completions"
        assert attributes["time_to_first_token_ms"] >= 0 and "stream_incomplete" not in attributes
    assert len(llm_spans()) == 2


def test_the_quick_read_of_sdk_results_matches_the_general_one(watch: Any, llm_spans: SpansOf) -> None:
    """``Exchange._settle_openai`` (the per-call path) records what the general reading of a result does."""
    from openai.types import CreateEmbeddingResponse
    from openai.types.chat import ChatCompletion

    from agentwatch.plugins.http._endpoints import CHAT, EMBEDDINGS
    from agentwatch.plugins.http._exchange import Exchange

    class General(Exchange):
        __slots__ = ()

        def _settle_openai(self, result: Any) -> bool:
            return False

    choice = {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "length"}
    results = [
        (CHAT, ChatCompletion.model_validate({
            "id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini-2024-07-18",
            "choices": [choice], "usage": {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107,
                                           "prompt_tokens_details": {"cached_tokens": 40}}})),
        (CHAT, ChatCompletion.model_validate({  # DeepSeek: cache hits outside prompt_tokens_details
            "id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini", "choices": [choice],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                      "prompt_cache_hit_tokens": 4}})),
        (EMBEDDINGS, CreateEmbeddingResponse.model_validate({
            "object": "list", "model": "text-embedding-3-small", "data": [],
            "usage": {"prompt_tokens": 8, "total_tokens": 8}})),
    ]
    watch()
    for endpoint, result in results:
        for kind in (Exchange, General):
            call = agentwatch.start_llm_call("openai.x", model="gpt-4o-mini", provider="openai")
            kind(call, endpoint, owned=True, ends_with_body=False, reads_result=True).settle(result)
    spans = llm_spans()
    assert len(spans) == 2 * len(results)
    for quick, general in zip(spans[::2], spans[1::2], strict=True):
        for span in (quick, general):
            for varying in ("trace_id", "span_id", "start_time_unix_nano", "end_time_unix_nano"):
                span.pop(varying)
            span["attributes"].pop("latency_ms")
        assert quick == general
    assert (spans[0]["input_tokens"], spans[0]["cached_input_tokens"], spans[2]["cached_input_tokens"]) == (100, 40, 4)
    assert spans[0]["attributes"]["response_model"] == "gpt-4o-mini-2024-07-18"
    assert spans[4]["output_tokens"] == 0 and spans[4]["input_tokens"] == 8


@pytest.mark.parametrize("stream", [False, True])
def test_an_azure_deployment_is_priced_as_the_model_that_answered(stream: bool, watch: Any, llm_spans: SpansOf,
                                                                   stub_provider: StubProvider) -> None:
    """An Azure deployment has a name of its own (``prod-chat``); the answer names the model. Found 2026-12-05: priced
    at the unknown-model default ($0.12) where gpt-4o's list price gives $0.35; embeddings $1.00 instead of $0.13."""
    client = watch(budget_per_hour=100.0)
    azure = openai.AzureOpenAI(azure_endpoint=stub_provider.base_url, api_key="k", api_version="2024-10-21",
                               max_retries=0)
    stub_provider.queue(Reply(input_tokens=100_000, output_tokens=10_000, model="gpt-4o-2024-08-06"),
                        Reply(input_tokens=1_000_000, model="text-embedding-3-large"))
    if stream:
        list(azure.chat.completions.create(model="prod-chat", messages=MESSAGES, stream=True,
                                           stream_options={"include_usage": True}))
    else:
        azure.chat.completions.create(model="prod-chat", messages=MESSAGES)
    azure.embeddings.create(model="prod-embed", input="x")
    chat, embedding = llm_spans()
    assert (chat["model"], chat["attributes"]["priced_as"]) == ("prod-chat", "gpt-4o-2024-08-06")
    assert chat["cost_usd"] == pytest.approx(100_000 * 2.5e-6 + 10_000 * 10e-6)  # gpt-4o's list price
    assert "cost_estimated" not in chat["attributes"]
    assert embedding["cost_usd"] == pytest.approx(0.13)  # text-embedding-3-large: $0.13 per 1M tokens
    assert client.monitor.snapshot()["spend_last_hour"] == pytest.approx(chat["cost_usd"] + embedding["cost_usd"])


def test_a_hard_budget_reserves_an_azure_deployment_at_the_price_of_the_model_that_answered(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider) -> None:
    """Found 2026-12-07: a deployment's own name is unknown to the price table, so its worst case was reserved at the
    default rate ($1/$2 per 1M) while the finished call was priced as the model that answered (gpt-4o, $2.50/$10):
    the second call was admitted on a reservation a third of its price, and recorded spend passed the hard budget.
    Once an answer has named the model, a call of that deployment reserves that model's worst case."""
    budget = 0.02
    client = watch(budget_per_hour=budget, hard_budget=True)
    azure = openai.AzureOpenAI(azure_endpoint=stub_provider.base_url, api_key="k", api_version="2024-10-21",
                               max_retries=0)
    request = {"model": "prod-chat", "max_tokens": 1000, "messages": [{"role": "user", "content": "x" * 2000}]}
    # gpt-4o: $0.01125 for this answer; the request's worst case is ~$0.004 at the default rate, ~$0.015 as gpt-4o.
    stub_provider.queue(*[Reply(input_tokens=500, output_tokens=1000, model="gpt-4o-2024-08-06")] * 2)
    azure.chat.completions.create(**request)
    with pytest.raises(CircuitBreakerException) as refused:
        azure.chat.completions.create(**request)
    assert refused.value.reason == "hard_budget" and refused.value.reserved > 0.015 and stub_provider.count() == 1
    answered, _blocked = llm_spans()
    assert (answered["attributes"]["priced_as"], answered["cost_usd"]) == ("gpt-4o-2024-08-06", pytest.approx(0.01125))
    spent = client.monitor.snapshot()["spend_last_hour"]
    assert spent == pytest.approx(0.01125) and spent <= budget


@pytest.mark.parametrize("capture", [False, True], ids=["plain", "captured"])
@pytest.mark.parametrize("stream", [False, True], ids=["response", "stream"])
def test_responses_web_searches_are_charged(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                            oai: openai.OpenAI, stream: bool, capture: bool) -> None:
    # gpt-4.1: $2.00 input, $8.00 output per 1M tokens, $10 per 1,000 web search calls (openai.com/api/pricing).
    # The Responses API counts no searches in usage: one web_search_call output item is one billed search.
    client = watch(budget_per_hour=100.0, capture_messages=capture)
    stub_provider.queue(Reply(content="found", input_tokens=1000, output_tokens=100, web_search_requests=2),
                        Reply(content="plain", input_tokens=1000, output_tokens=100))
    for _ in range(2):
        if stream:
            with oai.responses.stream(model="gpt-4.1", input="hi", tools=[{"type": "web_search"}]) as events:
                events.get_final_response()
        else:
            oai.responses.create(model="gpt-4.1", input="hi", tools=[{"type": "web_search"}])
    searched, plain = llm_spans()
    tokens = 1000 * 2.00 / 1e6 + 100 * 8.00 / 1e6
    assert searched["cost_usd"] == pytest.approx(tokens + 2 * 10.00 / 1000, rel=1e-9)
    assert searched["attributes"]["web_search_requests"] == 2
    assert plain["cost_usd"] == pytest.approx(tokens, rel=1e-9) and "web_search_requests" not in plain["attributes"]
    assert client.monitor.snapshot()["spend_last_hour"] == pytest.approx(2 * tokens + 0.02, rel=1e-9)


WEATHER = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def _tool_calls_of(output: Any) -> list[tuple[str, Any]]:
    """(name, parsed arguments) of each tool call in a captured output, checking the shape every provider shares."""
    assert isinstance(output, dict) and output["role"] == "assistant", output
    calls = output["tool_calls"]
    assert all(set(call) == {"id", "name", "arguments"} and isinstance(call["id"], str) for call in calls), calls
    return [(call["name"], json.loads(call["arguments"])) for call in calls]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_captured_output_keeps_the_models_tool_calls(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                                     oai: openai.OpenAI, stream: bool) -> None:
    watch(capture_messages=True)
    stub_provider.queue(Reply(content="", tool_calls=WEATHER), Reply(content="Looking.", tool_calls=WEATHER),
                        Reply(content="", tool_calls=WEATHER))
    result = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL],  # type: ignore
                                         stream=stream)
    if stream:
        list(result)  # type: ignore[call-overload]
    result = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL],  # type: ignore
                                         stream=stream)
    if stream:
        list(result)  # type: ignore[call-overload]
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    if stream:
        with oai.responses.stream(model="gpt-4.1", input="hi", tools=tools) as events:  # type: ignore[arg-type]
            events.get_final_response()
    else:
        oai.responses.create(model="gpt-4.1", input="hi", tools=tools)  # type: ignore[arg-type]
    chat, chat_with_text, responses = llm_spans()
    for span in (chat, chat_with_text, responses):
        assert _tool_calls_of(span["output"]) == [("get_weather", {"city": "Paris"})]
    assert chat["output"]["content"] is None and responses["output"]["content"] is None
    assert chat_with_text["output"]["content"] == "Looking."
    assert chat["attributes"]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("config", [{}, {"capture_messages": True, "zero_data_retention": True}],
                         ids=["not-asked", "zero-retention"])
def test_tool_calls_are_kept_only_when_text_is(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                               oai: openai.OpenAI, config: dict[str, Any]) -> None:
    watch(**config)
    stub_provider.queue(Reply(content="", tool_calls=WEATHER), Reply(content="", tool_calls=WEATHER))
    oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=[WEATHER_TOOL],  # type: ignore
                                     stream=True))
    assert [span.get("output") for span in llm_spans()] == [None, None]
