"""``time_to_first_token_ms`` is the time to the first output token, not to the first byte of the stream. Found
2026-12-05: Responses (``response.created``, ``response.in_progress``) and Anthropic (``message_start``, ``ping``)
streams send events before any text, and TTFT read 2-5 ms where the first text came after about a second."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import openai
import pytest

from tests.plugins.providers.conftest import SpansOf
from tests.stubs.provider_server import Reply, StubProvider

DELAY = 0.15  # between the stub's stream events
MESSAGES = [{"role": "user", "content": "hi"}]


def _openai_responses(stub: StubProvider) -> float:
    client = openai.OpenAI(base_url=stub.openai_base_url, api_key="k", max_retries=0)
    start = time.perf_counter()
    first = 0.0
    for event in client.responses.create(model="gpt-4o-mini", input="hi", stream=True):
        if event.type == "response.output_text.delta" and not first:
            first = time.perf_counter() - start
    return first


def _openai_chat(stub: StubProvider) -> float:
    client = openai.OpenAI(base_url=stub.openai_base_url, api_key="k", max_retries=0)
    start = time.perf_counter()
    first = 0.0
    for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
        if chunk.choices and chunk.choices[0].delta.content and not first:
            first = time.perf_counter() - start
    return first


def _anthropic(stub: StubProvider) -> float:
    client = anthropic.Anthropic(base_url=stub.base_url, api_key="k", max_retries=0)
    start = time.perf_counter()
    first = 0.0
    for event in client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES, stream=True):
        if event.type == "content_block_delta" and not first:
            first = time.perf_counter() - start
    return first


# The stub sends its stream's events DELAY apart; the first with text is the 5th of Responses' stream (after created,
# in_progress, output_item.added, content_part.added), the 4th of Anthropic's (message_start, ping,
# content_block_start with "text": "") and the 2nd of a chat stream (the role chunk, "content": "").
@pytest.mark.parametrize(("stream", "events_before"), [(_openai_responses, 4), (_openai_chat, 1), (_anthropic, 3)],
                         ids=["responses", "chat", "messages"])
def test_the_first_token_is_the_first_text(stream: Any, events_before: int, watch: Any, llm_spans: SpansOf,
                                           stub_provider: StubProvider) -> None:
    watch()
    stub_provider.queue(Reply(content="Hello there", chunk_delay=DELAY))
    seen_ms = stream(stub_provider) * 1000  # the SDK may hand an event over later than it arrived, never earlier
    [span] = llm_spans()
    recorded_ms = span["attributes"]["time_to_first_token_ms"]
    # Not before the first text could have arrived (the old reading was the stream's first byte, a few ms), and not
    # after the program saw it. No upper bound of its own: on a loaded machine (CI at load 8) the stub's sleeps ran
    # long and an exact window failed a correct reading.
    assert recorded_ms >= (events_before - 0.5) * DELAY * 1000
    assert recorded_ms <= seen_ms + 5


def test_a_stream_that_fails_before_any_text_has_no_first_token(watch: Any, llm_spans: SpansOf,
                                                                stub_provider: StubProvider) -> None:
    watch()
    stub_provider.queue(Reply(status=500))
    client = openai.OpenAI(base_url=stub_provider.openai_base_url, api_key="k", max_retries=0)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    [span] = llm_spans()
    assert span["status"] == "error" and "time_to_first_token_ms" not in span["attributes"]
