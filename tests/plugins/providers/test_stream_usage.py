"""Every streamed call is charged, and the user's stream is exactly what it is without AgentWatch.

The stub sends usage in a chat stream only when ``stream_options.include_usage`` asks for it, like OpenAI.
Each test runs the same request without AgentWatch and with it and compares what user code received,
chunk for chunk (ids and timestamps, which the stub numbers per request, normalised).
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import httpx2
import openai
import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from agentwatch._estimate import estimate_request_tokens
from tests.plugins.providers.conftest import SpansOf, calls_counted
from tests.stubs.provider_server import Reply, StubProvider

MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Tell me a story about a lighthouse keeper."}]
STORY = "Once upon a time a keeper lit the lamp. " * 10  # 400 bytes: 100 tokens at 4 bytes a token
_IDS = re.compile(r"(stub|stub_)\d+|\"created(_at)?\": ?\d+")


def normal(value: Any) -> str:
    """A chunk as comparable text: the stub's per-request ids and timestamps blanked."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    return _IDS.sub("#", json.dumps(value, sort_keys=True, default=str))


@pytest.fixture
def oai(stub_provider: StubProvider) -> openai.OpenAI:
    return openai.OpenAI(base_url=stub_provider.openai_base_url, api_key="sk-test", max_retries=0)


@pytest.fixture
def aoai(stub_provider: StubProvider) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stub_provider.openai_base_url, api_key="sk-test", max_retries=0)


def story(**overrides: Any) -> Reply:
    return Reply(**{"content": STORY, "input_tokens": 30, "output_tokens": 90, **overrides})


def chat_chunks(oai: openai.OpenAI, **extra: Any) -> list[str]:
    stream = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True, **extra)
    return [normal(chunk) for chunk in stream]


def assert_charged_once(client: agentwatch.Client, span: dict[str, Any]) -> None:
    assert span["cost_usd"] > 0 and span["status"] == "ok"
    assert calls_counted(client) == 1
    assert client.monitor.snapshot()["spend_last_hour"] == pytest.approx(span["cost_usd"])


def assert_estimated(span: dict[str, Any], body: dict[str, Any]) -> None:
    attributes = span["attributes"]
    assert attributes["usage_estimated"] is True and attributes["cost_estimated"] is True
    assert "usage_missing" not in attributes
    assert span["input_tokens"] == estimate_request_tokens(body) > 0
    assert span["output_tokens"] == len(STORY) // 4


def assert_stream_charged(client: agentwatch.Client, spans: list[dict[str, Any]], mode: str) -> None:
    """One span charged once: the provider's usage where AgentWatch asked for it, else the estimate."""
    [span] = spans
    if mode == "always":
        assert (span["input_tokens"], span["output_tokens"]) == (30, 90)
    else:
        assert_estimated(span, {"messages": MESSAGES})
    assert_charged_once(client, span)


