"""The SSE filter that hides what asking for usage added, and the estimator for calls without usage.

The filter is fed the stub's real wire bytes with ``include_usage`` and must give exactly the bytes
without it, however the stream is cut into chunks.
"""

from __future__ import annotations

import json
import random
import re

import httpx
import pytest

from agentwatch._estimate import estimate_request_tokens, estimate_text_bytes, estimate_tokens
from agentwatch.plugins.http._body import BodyReader
from agentwatch.plugins.http._stream_usage import UsageChunkFilter, _events, wants_usage
from tests.stubs.provider_server import Reply, _chat_completion_stream, _encode_events


def wire(include_usage: bool, *, compact: bool = False, crlf: bool = False) -> bytes:
    events = _chat_completion_stream(Reply(content="a b, \"c\" d\n", tool_calls=[{"name": "f", "arguments": {}}]),
                                     "gpt-4o", 1, include_usage)
    if compact:
        events = [(name, data if isinstance(data, str) else json.loads(json.dumps(data))) for name, data in events]
        blocks = [f"data: {data if isinstance(data, str) else json.dumps(data, separators=(',', ':'))}\n\n".encode()
                  for _name, data in events]
    else:
        blocks = list(_encode_events(events))
    body = b"".join(blocks)
    return body.replace(b"\n", b"\r\n") if crlf else body


def filtered(body: bytes, cuts: list[int]) -> bytes:
    hide = UsageChunkFilter()
    out = []
    start = 0
    for cut in [*cuts, len(body)]:
        out.append(hide(body[start:cut]))
        start = cut
    out.append(hide.flush())
    return b"".join(out)


@pytest.mark.parametrize("compact", [False, True], ids=["spaced", "compact"])
@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_the_filter_gives_the_stream_without_usage_however_it_is_cut(compact: bool, crlf: bool) -> None:
    asked, plain = wire(True, compact=compact, crlf=crlf), wire(False, compact=compact, crlf=crlf)
    assert b'"usage"' in asked and b'"usage"' not in plain
    assert filtered(asked, []) == plain
    for cut in range(1, len(asked)):  # every two-piece cut
        assert filtered(asked, [cut]) == plain, cut
    assert filtered(asked, list(range(1, len(asked)))) == plain  # one byte at a time
    assert filtered(plain, list(range(7, len(plain), 7))) == plain  # nothing to hide: unchanged


def test_the_filter_passes_events_on_whole_and_keeps_other_usage_shapes() -> None:
    hide = UsageChunkFilter()
    assert hide(b"data: {\"choices\": [{\"delta\": {}}]") == b""  # half an event waits
    assert hide(b"}\n\ndata: [DONE]\n\n") == b"data: {\"choices\": [{\"delta\": {}}]}\n\ndata: [DONE]\n\n"
    # usage on a chunk that has choices (some servers do this) is the user's content: kept
    event = b'data: {"choices": [{"delta": {"content": "x"}}], "usage": {"prompt_tokens": 1}}\n\n'
    assert UsageChunkFilter()(event) == event
    # Azure's first chunk has empty choices but no usage: kept
    azure = b'data: {"choices": [], "prompt_filter_results": []}\n\n'
    assert UsageChunkFilter()(azure) == azure
    # usage as the first key
    assert UsageChunkFilter()(b'data: {"usage":null,"choices":[]}\n\n') == b'data: {"choices":[]}\n\n'
    # an error body (no events) comes out whole at the end
    hide = UsageChunkFilter()
    error = b'{"error": {"message": "bad", "usage": 1}}'
    assert hide(error) + hide.flush() == error


def test_a_block_is_cut_into_events_where_a_regex_of_blank_lines_would_cut_it() -> None:
    """``_events`` finds the cuts from the line ends; ``re.split`` at the points after each blank line is the rule."""
    after_blank_line = re.compile(rb"(?<=\n\n)|(?<=\r\n\r\n)")
    rng = random.Random(20)
    pieces = [b"\n", b"\r", b"\r\n", b"\n\n", b"\r\n\r\n", b"data: {}", b"x"]
    blocks = [b"", b"\n\n\n", b"\r\n\r\n\n\n", wire(True), wire(True, crlf=True)]
    blocks += [b"".join(rng.choice(pieces) for _ in range(rng.randrange(12))) for _ in range(5000)]
    for block in blocks:
        assert _events(block) == after_blank_line.split(block), block


