"""LLM calls made with plain HTTP clients (httpx, httpx2, requests, aiohttp) against the stub provider."""

from __future__ import annotations

import gzip
import json
from typing import Any

import aiohttp
import httpx
import httpx2
import pytest
import requests

import agentwatch
from agentwatch import CircuitBreakerException
from agentwatch.plugins.http._body import BodyReader
from agentwatch.plugins.http._endpoints import ProviderTable, endpoint_for_path, provider_for_host, safe_url
from tests.plugins.providers.conftest import SpansOf, calls_counted
from tests.stubs.provider_server import Reply, StubProvider

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
STREAM_WITH_USAGE = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}


@pytest.fixture
def registered(watch: Any, stub_provider: StubProvider) -> agentwatch.Client:
    """AgentWatch with the stub registered as an OpenAI-compatible server (it is no known host)."""
    return watch(providers={stub_provider.base_url: "openai"})


def chat_url(stub: StubProvider) -> str:
    return f"{stub.openai_base_url}/chat/completions"


@pytest.mark.parametrize("library", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_httpx_plain_and_streamed(library: Any, registered: agentwatch.Client, llm_spans: SpansOf,
                                  stub_provider: StubProvider) -> None:
    stub_provider.queue(Reply(input_tokens=40, output_tokens=4, cached_tokens=8),
                        Reply(content="a b c", input_tokens=41, output_tokens=3))
    with library.Client() as http:
        assert http.post(chat_url(stub_provider), json=CHAT).json()["usage"]["prompt_tokens"] == 40
        with http.stream("POST", chat_url(stub_provider), json=STREAM_WITH_USAGE) as response:
            lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and len(lines) == 7  # every chunk reached the caller
    plain, streamed = llm_spans()
    assert (plain["name"], plain["model"], plain["provider"]) == ("openai.chat.completions", "gpt-4o-mini",
                                                                   "openai")
    assert (plain["input_tokens"], plain["output_tokens"], plain["cached_input_tokens"]) == (40, 4, 8)
    assert (streamed["input_tokens"], streamed["output_tokens"]) == (41, 3)
    assert "time_to_first_token_ms" in streamed["attributes"]
    assert calls_counted(registered) == 2


@pytest.mark.parametrize("library", [httpx, httpx2], ids=["httpx", "httpx2"])
async def test_httpx_async(library: Any, registered: agentwatch.Client, llm_spans: SpansOf,
                           stub_provider: StubProvider) -> None:
    stub_provider.queue(Reply(input_tokens=50), Reply(content="x y", input_tokens=51))
    async with library.AsyncClient() as http:
        await http.post(chat_url(stub_provider), json=CHAT)
        async with http.stream("POST", chat_url(stub_provider), json=STREAM_WITH_USAGE) as response:
            chunks = [chunk async for chunk in response.aiter_bytes()]
    assert b"".join(chunks).endswith(b"data: [DONE]\n\n")
    assert [span["input_tokens"] for span in llm_spans()] == [50, 51]


def test_requests_plain_streamed_and_left_early(registered: agentwatch.Client, llm_spans: SpansOf,
                                                stub_provider: StubProvider) -> None:
    stub_provider.queue(Reply(input_tokens=60), Reply(content="q r s", input_tokens=61),
                        Reply(content="a b c d e f", chunk_delay=0.01))
    assert requests.post(chat_url(stub_provider), json=CHAT).json()["usage"]["prompt_tokens"] == 60
    with requests.post(chat_url(stub_provider), json=STREAM_WITH_USAGE, stream=True) as response:
        assert [line for line in response.iter_lines() if line][-1] == b"data: [DONE]"
    with requests.post(chat_url(stub_provider), json={**CHAT, "stream": True}, stream=True) as response:
        next(response.iter_lines())
    plain, streamed, left = llm_spans()
    assert (plain["input_tokens"], streamed["input_tokens"]) == (60, 61)
    assert left["attributes"]["stream_incomplete"] is True
    # No usage came: charged from an estimate of the request (and whatever output was read).
    assert left["attributes"]["usage_estimated"] is True and "usage_missing" not in left["attributes"]
    assert left["input_tokens"] > 0 and left["cost_usd"] > 0


async def test_aiohttp_json_and_streamed_lines(registered: agentwatch.Client, llm_spans: SpansOf,
                                               stub_provider: StubProvider) -> None:
    stub_provider.queue(Reply(input_tokens=70, output_tokens=7), Reply(content="u v", input_tokens=71))
    async with aiohttp.ClientSession() as session:
        async with session.post(chat_url(stub_provider), json=CHAT) as response:
            assert (await response.json())["usage"]["prompt_tokens"] == 70
        async with session.post(chat_url(stub_provider), json=STREAM_WITH_USAGE) as response:
            lines = [line async for line in response.content if line.strip()]
    assert lines[-1].strip() == b"data: [DONE]"
    plain, streamed = llm_spans()
    assert (plain["input_tokens"], plain["output_tokens"]) == (70, 7)
    assert streamed["input_tokens"] == 71 and "stream_incomplete" not in streamed["attributes"]
    assert plain["attributes"]["http.request_id"] == "req_stub1"


async def test_aiohttp_response_released_unread_still_ends(registered: agentwatch.Client, llm_spans: SpansOf,
                                                           stub_provider: StubProvider) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(chat_url(stub_provider), json={**CHAT, "stream": True}):
            pass
    [span] = llm_spans()
    assert span["attributes"]["stream_incomplete"] is True


def test_other_traffic_is_left_alone(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider) -> None:
    watch()  # the stub is not registered: a local server is no known provider
    httpx.post(chat_url(stub_provider), json=CHAT)
    requests.post(chat_url(stub_provider), json=CHAT)
    agentwatch.shutdown()
    watch(providers={stub_provider.base_url: "openai"})
    httpx.get(f"{stub_provider.openai_base_url}/models")  # registered host, but not an LLM endpoint
    assert llm_spans() == []


def test_blocked_before_sending_with_each_library(registered: agentwatch.Client, llm_spans: SpansOf,
                                                  stub_provider: StubProvider) -> None:
    registered.monitor.pause(60)
    with pytest.raises(CircuitBreakerException):
        httpx.post(chat_url(stub_provider), json=CHAT)
    with pytest.raises(CircuitBreakerException):
        httpx2.post(chat_url(stub_provider), json=CHAT)
    with pytest.raises(CircuitBreakerException):
        requests.post(chat_url(stub_provider), json=CHAT)
    assert stub_provider.count() == 0
    assert [span["status"] for span in llm_spans()] == ["blocked"] * 3


async def test_aiohttp_blocked_before_sending(registered: agentwatch.Client,
                                              stub_provider: StubProvider) -> None:
    registered.monitor.pause(60)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(CircuitBreakerException):
            await session.post(chat_url(stub_provider), json=CHAT)
    assert stub_provider.count() == 0


def test_raw_request_inside_a_manual_call_is_merged(registered: agentwatch.Client, llm_spans: SpansOf,
                                                    stub_provider: StubProvider) -> None:
    stub_provider.queue(Reply(input_tokens=80, output_tokens=8))
    with agentwatch.llm_call("manual", model="gpt-4o-mini", provider="openai") as call:
        requests.post(chat_url(stub_provider), json=CHAT)
    [span] = llm_spans()
    assert span["span_id"] == call.span.span_id
    assert (span["input_tokens"], span["output_tokens"]) == (80, 8)
    assert span["attributes"]["http.status_code"] == 200
    assert span["attributes"]["http.request_id"] == "req_stub1"
    assert calls_counted(registered) == 1


def test_error_status_is_an_error_span(registered: agentwatch.Client, llm_spans: SpansOf,
                                       stub_provider: StubProvider) -> None:
    stub_provider.queue(Reply(status=429))
    # The caller gets the provider's response unchanged.
    assert httpx.post(chat_url(stub_provider), json=CHAT).status_code == 429
    [span] = llm_spans()
    assert span["status"] == "error" and span["attributes"]["error.message"] == "HTTP 429"
    assert "usage_missing" not in span["attributes"]
    assert registered.monitor.snapshot()["errors_in_error_window"] == 1


async def test_a_read_timeout_is_charged_for_the_prompt_sent_and_a_refused_connection_is_not(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider) -> None:
    """A request that timed out waiting for its answer (each library's read timeout) went out: the provider bills its
    prompt, so it is charged an estimate of it. One whose connection was refused sent nothing and costs nothing."""
    nobody = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused
    client = watch(providers={stub_provider.base_url: "openai", nobody: "openai"})
    body = {**CHAT, "messages": [{"role": "user", "content": "summarise this report " * 200}]}
    stub_provider.queue(*[Reply(content="late", delay=1.0)] * 3)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(chat_url(stub_provider), json=body, timeout=httpx.Timeout(5.0, read=0.3))
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(chat_url(stub_provider), json=body, timeout=(5.0, 0.3))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.SocketTimeoutError):
            await session.post(chat_url(stub_provider), json=body, timeout=aiohttp.ClientTimeout(sock_read=0.3))
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{nobody}/v1/chat/completions", json=body)
    assert stub_provider.count() == 3
    *timed_out, refused = llm_spans()
    assert [span["attributes"]["usage_estimated"] for span in timed_out] == [True] * 3
    assert all(span["input_tokens"] > 1000 and span["cost_usd"] > 0 for span in timed_out)
    assert refused["input_tokens"] == 0 and refused["cost_usd"] == 0 and refused["status"] == "error"
    assert client.monitor.snapshot()["spend_last_hour"] == pytest.approx(sum(s["cost_usd"] for s in timed_out))


