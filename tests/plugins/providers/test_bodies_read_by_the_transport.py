"""Streams whose body the transport hands over already read: ``httpx.MockTransport`` (and respx, vcrpy's replays)
build a response from bytes, and httpx reads such a body when the response is made, so it never iterates
``response.stream``. Found 2026-12-05: AgentWatch's stream wrapper was never read, so the usage chunk AgentWatch asks
for reached the user (``chunk.choices[0]`` raised ``IndexError``) and the call was ended only when Python collected
it, from an estimate, flagged ``stream_incomplete``."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from tests.plugins.providers.conftest import SpansOf, calls_counted
from tests.stubs.provider_server import Reply, _chat_completion_stream, _encode_events, _message_stream

REPLY = Reply(content="Hello there", input_tokens=1000, output_tokens=100)
MESSAGES = [{"role": "user", "content": "hi"}]


def fake_provider(request: Any) -> Any:
    """The provider's stream as one ``bytes`` body; OpenAI's usage chunk only when asked for, as OpenAI does."""
    body = json.loads(request.content)
    if request.url.path.endswith("/messages"):
        events = _message_stream(REPLY, body["model"], 1)
    else:
        events = _chat_completion_stream(REPLY, body["model"], 1,
                                         bool((body.get("stream_options") or {}).get("include_usage")))
    http = httpx2 if isinstance(request, httpx2.Request) else httpx  # the anthropic SDK is on httpx2
    return http.Response(200, content=b"".join(_encode_events(events)), headers={"content-type": "text/event-stream"})


@pytest.fixture
def no_collection() -> Iterator[None]:
    """The call must be ended when its stream is read, not when Python collects the stream."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def openai_texts() -> list[str]:
    client = openai.OpenAI(api_key="k", max_retries=0,
                           http_client=httpx.Client(transport=httpx.MockTransport(fake_provider)))
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    return [chunk.choices[0].delta.content or "" for chunk in stream]  # as OpenAI's docs read a stream


async def async_openai_texts() -> list[str]:
    client = openai.AsyncOpenAI(api_key="k", max_retries=0,
                                http_client=httpx.AsyncClient(transport=httpx.MockTransport(fake_provider)))
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    return [chunk.choices[0].delta.content or "" async for chunk in stream]


def anthropic_texts() -> list[str]:
    client = anthropic.Anthropic(api_key="k", max_retries=0,
                                 http_client=httpx2.Client(transport=httpx2.MockTransport(fake_provider)))
    with client.messages.stream(model="claude-3-5-haiku-latest", max_tokens=100, messages=MESSAGES) as stream:
        return list(stream.text_stream)


@pytest.mark.parametrize("run", [openai_texts, lambda: asyncio.run(async_openai_texts()), anthropic_texts],
                         ids=["openai", "openai-async", "anthropic"])
def test_a_stream_read_by_the_transport_is_unchanged_and_charged_when_read(run: Any, watch: Any, llm_spans: SpansOf,
                                                                          no_collection: None) -> None:
    without = run()
    client = watch(stream_usage="always")
    assert run() == without
    [span] = llm_spans()
    assert (span["input_tokens"], span["output_tokens"], span["status"]) == (1000, 100, "ok")
    assert "stream_incomplete" not in span["attributes"] and "usage_estimated" not in span["attributes"]
    assert calls_counted(client) == 1
    assert client.monitor.snapshot()["spend_last_hour"] == pytest.approx(span["cost_usd"])