# ---- the openai SDK ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "always", "never"])
def test_chat_stream_is_unchanged_and_charged(mode: str, watch: Any, llm_spans: SpansOf,
                                              stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    stub_provider.queue(story())
    without = chat_chunks(oai)
    client = watch(stream_usage=mode)
    stub_provider.queue(story())
    assert chat_chunks(oai) == without
    [span] = llm_spans()
    asked = stub_provider.last.json.get("stream_options")
    if mode == "always":  # asked for usage: the provider's own counts, its answer hidden from the user
        assert asked == {"include_usage": True}
        assert (span["input_tokens"], span["output_tokens"]) == (30, 90)
        assert "usage_estimated" not in span["attributes"] and "cost_estimated" not in span["attributes"]
    else:  # "auto" asks only OpenAI's own API; "never" nobody: estimated from request and streamed text
        assert asked is None
        assert_estimated(span, {"messages": MESSAGES})
    assert_charged_once(client, span)


@pytest.mark.parametrize("mode", ["auto", "always"])
async def test_async_chat_stream_is_unchanged_and_charged(mode: str, watch: Any, llm_spans: SpansOf,
                                                          stub_provider: StubProvider,
                                                          aoai: openai.AsyncOpenAI) -> None:
    async def chunks() -> list[str]:
        stream = await aoai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        return [normal(chunk) async for chunk in stream]

    stub_provider.queue(story())
    without = await chunks()
    client = watch(stream_usage=mode)
    stub_provider.queue(story())
    assert await chunks() == without
    assert_stream_charged(client, llm_spans(), mode)


@pytest.mark.parametrize("mode", ["auto", "always"])
def test_raw_lines_of_a_stream_are_unchanged(mode: str, watch: Any, llm_spans: SpansOf,
                                             stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    """The filter works on the bytes, so a raw reader (``iter_lines`` of the httpx response) sees no
    ``"usage":null`` and no usage chunk either."""

    def lines() -> list[str]:
        with oai.chat.completions.with_streaming_response.create(model="gpt-4o", messages=MESSAGES,
                                                                 stream=True) as response:
            return [_IDS.sub("#", line) for line in response.iter_lines()]

    stub_provider.queue(story())
    without = lines()
    watch(stream_usage=mode)
    stub_provider.queue(story())
    assert lines() == without
    assert not any("usage" in line for line in without)
    [span] = llm_spans()
    assert span["output_tokens"] == (90 if mode == "always" else len(STORY) // 4)


def test_the_stream_helper_and_its_final_completion_are_unchanged(
        watch: Any, llm_spans: SpansOf, stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    def run() -> tuple[list[str], str]:
        with oai.chat.completions.stream(model="gpt-4o", messages=MESSAGES) as stream:
            events = [normal(event.model_dump()) for event in stream]
            return events, normal(stream.get_final_completion())

    stub_provider.queue(story())
    without = run()
    watch(stream_usage="always")
    stub_provider.queue(story())
    assert run() == without
    assert llm_spans()[0]["output_tokens"] == 90


def test_the_users_own_stream_options_win(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                          oai: openai.OpenAI) -> None:
    watch(stream_usage="always")
    stub_provider.queue(story(), story())
    asked = list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True,
                                             stream_options={"include_usage": True}))
    assert asked[-1].usage is not None and asked[-1].choices == []  # theirs: they get the usage chunk
    declined = list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True,
                                                extra_body={"stream_options": {"include_usage": False}}))
    assert stub_provider.last.json["stream_options"] == {"include_usage": False}
    assert all(chunk.choices for chunk in declined)
    first, second = llm_spans()
    assert first["output_tokens"] == 90 and "usage_estimated" not in first["attributes"]
    assert second["attributes"]["usage_estimated"] is True


class _ToStub(httpx.BaseTransport):
    """Sends requests for api.openai.com to the stub instead: tests "auto" mode with no network."""

    def __init__(self, stub: StubProvider) -> None:
        self._stub = stub
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert request.url.host == "api.openai.com"
        request.url = request.url.copy_with(scheme="http", host=self._stub.host, port=self._stub.port)
        return self._inner.handle_request(request)


def test_auto_asks_openais_own_api_and_hides_the_answer(watch: Any, llm_spans: SpansOf,
                                                        stub_provider: StubProvider) -> None:
    oai = openai.OpenAI(api_key="sk-test", max_retries=0, http_client=httpx.Client(transport=_ToStub(stub_provider)))
    stub_provider.queue(story())
    without = chat_chunks(oai)
    assert "stream_options" not in stub_provider.last.json
    client = watch()
    stub_provider.queue(story())
    assert chat_chunks(oai) == without
    assert stub_provider.last.json["stream_options"] == {"include_usage": True}
    assert stub_provider.last.headers["accept-encoding"] == "identity"  # the filter reads plain bytes
    [span] = llm_spans()
    assert (span["provider"], span["input_tokens"], span["output_tokens"]) == ("openai", 30, 90)
    assert_charged_once(client, span)


def test_a_server_that_ignores_the_option_is_still_charged(watch: Any, llm_spans: SpansOf,
                                                           stub_provider: StubProvider,
                                                           oai: openai.OpenAI) -> None:
    watch(stream_usage="always")
    stub_provider.queue(story(omit_usage=True))
    list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    [span] = llm_spans()
    assert_estimated(span, {"messages": MESSAGES})