def test_gemini_and_anthropic_formats_with_secrets_dropped(watch: Any, memory: agentwatch.InMemoryExporter,
                                                           llm_spans: SpansOf,
                                                           stub_provider: StubProvider) -> None:
    gemini_base = f"{stub_provider.base_url}/v1beta"
    watch(providers={gemini_base: "google", f"{stub_provider.base_url}/v1/messages": "anthropic"})
    stub_provider.queue(Reply(content="g", input_tokens=90, output_tokens=9, cached_tokens=30),
                        Reply(content="h i", input_tokens=91, output_tokens=2),
                        Reply(input_tokens=5, cached_tokens=5, output_tokens=1))
    url = f"{gemini_base}/models/gemini-2.0-flash:generateContent?key=AIza-secret-key"
    httpx.post(url, json={"contents": []}, headers={"x-goog-api-key": "AIza-secret-header"})
    stream_url = f"{gemini_base}/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key=AIza-secret-key"
    with httpx.stream("POST", stream_url, json={"contents": []}) as response:
        response.read()
    requests.post(f"{stub_provider.base_url}/v1/messages", headers={"x-api-key": "sk-ant-secret"},
                  json={"model": "claude-haiku-4-5", "max_tokens": 8, "messages": []})
    gemini, streamed, claude = llm_spans()
    assert (gemini["name"], gemini["model"], gemini["provider"]) == ("google.generate_content",
                                                                      "gemini-2.0-flash", "google")
    assert (gemini["input_tokens"], gemini["output_tokens"], gemini["cached_input_tokens"]) == (90, 9, 30)
    assert (streamed["input_tokens"], streamed["output_tokens"]) == (91, 2)
    assert streamed["attributes"]["http.url"].endswith(":streamGenerateContent?alt=sse&key=REDACTED")
    assert claude["name"] == "anthropic.messages"
    assert (claude["input_tokens"], claude["cached_input_tokens"]) == (10, 5)
    assert "secret" not in json.dumps(memory.spans)


