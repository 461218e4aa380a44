"""Reading a response body while it passes through to the user, chunk by chunk, without holding it.

An event stream (SSE, or NDJSON for Ollama) is split into events as bytes arrive; only the few events
that carry usage are kept (the first and the last: Anthropic sends input tokens first and output tokens
last) and parsed when the body ends. A JSON body is collected and parsed once at the end. Text is
collected only when the user asked for it (``capture_messages``), since that means parsing every event.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from ._usage import Reading, read_into

__all__ = ["BodyReader", "parse_json"]

_MAX_JSON_BODY = 16 * 1024 * 1024  # a larger body is passed on but not read
_MAX_EVENT = 8 * 1024 * 1024
_USAGE_MARKS: dict[str, tuple[bytes, ...]] = {
    "ollama": (b'"eval_count"', b'"prompt_eval_count"'),
}
_DEFAULT_USAGE_MARKS = (b'"usage',)  # "usage" and Gemini's "usageMetadata"
_NULL_USAGE = (b'"usage":null', b'"usage": null')
_FINISH_MARKS = (b'"finish_reason":"', b'"finish_reason": "')  # OpenAI chat: not in the usage chunk
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

    __slots__ = ("reading", "unreadable", "saw_end", "_mode", "_pending", "_json", "_size", "_first", "_last",
                 "_finish", "_marks", "_decode")

    def __init__(self, api: str, content_type: str | None, *, capture_text: bool = False,
                 content_encoding: str | None = None) -> None:
        self.reading = Reading(api, capture_text)
        #: Why the body could not be read (an encoding we cannot decode, an oversized body), or None.
        self.unreadable: str | None = None
        #: The stream's final event went by: a close after it is a normal end, not an early one.
        self.saw_end = False
        content_type = (content_type or "").lower()
        self._mode = ("sse" if "event-stream" in content_type else "lines" if "ndjson" in content_type
                      else "json")
        self._pending = b""
        self._json: list[bytes] = []
        self._size = 0
        self._first: bytes | None = None
        self._last: bytes | None = None
        self._finish: bytes | None = None
        self._marks = _USAGE_MARKS.get(api, _DEFAULT_USAGE_MARKS)
        self._decode: _Decoder | None = None
        encoding = (content_encoding or "identity").lower()
        if encoding in ("gzip", "deflate"):
            self._decode = _Decoder(encoding)
        elif encoding != "identity":
            self.unreadable = f"content-encoding {encoding}"

    def feed(self, chunk: bytes) -> None:
        if self.unreadable is not None or not chunk:
            return
        if self._decode is not None:
            chunk = self._decode(chunk)
        if self._mode == "json":
            self._json.append(chunk)
            self._size += len(chunk)
            if self._size > _MAX_JSON_BODY:
                self._json.clear()
                self.unreadable = "body too large"
            return
        data = self._pending + chunk if self._pending else chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        separator = b"\n\n" if self._mode == "sse" else b"\n"
        end = data.rfind(separator)
        if end < 0:
            self._pending = data
            if len(data) > _MAX_EVENT:
                self._pending, self.unreadable = b"", "event too large"
            return
        self._pending = data[end + len(separator):]
        self._scan(data[:end], separator)

    def _scan(self, block: bytes, separator: bytes) -> None:
        if not self.saw_end and any(mark in block for mark in _END_MARKS):
            self.saw_end = True
        capture = self.reading.capture_text
        marked = capture or any(mark in block for mark in self._marks)
        finishing = (not capture and self.reading.api == "chat"
                     and any(mark in block for mark in _FINISH_MARKS))
        if not (marked or finishing):
            return  # the common case: a content chunk, nothing to keep
        for event in block.split(separator):
            if capture:
                self._read_event(event)
                continue
            if any(mark in event for mark in self._marks) and not any(null in event for null in _NULL_USAGE):
                if self._first is None:
                    self._first = event
                else:
                    self._last = event
            elif self.reading.api == "chat" and any(mark in event for mark in _FINISH_MARKS):
                self._finish = event

    def _read_event(self, event: bytes) -> None:
        payload = _event_data(event) if self._mode == "sse" else event.strip()
        if not payload or payload == b"[DONE]":
            return
        try:
            read_into(self.reading, json.loads(payload))
        except ValueError:
            pass  # a malformed event: the client will complain about it, we only lose its usage

    def finish(self) -> Reading:
        """Parse what was kept. Safe to call once the body ended, was cut, or was abandoned."""
        if self.unreadable is None:
            if self._mode == "json":
                body = b"".join(self._json)
                self._json.clear()
                if body:
                    self._read_event(body)
            else:
                if self._pending:
                    self._scan(self._pending, b"\n\n" if self._mode == "sse" else b"\n")
                    self._pending = b""
                for event in (self._finish, self._first, self._last):
                    if event is not None:
                        self._read_event(event)
        return self.reading

    def read_whole(self, body: bytes) -> Reading:
        """Read a body the client already holds in full (no copy kept)."""
        if self._mode == "json" and self.unreadable is None:
            if len(body) <= _MAX_JSON_BODY:
                self._read_event(body)
            else:
                self.unreadable = "body too large"
            return self.reading
        self.feed(body)
        return self.finish()


def _event_data(event: bytes) -> bytes:
    """The ``data:`` payload of one SSE event (multi-line data joined by newlines)."""
    if event.startswith(b"data:") and b"\ndata:" not in event:
        return event[5:].strip()
    lines = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines).strip()


def parse_json(body: bytes | bytearray | str) -> Any:
    """A request body as JSON, or None."""
    try:
        return json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None