def test_only_streamed_requests_the_user_left_undecided_are_asked() -> None:
    body = {"model": "m", "messages": [], "stream": True}
    openai_api, local = httpx.URL("https://api.openai.com/v1/"), httpx.URL("http://127.0.0.1:8000/v1/")
    assert wants_usage("auto", openai_api, body, None)
    assert wants_usage("auto", httpx.URL("https://API.OPENAI.COM/v1"), body, None)
    assert not wants_usage("auto", local, body, None)
    assert wants_usage("always", local, body, None)
    assert not wants_usage("never", openai_api, body, None)
    assert not wants_usage("always", local, {**body, "stream": False}, None)
    assert not wants_usage("always", local, {**body, "stream_options": None}, None)
    assert not wants_usage("always", local, body, {"stream_options": {"include_usage": False}})
    # a list of base URLs: those (prefix by path segment) and OpenAI's API
    listed = ("http://127.0.0.1:8000", "https://gw.example/llm/")
    assert wants_usage(listed, local, body, None) and wants_usage(listed, openai_api, body, None)
    assert wants_usage(listed, httpx.URL("https://gw.example:443/llm/v1"), body, None)
    assert not wants_usage(listed, httpx.URL("http://127.0.0.1:8001/v1"), body, None)
    assert not wants_usage(listed, httpx.URL("https://gw.example/llmx/v1"), body, None)


def test_streamed_output_is_measured_for_an_estimate() -> None:
    reader = BodyReader("chat", "text/event-stream")
    body = wire(False)
    for start in range(0, len(body), 5):
        reader.feed(body[start:start + 5])
    reader.finish()
    text = 'a b, "c" d\n'  # 11 characters, sent JSON-escaped
    arguments = "{}"
    assert reader.text_bytes == len(json.dumps(text)) - 2 + len(arguments)
    escaped = BodyReader("chat", "text/event-stream")
    escaped.feed(b'data: {"choices": [{"delta": {"content": "\\u00e9t\\u00e9"}}]}\n\n')  # "ete" with accents
    assert escaped.text_bytes == 2 * 3 + 1  # an escaped character counts as a 3-byte UTF-8 one


@pytest.mark.parametrize("cut", ["per event", "mid event"])
@pytest.mark.parametrize("usage", [True, False])
def test_a_long_stream_is_read_and_measured_whole(cut: str, usage: bool) -> None:
    """3,000 events (~0.7 MB: the dropped blocks are measured in several batches), each chunk a whole event (the
    reader's short way) or cut mid-event: the usage at the end is read, and the text measured is all of it."""
    texts = [f"word {i} " + "x" * (i % 97) for i in range(3000)]
    events = [{"id": "c", "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": text}}]} for text in texts]
    events.append({"id": "c", "model": "gpt-4o", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        events.append({"id": "c", "model": "gpt-4o", "choices": [],
                       "usage": {"prompt_tokens": 7, "completion_tokens": 3000, "total_tokens": 3007}})
    blocks = [b"data: " + json.dumps(event).encode() + b"\n\n" for event in events] + [b"data: [DONE]\n\n"]
    reader = BodyReader("chat", "text/event-stream")
    if cut == "per event":
        for block in blocks:
            reader.feed(block)
    else:
        body = b"".join(blocks)
        for start in range(0, len(body), 1000):
            reader.feed(body[start:start + 1000])
    reading = reader.finish()
    assert reader.saw_end and reading.finish_reason == "stop"
    assert (reading.input_tokens, reading.output_tokens) == ((7, 3000) if usage else (None, None))
    assert reader.text_bytes == sum(map(len, texts))


def test_the_estimator() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 25) == 25
    assert estimate_tokens("abcde") == 2  # rounded up
    assert estimate_tokens("日本語") == 3  # 9 bytes of UTF-8: non-ASCII text counts more per character
    assert estimate_text_bytes(401) == 101
    chat = {"model": "gpt-4o", "temperature": 0.2, "max_tokens": 100000, "stream": True,
            "messages": [{"role": "user", "content": "abcd" * 100}]}
    # 4 per message + the role + 100 for the text + 3 for the reply's priming; settings count nothing
    assert estimate_request_tokens(chat) == 4 + 1 + 100 + 3
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 1_000_000}}
    with_image = {"messages": [{"role": "user", "content": [{"type": "text", "text": "abcd"}, image]}]}
    assert estimate_request_tokens(with_image) < 1100  # an image is a fixed amount, not its base64 size
    assert estimate_request_tokens({"input": "abcd" * 10, "instructions": "abcd"}) == 10 + 1 + 3
    assert estimate_request_tokens({"contents": [{"role": "user", "parts": [{"text": "abcd" * 4}]}]}) == 4 + 1 + 4 + 3
    assert estimate_request_tokens(None) == estimate_request_tokens(b"garbage") == 0


def test_a_body_with_no_event_boundary_is_not_held_back_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentwatch.plugins.http import _stream_usage

    monkeypatch.setattr(_stream_usage, "_MAX_EVENT", 10)
    hide = UsageChunkFilter()
    assert hide(b"abcdef") == b""
    assert hide(b"ghijkl") == b"abcdefghijkl"  # over the limit: passed on, and filtering stops
    assert hide(b'x,"usage":null\n\n') == b'x,"usage":null\n\n'
    assert hide.flush() == b""