def test_gemini_thinking_and_tool_prompts_are_charged_when_their_counts_stand_alone(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider) -> None:
    """Thinking that used the whole maxOutputTokens leaves no answer and no ``candidatesTokenCount``: its
    ``thoughtsTokenCount`` is still billed as output; a grounding search's ``toolUsePromptTokenCount`` as input."""
    gemini_base = f"{stub_provider.base_url}/v1beta"
    watch(providers={gemini_base: "google"})
    usage = {"promptTokenCount": 25, "thoughtsTokenCount": 8192, "toolUsePromptTokenCount": 300,
             "totalTokenCount": 8517}
    body = {"candidates": [{"content": {"role": "model"}, "finishReason": "MAX_TOKENS", "index": 0}],
            "usageMetadata": usage, "modelVersion": "gemini-2.5-pro"}
    stub_provider.queue(Reply(raw_body=json.dumps(body).encode(), headers={"content-type": "application/json"}))
    httpx.post(f"{gemini_base}/models/gemini-2.5-pro:generateContent", headers={"x-goog-api-key": "AIza-test"},
               json={"contents": [{"role": "user", "parts": [{"text": "Solve it"}]}],
                     "generationConfig": {"maxOutputTokens": 8192}})
    [span] = llm_spans()
    assert (span["input_tokens"], span["output_tokens"]) == (325, 8192)
    assert span["cost_usd"] == pytest.approx(325 * 1.25e-6 + 8192 * 10e-6)  # gemini-2.5-pro: $1.25 / $10 per 1M


