"""The stub provider speaks each wire format well enough for the real SDK clients to parse it."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
import pytest

from tests.stubs.provider_server import Reply, StubProvider

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def oai(stub_provider: StubProvider) -> openai.OpenAI:
    return openai.OpenAI(base_url=stub_provider.openai_base_url, api_key="sk-test", max_retries=0)


@pytest.fixture
def claude(stub_provider: StubProvider) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stub_provider.base_url, api_key="sk-ant-test", max_retries=0)


def test_chat_completion_echoes_model_and_reports_usage(stub_provider: StubProvider,
                                                        oai: openai.OpenAI) -> None:
    stub_provider.queue(Reply(content="hello", input_tokens=12, output_tokens=3, cached_tokens=4))
    reply = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == "hello"
    assert reply.model == "gpt-4o-mini"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (12, 3)
    assert reply.usage.prompt_tokens_details.cached_tokens == 4
    recorded = stub_provider.last
    assert (recorded.method, recorded.path) == ("POST", "/v1/chat/completions")
    assert recorded.json["messages"] == MESSAGES
    assert recorded.headers["authorization"] == "Bearer sk-test"


def test_chat_stream_sends_usage_only_when_asked(stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    stub_provider.queue(Reply(content="one two three", input_tokens=7, output_tokens=3))
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "one two three"
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"

    stub_provider.queue(Reply(content="one two", input_tokens=7, output_tokens=2))
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 2)


def test_tool_calls_plain_and_streamed(stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    call = {"name": "lookup", "arguments": {"city": "Oslo"}}
    stub_provider.queue(Reply(content="", tool_calls=[call]), Reply(content="", tool_calls=[call]))
    message = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices[0].message
    assert message.tool_calls[0].function.name == "lookup"
    assert message.tool_calls[0].function.arguments == '{"city": "Oslo"}'
    deltas = [c.choices[0].delta for c in oai.chat.completions.create(model="gpt-4o", messages=MESSAGES,
                                                                       stream=True)]
    arguments = "".join(d.tool_calls[0].function.arguments for d in deltas if d.tool_calls)
    assert arguments == '{"city": "Oslo"}'


def test_responses_plain_and_streamed(stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    stub_provider.queue(Reply(content="fine", input_tokens=9, output_tokens=1, cached_tokens=2))
    response = oai.responses.create(model="gpt-4.1", input="hi")
    assert response.output_text == "fine"
    assert (response.usage.input_tokens, response.usage.input_tokens_details.cached_tokens) == (9, 2)

    stub_provider.queue(Reply(content="a b", output_tokens=2))
    events = list(oai.responses.create(model="gpt-4.1", input="hi", stream=True))
    assert events[0].type == "response.created"
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == ["a ", "b"]
    assert events[-1].type == "response.completed" and events[-1].response.usage.output_tokens == 2

    with oai.responses.stream(model="gpt-4.1", input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == "ok"


def test_embeddings_in_both_encodings(stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    stub_provider.queue(Reply(input_tokens=6), Reply(input_tokens=6))
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    default = oai.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    floats = oai.embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
    assert stub_provider.requests[0].json["encoding_format"] == "base64"
    assert len(default.data) == 2 and default.usage.prompt_tokens == 6
    assert default.data[1].embedding == pytest.approx(floats.data[1].embedding)


def test_anthropic_message_and_stream_with_cache_usage(stub_provider: StubProvider,
                                                       claude: anthropic.Anthropic) -> None:
    stub_provider.queue(Reply(content="hey", input_tokens=20, output_tokens=4, cached_tokens=8,
                              cache_creation_tokens=3))
    message = claude.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=MESSAGES)
    assert message.content[0].text == "hey"
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens,
            usage.cache_creation_input_tokens) == (20, 4, 8, 3)
    assert stub_provider.last.headers["authorization"] == "Bearer sk-ant-test"  # 0.x sent x-api-key

    stub_provider.queue(Reply(content="x y z", input_tokens=5, output_tokens=3, cached_tokens=1))
    with claude.messages.stream(model="claude-haiku-4-5", max_tokens=16, messages=MESSAGES) as stream:
        assert list(stream.text_stream) == ["x ", "y ", "z"]
        final = stream.get_final_message()
    usage = final.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (5, 3, 1)

    stub_provider.queue(Reply(content="", tool_calls=[{"name": "f", "arguments": {"n": 1}}]))
    with claude.messages.stream(model="claude-haiku-4-5", max_tokens=16, messages=MESSAGES) as stream:
        block = stream.get_final_message().content[0]
    assert (block.type, block.name, block.input) == ("tool_use", "f", {"n": 1})


def test_error_replies_in_each_providers_format(stub_provider: StubProvider, oai: openai.OpenAI,
                                                 claude: anthropic.Anthropic) -> None:
    stub_provider.queue(Reply(status=429), Reply(status=529),
                        Reply(status=400, error_body={"error": "custom"}))
    with pytest.raises(openai.RateLimitError) as limited:
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert limited.value.body["type"] == "rate_limit_error"
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        claude.messages.create(model="claude-haiku-4-5", max_tokens=1, messages=MESSAGES)
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"
    custom = httpx.post(stub_provider.openai_base_url + "/chat/completions", json={})
    assert (custom.status_code, custom.json()) == (400, {"error": "custom"})


def test_hostile_replies(stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    stub_provider.queue(Reply(raw_body=b'{"id": "chatcmpl-1", "choi'))
    with pytest.raises(Exception) as broken:  # the SDK's own error for a body that is not JSON
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert not isinstance(broken.value, openai.APIStatusError)

    stub_provider.queue(Reply(content="a b c d e", cut_stream_after=3))
    received = []
    with pytest.raises(httpx.RemoteProtocolError):
        for chunk in oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):
            received.append(chunk)
    assert len(received) == 3

    stub_provider.queue(Reply(delay=0.2))
    started = time.perf_counter()
    oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert time.perf_counter() - started >= 0.2


async def test_async_clients(stub_provider: StubProvider) -> None:
    claude = anthropic.AsyncAnthropic(base_url=stub_provider.base_url, api_key="k", max_retries=0)
    events = [e.type async for e in await claude.messages.create(model="claude-haiku-4-5", max_tokens=8,
                                                                  messages=MESSAGES, stream=True)]
    assert events[0] == "message_start" and events[-1] == "message_stop" and "message_delta" in events
    oai = openai.AsyncOpenAI(base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)
    reply = await oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert reply.choices[0].message.content == "ok"


def test_queue_order_default_reply_count_and_clear(stub_provider: StubProvider, oai: openai.OpenAI) -> None:
    stub_provider.queue({"content": "first"}, Reply(content="second", model="served-model"))
    texts = [oai.chat.completions.create(model="asked", messages=MESSAGES) for _ in range(3)]
    assert [t.choices[0].message.content for t in texts] == ["first", "second", "ok"]
    assert [t.model for t in texts] == ["asked", "served-model", "asked"]
    assert stub_provider.count("/chat/completions") == 3 and stub_provider.count("/messages") == 0
    stub_provider.queue(Reply(content="dropped"))
    stub_provider.clear()
    assert stub_provider.requests == []
    assert oai.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == "ok"


def test_gemini_generate_content(stub_provider: StubProvider) -> None:
    stub_provider.queue(Reply(content="g", input_tokens=11, output_tokens=2))
    url = f"{stub_provider.base_url}/v1beta/models/gemini-2.0-flash:generateContent"
    body = httpx.post(url, json={}).json()
    assert body["usageMetadata"]["promptTokenCount"] == 11
    assert body["modelVersion"] == "gemini-2.0-flash"