@pytest.mark.parametrize("mode", ["auto", "always"])
def test_the_budget_trips_on_streams_without_usage(mode: str, watch: Any, llm_spans: SpansOf,
                                                   stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    """$10 per 1M output tokens for gpt-4o: 1,000 tokens streamed cost $0.01, over a $0.005 budget."""
    client = watch(budget_per_hour=0.005, block_on_threshold=True, stream_usage=mode)
    stub_provider.queue(Reply(content="x" * 4000, input_tokens=10, output_tokens=1000))
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "x" * 4000
    sent = stub_provider.count("/chat/completions")
    with pytest.raises(CircuitBreakerException) as blocked:
        list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert blocked.value.current >= 0.01
    assert stub_provider.count("/chat/completions") == sent  # the blocked request was never sent
    charged, refused = llm_spans()
    assert charged["output_tokens"] == 1000 and charged["cost_usd"] >= 0.01
    assert refused["status"] == "blocked"
    assert calls_counted(client) == 1


# ---- the Responses API ------------------------------------------------------------------------------


@pytest.mark.parametrize("omit_usage", [False, True], ids=["usage", "no-usage"])
def test_responses_stream_is_unchanged_and_charged(omit_usage: bool, watch: Any, llm_spans: SpansOf,
                                                   stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    def events() -> list[str]:
        return [normal(event) for event in oai.responses.create(model="gpt-4.1", input="Tell me a story.",
                                                                stream=True)]

    stub_provider.queue(story(omit_usage=omit_usage))
    without = events()
    client = watch()
    stub_provider.queue(story(omit_usage=omit_usage))
    assert events() == without
    assert "stream_options" not in stub_provider.last.json  # Responses streams always carry usage
    [span] = llm_spans()
    if omit_usage:
        assert_estimated(span, {"input": "Tell me a story."})
    else:
        assert (span["input_tokens"], span["output_tokens"]) == (30, 90)
    assert_charged_once(client, span)


async def test_async_responses_stream_without_usage_is_estimated(watch: Any, llm_spans: SpansOf,
                                                                 stub_provider: StubProvider,
                                                                 aoai: openai.AsyncOpenAI) -> None:
    client = watch()
    stub_provider.queue(story(omit_usage=True))
    async with aoai.responses.stream(model="gpt-4.1", input="Tell me a story.") as stream:
        assert (await stream.get_final_response()).output_text == STORY
    [span] = llm_spans()
    assert_estimated(span, {"input": "Tell me a story."})
    assert_charged_once(client, span)


# ---- Anthropic: usage is always in message_start and message_delta --------------------------------


def test_anthropic_stream_is_charged_from_its_own_usage(watch: Any, llm_spans: SpansOf,
                                                        stub_provider: StubProvider) -> None:
    import anthropic

    claude = anthropic.Anthropic(base_url=stub_provider.base_url, api_key="sk-ant-test", max_retries=0)

    def events() -> list[str]:
        stream = claude.messages.create(model="claude-haiku-4-5", max_tokens=200, stream=True,
                                        messages=[{"role": "user", "content": "Tell me a story."}])
        return [normal(event) for event in stream]

    stub_provider.queue(story(cached_tokens=20))
    without = events()
    client = watch()
    stub_provider.queue(story(cached_tokens=20))
    assert events() == without
    [span] = llm_spans()
    # input from message_start (30 + 20 read from cache), output from message_delta
    assert (span["input_tokens"], span["cached_input_tokens"], span["output_tokens"]) == (50, 20, 90)
    assert "usage_estimated" not in span["attributes"]
    assert_charged_once(client, span)


def test_an_anthropic_stream_cut_short_charges_the_output_it_streamed(watch: Any, llm_spans: SpansOf,
                                                                      stub_provider: StubProvider) -> None:
    import anthropic

    claude = anthropic.Anthropic(base_url=stub_provider.base_url, api_key="sk-ant-test", max_retries=0)
    watch()
    # message_start, ping, content_block_start, then 5 text deltas ("Once upon a time a "): 20 bytes
    stub_provider.queue(story(cut_stream_after=8))
    with pytest.raises((httpx.RemoteProtocolError, httpx2.RemoteProtocolError)):  # anthropic 2.x: httpx2
        for _event in claude.messages.create(model="claude-haiku-4-5", max_tokens=200, stream=True,
                                             messages=[{"role": "user", "content": "Tell me a story."}]):
            pass
    [span] = llm_spans()
    assert (span["input_tokens"], span["output_tokens"]) == (30, 5)  # message_start said 1 output so far
    assert span["attributes"]["usage_estimated"] is True and span["status"] == "error"
    assert span["cost_usd"] > 0


# ---- LangChain and LangGraph streaming at a custom base URL ------------------------------------------


def _chat_openai(stub: StubProvider) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model="gpt-4o-mini", base_url=stub.openai_base_url, api_key="sk-test", streaming=True,
                      max_retries=0)


def _message_chunk(chunk: Any) -> str:
    return normal({"content": chunk.content, "usage": chunk.usage_metadata, "meta": chunk.response_metadata,
                   "extra": chunk.additional_kwargs, "tools": chunk.tool_call_chunks})


@pytest.mark.parametrize("mode", ["auto", "always"])
def test_chat_openai_streaming_is_unchanged_and_charged(mode: str, watch: Any, llm_spans: SpansOf,
                                                        stub_provider: StubProvider) -> None:
    llm = _chat_openai(stub_provider)
    prompt = [("system", "You are terse."), ("user", "Tell me a story about a lighthouse keeper.")]

    def run() -> tuple[list[str], str]:
        chunks = [_message_chunk(chunk) for chunk in llm.stream(prompt)]
        return chunks, llm.invoke(prompt).content

    stub_provider.queue(story(), story())
    without = run()
    client = watch(stream_usage=mode)
    stub_provider.queue(story(), story())
    assert run() == without
    assert without[1] == STORY
    spans = llm_spans()
    assert len(spans) == 2 and calls_counted(client) == 2  # one span and one charge per request
    for span in spans:
        if mode == "always":
            assert (span["input_tokens"], span["output_tokens"]) == (30, 90)
            assert "usage_missing" not in span["attributes"]
        else:
            assert_estimated(span, {"messages": MESSAGES})
        assert span["cost_usd"] > 0
    assert client.monitor.snapshot()["spend_last_hour"] == pytest.approx(sum(s["cost_usd"] for s in spans))


@pytest.mark.parametrize("mode", ["auto", "always"])
async def test_chat_openai_astream_is_unchanged_and_charged(mode: str, watch: Any, llm_spans: SpansOf,
                                                            stub_provider: StubProvider) -> None:
    llm = _chat_openai(stub_provider)
    prompt = [("system", "You are terse."), ("user", "Tell me a story about a lighthouse keeper.")]

    async def run() -> list[str]:
        return [_message_chunk(chunk) async for chunk in llm.astream(prompt)]

    stub_provider.queue(story())
    without = await run()
    client = watch(stream_usage=mode)
    stub_provider.queue(story())
    assert await run() == without
    assert_stream_charged(client, llm_spans(), mode)


@pytest.mark.parametrize("mode", ["auto", "always"])
def test_langgraph_message_stream_is_unchanged_and_charged(mode: str, watch: Any, llm_spans: SpansOf,
                                                           stub_provider: StubProvider) -> None:
    from langgraph.graph import START, MessagesState, StateGraph

    llm = _chat_openai(stub_provider)

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_edge(START, "agent")
    graph = builder.compile()

    def run() -> list[tuple[str, str]]:
        streamed = graph.stream({"messages": [("user", "Tell me a story.")]}, stream_mode="messages")
        return [(_message_chunk(chunk), metadata["langgraph_node"]) for chunk, metadata in streamed]

    stub_provider.queue(story())
    without = run()
    client = watch(stream_usage=mode)
    stub_provider.queue(story())
    assert run() == without
    assert "".join(json.loads(chunk)["content"] for chunk, _node in without) == STORY
    [span] = llm_spans()
    if mode == "always":
        assert (span["input_tokens"], span["output_tokens"]) == (30, 90)
    else:
        assert span["attributes"]["usage_estimated"] is True
        assert span["output_tokens"] == len(STORY) // 4
    assert_charged_once(client, span)


# ---- as a user runs it: a fresh interpreter, OPENAI_BASE_URL, the env var for the option ------------

_PROGRAM = '''
import openai, agentwatch
from agentwatch import CircuitBreakerException

agentwatch.init(exporters=[mem := agentwatch.InMemoryExporter()], budget_per_hour=0.005, block_on_threshold=True)
client = openai.OpenAI(api_key="sk-test", max_retries=0)  # base URL from OPENAI_BASE_URL
text = "".join(chunk.choices[0].delta.content or "" for chunk in
               client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                              stream=True))
try:
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True)
    print("NOT BLOCKED")
except CircuitBreakerException as blocked:
    print("blocked", round(blocked.current, 4))
agentwatch.flush()
[span] = [s for s in mem.spans if s["kind"] == "llm" and s["status"] == "ok"]
print(len(text), span["output_tokens"], span["attributes"].get("usage_estimated"))
'''


@pytest.mark.parametrize("stream_usage", ["", "always"])
def test_a_program_at_openai_base_url_is_charged_and_blocked(stream_usage: str,
                                                             stub_provider: StubProvider) -> None:
    import os
    import subprocess
    import sys

    stub_provider.queue(Reply(content="y" * 4000, input_tokens=10, output_tokens=1000))
    env = {**os.environ, "OPENAI_BASE_URL": stub_provider.openai_base_url, "AGENTWATCH_STREAM_USAGE": stream_usage}
    if not stream_usage:
        del env["AGENTWATCH_STREAM_USAGE"]
    done = subprocess.run([sys.executable, "-c", _PROGRAM], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    assert lines[0].startswith("blocked ") and float(lines[0].split()[1]) >= 0.01
    estimated = "None" if stream_usage == "always" else "True"  # asked: the provider's usage, else estimated
    assert lines[1] == f"4000 1000 {estimated}"
    assert stub_provider.count("/chat/completions") == 1  # the blocked call sent nothing


def test_stream_usage_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="stream_usage"):
        agentwatch.init(exporters=[], stream_usage="sometimes")
    with pytest.raises(ValueError, match="stream_usage"):
        agentwatch.init(exporters=[], stream_usage=["my-vllm:8000"])
    assert agentwatch.init(exporters=[], stream_usage=False).config.stream_usage == "never"
    agentwatch.shutdown()
    monkeypatch.setenv("AGENTWATCH_STREAM_USAGE", "http://a:1, https://b/v1")
    assert agentwatch.init(exporters=[]).config.stream_usage == ("http://a:1", "https://b/v1")


def test_a_listed_base_url_is_asked(watch: Any, llm_spans: SpansOf, stub_provider: StubProvider,
                                    oai: openai.OpenAI) -> None:
    stub_provider.queue(story())
    without = chat_chunks(oai)
    watch(stream_usage=[stub_provider.base_url])
    stub_provider.queue(story())
    assert chat_chunks(oai) == without
    assert stub_provider.last.json["stream_options"] == {"include_usage": True}
    [span] = llm_spans()
    assert (span["input_tokens"], span["output_tokens"]) == (30, 90)


def test_an_estimated_stream_is_never_charged_past_its_max_tokens(watch: Any, llm_spans: SpansOf,
                                                                  stub_provider: StubProvider,
                                                                  oai: openai.OpenAI) -> None:
    """The estimate of a stream without usage (4 bytes a token) is capped at the request's own output cap, which a hard
    budget reserved. Found 2026-12-05: 200 tokens of " information" (12 bytes, one token each) were charged as 600,
    $0.006 against a $0.003 hard budget, and the breaker opened for budget_per_hour."""
    client = watch(budget_per_hour=0.003, hard_budget=True, stream_usage="never")
    stub_provider.queue(Reply(content=" information" * 200))
    list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True, max_tokens=200))
    [span] = llm_spans()
    assert span["attributes"]["usage_estimated"] is True and span["output_tokens"] == 200
    state = client.monitor.snapshot()
    assert state["spend_last_hour"] <= 0.003 and state["state"] == "CLOSED"