def test_auto_instrument_off_installs_no_tap(watch: Any, stub_provider: StubProvider) -> None:
    original = httpx.Client.send
    watch(auto_instrument=False, providers={stub_provider.base_url: "openai"})
    assert httpx.Client.send is original


# ---- units: which requests are LLM calls, and reading bodies ----------------------------------------


@pytest.mark.parametrize(("host", "port", "provider"), [
    ("api.openai.com", None, "openai"),
    ("my-resource.openai.azure.com", None, "azure"),
    ("api.anthropic.com", None, "anthropic"),
    ("generativelanguage.googleapis.com", None, "google"),
    ("api.mistral.ai", None, "mistral"),
    ("api.groq.com", None, "groq"),
    ("api.cohere.com", None, "cohere"),
    ("api.together.xyz", None, "together"),
    ("api.fireworks.ai", None, "fireworks"),
    ("api.deepseek.com", None, "deepseek"),
    ("openrouter.ai", None, "openrouter"),
    ("localhost", 11434, "ollama"),
    ("example.com", None, None),
    ("api.openai.com.evil.example", None, None),
])
def test_known_provider_hosts(host: str, port: int | None, provider: str | None) -> None:
    assert provider_for_host(host, port) == provider


def test_registered_base_urls_win_and_match_on_path_boundaries() -> None:
    table = ProviderTable({"http://my-vllm:8000/": "openai", "HTTPS://Proxy.Example/anthropic": "anthropic"})
    assert table.provider_for("http://my-vllm:8000/v1/chat/completions", "my-vllm", 8000) == "openai"
    anthropic_url = "https://proxy.example/anthropic/v1/messages"
    assert table.provider_for(anthropic_url, "proxy.example", None) == "anthropic"
    assert table.provider_for("https://proxy.example/anthropicx/v1", "proxy.example", None) is None
    assert table.provider_for("http://my-vllm:8001/v1/chat/completions", "my-vllm", 8001) is None


def test_endpoints_by_path() -> None:
    assert endpoint_for_path("/v1/chat/completions").api == "chat"
    assert endpoint_for_path("/openai/deployments/gpt/chat/completions").api == "chat"
    assert endpoint_for_path("/v1/messages").api == "messages"
    assert endpoint_for_path("/v1beta/models/gemini-2.0-flash:streamGenerateContent").api == "gemini"
    assert endpoint_for_path("/api/chat").api == "ollama"
    assert endpoint_for_path("/v1/threads/thread_1/messages") is None  # OpenAI assistants, no LLM call
    assert endpoint_for_path("/v1/messages/count_tokens") is None
    assert endpoint_for_path("/v1/models") is None


def test_safe_url_drops_credentials() -> None:
    assert safe_url("https://user:pw@h.example/v1?key=abc&alt=sse&api-key=x") == \
        "https://h.example/v1?key=REDACTED&alt=sse&api-key=REDACTED"


def test_credentials_in_the_query_never_reach_a_span(registered: agentwatch.Client,
                                                      memory: agentwatch.InMemoryExporter,
                                                      stub_provider: StubProvider) -> None:
    secrets = {"x-goog-api-key": "AIzaSECRET1", "subscription-key": "SECRET2", "X-Amz-Signature": "SECRET3",
               "X-Amz-Credential": "AKIASECRET4", "client_secret": "SECRET5", "access-token": "SECRET6"}
    for library in (httpx, requests):
        library.post(chat_url(stub_provider), params={"api-version": "2024-10-21", **secrets}, json=CHAT)
    agentwatch.flush()
    assert stub_provider.last.query["subscription-key"] == ["SECRET2"]  # the request itself is untouched
    exported = json.dumps(memory.spans)
    assert "SECRET" not in exported
    urls = [span["attributes"]["http.url"] for span in memory.spans if span["kind"] == "llm"]
    assert len(urls) == 2 and all("api-version=2024-10-21" in url and "X-Amz-Signature=REDACTED" in url
                                  for url in urls)


