"""Reading a response body while it passes through to the user, chunk by chunk, without holding it.

An event stream (SSE, or NDJSON for Ollama) is cut into whole events as bytes arrive. Usage, finish
reason and the end mark are in a stream's first events (Anthropic's input tokens) and its last ones
(everyone's final usage), so only the first few and the last few blocks of events are kept, and they are
looked at once, when the body ends: a chunk costs a split at its last event boundary (none for the usual
chunk of whole events), nothing more. The size of the streamed text (for an estimate when no usage comes)
is measured only if asked (``text_bytes``, at the end): the blocks that drop out of the kept ones wait,
unmeasured, until they add up to ``_MAX_UNMEASURED`` and are then measured together, in one regex pass. A
stream that brings its usage pays no regex per chunk, and one shorter than that none at all. A block too
large to keep is looked at as it passes. A JSON body is collected and parsed once at the end. Text is
collected only when the user asked for it (``capture_messages``), since that means parsing every event as
it passes.
"""

from __future__ import annotations

import functools
import json
import re
import zlib
from typing import Any

from ._usage import Reading, read_into

__all__ = ["BodyReader", "parse_json", "pattern"]

# Substring tests on bytes are written ``data.find(sub) >= 0``, not ``sub in data``: CPython 3.11's ``in`` first tries
# ``sub`` as an integer (a byte value), raising and clearing a TypeError with its formatted message each time, ~1,000
# machine instructions a test more than ``find`` (callgrind); a 5-event chat stream made ~48 such tests.

_MAX_JSON_BODY = 16 * 1024 * 1024  # a larger body is passed on but not read
_MAX_EVENT = 8 * 1024 * 1024
_HEAD_BLOCKS = 4  # blocks of events kept from a stream's start (Anthropic's message_start has input tokens)
_TAIL_BLOCKS = 4  # ... and from its end (usage, finish reason, the end mark: the last three events at most)
_MAX_KEPT_BLOCK = 256 * 1024  # a larger block is looked at at once rather than kept
#: Blocks dropped out of the kept ones, held unmeasured up to this size (a long stream's text is then measured in
#: one pass per this much: the regex's own cost per event, ~0.35 us, without a Python call per block).
_MAX_UNMEASURED = 256 * 1024
_USAGE_MARKS: dict[str, tuple[bytes, ...]] = {
    "ollama": (b'"eval_count"', b'"prompt_eval_count"'),
}
_DEFAULT_USAGE_MARKS = (b'"usage',)  # "usage" and Gemini's "usageMetadata"
_NULL_USAGE = (b'"usage":null', b'"usage": null')
_FINISH_MARKS = (b'"finish_reason":"', b'"finish_reason": "')  # OpenAI chat: not in the usage chunk
#: The finish reason in an OpenAI chat chunk (choice 0's comes first), read without parsing the chunk.
_FINISH_REASON = rb'"finish_reason": ?"([A-Za-z0-9_\-]{1,64})"'


@functools.cache
def pattern(source: bytes) -> re.Pattern[bytes]:
    """``source`` compiled, the first time it is asked for: compiling this module's and ``_stream_usage``'s patterns
    when they are imported was ~1.4 ms of ``init()``, for bodies most programs never have (streams)."""
    return re.compile(source)


#: Per API, the keys whose string values are the model's output in a stream's events (deltas only: an
#: event that repeats the whole text, like Responses' ``output_text.done``, is not counted). Their size
#: estimates the output of a stream that brings no usage. One regex per API (the string body unrolled,
#: which CPython's engine runs fastest), looked for only in blocks that have one of the keys at all.
_TEXT_KEYS: dict[str, tuple[bytes, ...]] = {
    "chat": (b"content", b"arguments", b"reasoning_content", b"reasoning", b"refusal", b"text"),
    "responses": (b"delta",),
    "messages": (b"text", b"partial_json", b"thinking"),
    "gemini": (b"text",),
    "cohere": (b"text",),
    "ollama": (b"content", b"response"),
}
#: Per API, the quoted keys and the source of the regex that finds their values (compiled by ``pattern`` when a body of
#: that API is first read).
_TEXT_PATTERNS: dict[str, tuple[tuple[bytes, ...], bytes]] = {
    api: (tuple(b'"%s"' % key for key in keys), rb'"(?:%s)"\s*:\s*"([^"\\]*(?:\\.[^"\\]*)*)"' % b"|".join(keys))
    for api, keys in _TEXT_KEYS.items()
}