@pytest.mark.parametrize("name", ["x-goog-api-key", "subscription-key", "X-Amz-Signature", "X-Amz-Credential",
                                  "X-Amz-Security-Token", "client_secret", "access-token", "sig", "token",
                                  "anything_new"])
def test_safe_url_keeps_only_values_known_to_be_harmless(name: str) -> None:
    url = f"https://h.example/v1/chat/completions?api-version=2024-10-21&{name}=s3cr3t%2Fv&alt=sse#frag"
    recorded = safe_url(url)
    assert "s3cr3t" not in recorded and "frag" not in recorded
    assert recorded == (f"https://h.example/v1/chat/completions?api-version=2024-10-21&{name}=REDACTED"
                        "&alt=sse")
    assert safe_url("https://h.example/v1/chat/completions") == "https://h.example/v1/chat/completions"


def test_reader_follows_events_split_anywhere_and_compressed() -> None:
    events = b"".join(b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n" for chunk in (
        {"choices": [{"delta": {"content": "a"}, "finish_reason": None}], "usage": None},
        {"choices": [{"delta": {}, "finish_reason": "length"}], "usage": None},
        {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3,
                                  "prompt_tokens_details": {"cached_tokens": 2}}},
    )) + b"data: [DONE]\r\n\r\n"
    compressed = gzip.compress(events)
    reader = BodyReader("chat", "text/event-stream", content_encoding="gzip")
    for start in range(0, len(compressed), 7):  # 7-byte pieces split every event and marker
        reader.feed(compressed[start:start + 7])
    reading = reader.finish()
    assert reading.usage() == {"input_tokens": 12, "output_tokens": 3, "cached_input_tokens": 2,
                               "cache_write_tokens": None}
    assert reading.finish_reason == "length" and reader.saw_end


def test_reader_ndjson_and_unreadable_encodings() -> None:
    lines = b'{"message":{"content":"a"},"done":false}\n{"model":"llama3","done":true,' \
            b'"prompt_eval_count":26,"eval_count":290}\n'
    reader = BodyReader("ollama", "application/x-ndjson", capture_text=True)
    reader.feed(lines)
    reading = reader.finish()
    assert (reading.input_tokens, reading.output_tokens) == (26, 290)
    assert (reading.model, reading.text) == ("llama3", "a")
    brotli = BodyReader("chat", "text/event-stream", content_encoding="br")
    brotli.feed(b"\x8b\x00")
    assert not brotli.finish().has_usage and brotli.unreadable == "content-encoding br"