#: The last event of each API's stream: a client may stop reading right after it (openai stops at [DONE]).
_END_MARKS = (b"[DONE]", b'"message_stop"', b'"response.completed"', b'"response.incomplete"',
              b'"response.failed"', b'"message-end"', b'"done":true', b'"done": true', b'"finishReason"')


class _Decoder:
    """gzip/deflate for bodies read below the client's own decoding (httpx response streams)."""

    def __init__(self, encoding: str) -> None:
        wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        self._inflate = zlib.decompressobj(wbits)

    def __call__(self, chunk: bytes) -> bytes:
        return self._inflate.decompress(chunk)


class BodyReader:
    """``feed()`` every chunk as it passes, then ``finish()`` for the reading."""

    __slots__ = ("reading", "unreadable", "saw_end", "token_seen", "_text_bytes", "_unmeasured", "_texts", "_mode",
                 "_separator", "_pending", "_json", "_size", "_head", "_rest", "_rest_size", "_first", "_last",
                 "_finish", "_marks", "_decode", "_plain")

    # Not keyword-only: the taps' reader (``Exchange.reader``) passes them by position (CPython matches keywords by
    # name), on every stream.
    def __init__(self, api: str, content_type: str | None, capture_text: bool = False,
                 content_encoding: str | None = None) -> None:
        self.reading = Reading(api, capture_text)
        #: Why the body could not be read (an encoding we cannot decode, an oversized body), or None.
        self.unreadable: str | None = None
        #: The stream's final event went by: a close after it is a normal end, not an early one.
        self.saw_end = False
        #: An event with output text (or a tool call's arguments) went by: the stream's first token.
        self.token_seen = False
        #: Streamed output text measured so far (JSON-escaped bytes): blocks no longer kept (see text_bytes).
        self._text_bytes = 0
        #: Blocks looked at for usage (at the end) whose text is not measured yet.
        self._unmeasured: list[bytes] = []
        texts = _TEXT_PATTERNS.get(api)
        self._texts: tuple[tuple[bytes, ...], re.Pattern[bytes]] | None = \
            None if texts is None else (texts[0], pattern(texts[1]))
        content_type = (content_type or "").lower()
        mode = "sse" if "event-stream" in content_type else "lines" if "ndjson" in content_type else "json"
        self._mode = mode
        self._separator = b"\n\n" if mode == "sse" else b"\n"
        self._pending = b""
        self._json: list[bytes] = []
        self._size = 0
        #: Whole blocks of events not looked at yet: the stream's first few (``_head``), then the rest, whose last
        #: few (the tail) are kept for their usage and the ones before only until measured (``_measure_dropped``).
        self._head: list[bytes] = []
        self._rest: list[bytes] = []
        self._rest_size = 0
        self._first: bytes | None = None
        self._last: bytes | None = None
        self._finish: bytes | None = None
        self._marks = _USAGE_MARKS.get(api, _DEFAULT_USAGE_MARKS)
        self._decode: _Decoder | None = None
        #: An event stream of plain bytes whose text is not captured: the usual chunk takes ``feed``'s short way.
        plain = mode != "json" and not capture_text
        if content_encoding:  # None or "" is "identity": the usual stream skips the lowercasing and the comparisons
            encoding = content_encoding.lower()
            if encoding in ("gzip", "deflate"):
                self._decode = _Decoder(encoding)
                plain = False
            elif encoding != "identity":
                self.unreadable = f"content-encoding {encoding}"
                plain = False
        self._plain = plain

    def feed(self, chunk: bytes) -> None:
        # The usual chunk of a stream: whole events (nothing pending before it, its last one complete), kept as is.
        if self._plain and not self._pending and chunk.endswith(self._separator) and chunk.find(b"\r") < 0 \
                and self.unreadable is None:
            block = chunk
        else:
            whole = self._whole_events(chunk)
            if whole is None:
                return
            block = whole
            if self.reading.capture_text:
                if not self.token_seen:
                    self._look_for_token(block)
                self._count_text(block)
                self._scan(block)  # every event is read for its text
                return
        if not self.token_seen:  # only until it is found: a stream's first events
            self._look_for_token(block)
        size = len(block)
        if size > _MAX_KEPT_BLOCK:
            self._scan_kept()  # what came before it first: the scan keeps stream order
            self._measure_unmeasured()
            self._count_text(block)
            self._scan(block)
        # A kept rest means a full head (both are emptied together): a long stream's chunk asks that alone, not the
        # head's length, and measures its size once (~700 instructions a chunk).
        elif self._rest or len(self._head) >= _HEAD_BLOCKS:
            self._rest.append(block)
            self._rest_size += size
            if self._rest_size > _MAX_UNMEASURED:
                self._measure_dropped()
        else:
            self._head.append(block)

    def _look_for_token(self, block: bytes) -> None:
        """Whether ``block`` (whole events) has output text: a non-empty string under one of the API's text keys (an
        empty ``content`` opens OpenAI's and Anthropic's streams). An API without text keys: any event counts."""
        texts = self._texts
        if texts is None:
            self.token_seen = True
            return
        keys, pattern = texts
        # Loops, not any() over generators: each generator is made and resumed per item (~3k instructions a stream).
        for key in keys:
            if block.find(key) >= 0:
                break
        else:
            return
        for match in pattern.finditer(block):
            if match.group(1):
                self.token_seen = True
                return

    def _whole_events(self, chunk: bytes) -> bytes | None:
        """The chunk's share of whole events, with what an earlier chunk left pending before it (decoded, CRLF made
        LF), or None when it completes no event (kept pending), the body is JSON (collected) or unreadable."""
        if self.unreadable is not None or not chunk:
            return None
        if self._decode is not None:
            chunk = self._decode(chunk)
        if self._mode == "json":
            self._json.append(chunk)
            self._size += len(chunk)
            if self._size > _MAX_JSON_BODY:
                self._json.clear()
                self.unreadable = "body too large"
            return None
        data = self._pending + chunk if self._pending else chunk
        if data.find(b"\r") >= 0:
            data = data.replace(b"\r\n", b"\n")
        separator = self._separator
        end = data.rfind(separator)
        if end < 0:
            self._pending = data
            if len(data) > _MAX_EVENT:
                self._pending, self.unreadable = b"", "event too large"
            return None
        end += len(separator)
        if end == len(data):  # the usual chunk: whole events
            self._pending = b""
            return data
        self._pending = data[end:]
        return data[:end]

    def _measure_dropped(self) -> None:
        """``_rest`` outgrew ``_MAX_UNMEASURED``: all but its last few blocks (the tail) drop out, measured together."""
        rest = self._rest
        dropped = rest[:-_TAIL_BLOCKS]
        if dropped:
            del rest[:-_TAIL_BLOCKS]
            self._count_text(b"".join(dropped))
        self._rest_size = sum(map(len, rest))

    @property
    def ended(self) -> bool:
        """After ``finish()``: the stream's end went by, so a close is no early one. Its end mark, or the last event
        that carries anything: Anthropic's ``message_delta`` with its ``stop_reason`` (and final usage; LiteLLM closes
        the body there without reading the empty ``message_stop``), a chat stream's usage chunk after its finish
        reason (the ``[DONE]`` after it carries nothing)."""
        if self.saw_end:
            return True
        reading = self.reading
        return reading.finish_reason is not None and (reading.api == "messages" or reading.has_usage)

    @property
    def text_bytes(self) -> int:
        """Bytes of streamed output text seen (JSON-escaped), for an estimate when no usage comes. The
        blocks still kept are measured only when this is asked (a stream with usage never asks)."""
        # Blocks end at event boundaries: joined, they hold the same events, measured in one pass.
        return self._text_bytes + self._text_size(b"".join((*self._unmeasured, *self._head, *self._rest)))

    def _measure_unmeasured(self) -> None:
        if self._unmeasured:
            self._count_text(b"".join(self._unmeasured))
            self._unmeasured.clear()

    def _count_text(self, block: bytes) -> None:
        self._text_bytes += self._text_size(block)

    def _text_size(self, block: bytes) -> int:
        if self._texts is None:
            return 0
        keys, pattern = self._texts
        for key in keys:
            if block.find(key) >= 0:
                break
        else:
            return 0
        size = sum(map(len, pattern.findall(block)))
        if size and block.find(b"\\u") >= 0:  # an escaped character is one, not six
            size = max(0, size - 3 * block.count(b"\\u"))
        return size

    def _scan_kept(self) -> None:
        """Look at the kept blocks, in stream order."""
        head, rest = self._head, self._rest
        if head or rest:
            tail = rest[-_TAIL_BLOCKS:]
            self._unmeasured += rest[:-_TAIL_BLOCKS]  # dropped out of the kept ones: measured only, if asked
            blocks = (*head, *tail)
            if not self.saw_end:  # a stream's final event is in its last block (or the one before)
                self._check_end(b"".join(blocks[-2:]))
            kept = b"".join(blocks)
            self._unmeasured += blocks
            head.clear()
            rest.clear()
            self._rest_size = 0
            self._scan(kept, check_end=False)

    def _check_end(self, block: bytes) -> None:
        for mark in _END_MARKS:
            if block.find(mark) >= 0:
                self.saw_end = True
                return

    def _scan(self, block: bytes, *, check_end: bool = True) -> None:
        """Note what ``block`` (whole events) holds: the end mark, and the usage and finish events to read."""
        if check_end and not self.saw_end:
            self._check_end(block)
        separator = self._separator
        if self.reading.capture_text:
            for event in block.split(separator):
                self._read_event(event)
            return
        marks = self._marks
        chat = self.reading.api == "chat"
        null_usage, spaced_null_usage = _NULL_USAGE  # locals: asked of every event
        finish_mark, spaced_finish_mark = _FINISH_MARKS
        for event in block.split(separator):
            if not event:
                continue
            for mark in marks:
                if event.find(mark) >= 0:
                    usage = event.find(null_usage) < 0 and event.find(spaced_null_usage) < 0
                    break
            else:
                usage = False
            if usage:
                if self._first is None:
                    self._first = event
                else:
                    self._last = event
            elif chat and (event.find(finish_mark) >= 0 or event.find(spaced_finish_mark) >= 0):
                self._finish = event

    def _read_event(self, event: bytes) -> None:
        payload = _event_data(event) if self._mode == "sse" else event.strip()
        if not payload or payload == b"[DONE]":
            return
        try:
            # Decoded here: json.loads of bytes first works out their encoding (UTF-8 all but always).
            text: str | bytes = payload.decode()
        except UnicodeDecodeError:
            text = payload
        try:
            read_into(self.reading, json.loads(text))
        except ValueError:
            pass  # a malformed event: the client will complain about it, we only lose its usage

    def _read_whole_json(self, body: bytes) -> None:
        self._read_event(body)
        if self._texts is not None and not self.reading.has_usage:  # the output's size, for an estimate
            self._count_text(body)

    def finish(self) -> Reading:
        """Parse what was kept. Safe to call once the body ended, was cut, or was abandoned."""
        if self.unreadable is None:
            if self._mode == "json":
                body = b"".join(self._json)
                self._json.clear()
                if body:
                    self._read_whole_json(body)
            else:
                self._scan_kept()
                if self._pending:  # a last event without the blank line after it
                    self._scan(self._pending)
                    self._pending = b""
                finish = self._finish
                if finish is not None and self._first is not None:
                    # The usage event that follows has the model: the chunk is needed for its finish reason only.
                    found = pattern(_FINISH_REASON).search(finish)
                    if found is not None:
                        self.reading.finish_reason = found.group(1).decode()
                        finish = None
                for event in (finish, self._first, self._last):
                    if event is not None:
                        self._read_event(event)
                self._finish = self._first = self._last = None
        return self.reading

    def read_whole(self, body: bytes) -> Reading:
        """Read a body the client already holds in full (no copy kept)."""
        if self._mode == "json" and self.unreadable is None:
            if len(body) <= _MAX_JSON_BODY:
                self._read_whole_json(body)
            else:
                self.unreadable = "body too large"
            return self.reading
        self.feed(body)
        return self.finish()


def _event_data(event: bytes) -> bytes:
    """The ``data:`` payload of one SSE event (multi-line data joined by newlines)."""
    if event.startswith(b"data:") and event.find(b"\ndata:") < 0:
        return event[5:].strip()
    lines = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines).strip()


def parse_json(body: bytes | bytearray | str) -> Any:
    """A request body as JSON, or None."""
    try:
        return json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None