def test_reading_provider_additions_from_bodies_and_sdk_objects() -> None:
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    from agentwatch.plugins.http._usage import Reading, read_into

    deepseek = {"id": "c", "object": "chat.completion", "created": 0, "model": "deepseek-chat",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                          "prompt_cache_hit_tokens": 4}}
    groq = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "llama", "choices": [],
            "x_groq": {"usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}}
    for data, expected in ((deepseek, (10, 5, 4)), (ChatCompletion.model_validate(deepseek), (10, 5, 4)),
                           (groq, (7, 2, None)), (ChatCompletionChunk.model_validate(groq), (7, 2, None))):
        reading = Reading("chat")
        read_into(reading, data)
        usage = reading.usage()
        assert (usage["input_tokens"], usage["output_tokens"], usage["cached_input_tokens"]) == expected


def _sse(*events: Any) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n" for e in events)


@pytest.mark.parametrize("piece", [1, 7, 300, 10**6], ids=["bytewise", "7-byte", "300-byte", "whole"])
def test_reader_of_a_long_stream_keeps_its_first_and_last_events(piece: int) -> None:
    """Only a stream's first and last blocks are kept: usage at either end is read however it is cut."""
    anthropic = (b"event: message_start\n" + _sse({"type": "message_start", "message": {
        "model": "claude-x", "usage": {"input_tokens": 40, "cache_read_input_tokens": 10, "output_tokens": 1}}})
        + b"".join(b"event: content_block_delta\n" + _sse({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": f"w{n} "}}) for n in range(400))
        + b"event: message_delta\n" + _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                            "usage": {"output_tokens": 400}})
        + b"event: message_stop\n" + _sse({"type": "message_stop"}))
    chat = _sse(*({"choices": [{"delta": {"content": f"w{n} "}, "finish_reason": None}], "usage": None}
                  for n in range(400)),
                {"model": "gpt-x", "choices": [{"delta": {}, "finish_reason": "length"}], "usage": None},
                {"model": "gpt-x", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 400,
                                                            "prompt_tokens_details": {"cached_tokens": 2}}},
                b"[DONE]")
    for api, body, expected, finish_reason in (("messages", anthropic, (50, 400, 10), "end_turn"),
                                               ("chat", chat, (12, 400, 2), "length")):
        reader = BodyReader(api, "text/event-stream")
        for start in range(0, len(body), piece):
            reader.feed(body[start:start + piece])
        reading = reader.finish()
        usage = reading.usage()
        assert (usage["input_tokens"], usage["output_tokens"], usage["cached_input_tokens"]) == expected, api
        assert reading.finish_reason == finish_reason and reader.saw_end, api


def test_reader_of_a_stream_cut_short_sees_no_end() -> None:
    reader = BodyReader("chat", "text/event-stream")
    for _ in range(50):
        reader.feed(_sse({"choices": [{"delta": {"content": "w "}, "finish_reason": None}], "usage": None}))
    reader.feed(b'data: {"choices": [{"delta": {"content": "cut')  # no end mark, the last event unfinished
    reading = reader.finish()
    assert not reading.has_usage and not reader.saw_end and reading.finish_reason is None


async def test_raw_streams_without_usage_are_estimated(registered: agentwatch.Client, llm_spans: SpansOf,
                                                       stub_provider: StubProvider) -> None:
    """No SDK, nothing asked of the server: each transport's stream is charged from an estimate, and the
    bytes the caller reads are the server's."""
    text = "word " * 40  # 200 bytes: 50 tokens
    stream = {**CHAT, "stream": True}
    stub_provider.queue(Reply(content=text), Reply(content=text), Reply(content=text))
    with httpx.Client() as http, http.stream("POST", chat_url(stub_provider), json=stream) as response:
        via_httpx = b"".join(response.iter_bytes())
    with requests.post(chat_url(stub_provider), json=stream, stream=True) as response:
        via_requests = b"".join(response.iter_content(None))
    async with aiohttp.ClientSession() as session, session.post(chat_url(stub_provider), json=stream) as response:
        via_aiohttp = await response.read()
    assert len({len(via_httpx), len(via_requests), len(via_aiohttp)}) == 1 and b'"usage"' not in via_httpx
    spans = llm_spans()
    assert len(spans) == 3 and calls_counted(registered) == 3
    for span in spans:
        assert span["attributes"]["usage_estimated"] is True and span["output_tokens"] == 50
        assert span["input_tokens"] > 0 and span["cost_usd"] > 0


@pytest.mark.parametrize(("api", "last"), [("messages", '"message_delta"'), ("chat", '"usage": {')])
def test_a_stream_closed_after_its_last_event_with_content_is_complete(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider, api: str, last: str) -> None:
    """A client may close the body after the last event that carries anything, without reading the empty end marker
    (LiteLLM's sync Anthropic stream after ``message_delta``; a chat stream's ``[DONE]`` after its usage chunk): the
    stream was read to its end. Closed one event earlier, it was not."""
    watch(providers={stub_provider.base_url: "anthropic" if api == "messages" else "openai"})
    if api == "messages":
        url, body = f"{stub_provider.base_url}/v1/messages", {**CHAT, "max_tokens": 64, "stream": True}
    else:
        url, body = chat_url(stub_provider), STREAM_WITH_USAGE
    for stop_at in (last, '"text_delta"' if api == "messages" else '"finish_reason": "stop"'):
        stub_provider.queue(Reply(content="a b c", input_tokens=20, output_tokens=3, chunk_delay=0.02))
        with httpx.stream("POST", url, json=body) as response:
            for line in response.iter_lines():
                if stop_at in line:
                    break
    complete, cut = llm_spans()
    assert "stream_incomplete" not in complete["attributes"]
    assert (complete["input_tokens"], complete["output_tokens"]) == (20, 3)
    assert cut["attributes"]["stream_incomplete"] is True
