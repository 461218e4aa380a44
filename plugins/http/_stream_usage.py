"""Asking an OpenAI-compatible chat stream for its usage, and hiding that we asked.

OpenAI (and vLLM, LiteLLM, most compatible servers) send no usage in a streamed chat completion unless the
request has ``stream_options: {"include_usage": true}``. Then they add ``"usage":null`` to every chunk and
one last chunk with empty ``choices`` and the usage, which user code reading ``chunk.choices[0]`` trips on.
When AgentWatch asked (the user did not), ``UsageChunkFilter`` takes both out of the response bytes before
anyone reads them, so the SDK's ``Stream``, ``iter_lines`` and ``iter_bytes`` get exactly what the server
would have sent without the option; the transport tap reads the usage before the filter.

Which servers are asked is ``init(stream_usage=...)``: "auto" (default) only OpenAI's own API, where the
option is part of the API; "always" every server (some gateways refuse unknown fields with a 400: opt in
for servers known to accept it, e.g. vLLM, LiteLLM, Ollama); a list of base URLs: those and OpenAI's;
"never". A stream that brings no usage is charged from an estimate (``agentwatch.instrumentation.estimate_tokens``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from agentwatch.instrumentation import logger

from ._body import pattern
from ._endpoints import normalise_base

__all__ = ["UsageChunkFilter", "wants_usage", "asked_usage_body", "OPENAI_HOSTS"]

# Substring tests on bytes by ``find`` (per chunk): see ``_body`` for why not ``in``.

#: Hosts whose chat streams accept ``stream_options`` for sure (``stream_usage="auto"``).
OPENAI_HOSTS = frozenset({"api.openai.com"})

#: ``"usage":null`` as OpenAI adds it to every chunk once asked (with or without spaces, last key or not).
_NULL_USAGE = rb',\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,\s*'  # compiled on first use
_NULL_USAGE_SPELLINGS = (b',"usage":null', b', "usage": null')
_MAX_EVENT = 8 * 1024 * 1024
_EMPTY_CHOICES = rb'"choices"\s*:\s*\[\s*\]'


def wants_usage(mode: str | tuple[str, ...], base_url: Any, body: Any, extra_json: Any) -> bool:
    """Should this streamed chat request (to a client at ``base_url``, an httpx URL) be asked for usage?
    Never when the user decided either way (``stream_options`` in the body or in ``extra_body``)."""
    if mode == "never" or body.__class__ is not dict or body.get("stream") is not True:
        return False
    if "stream_options" in body or (isinstance(extra_json, Mapping) and "stream_options" in extra_json):
        return False
    if mode == "always" or base_url.host.lower() in OPENAI_HOSTS:
        return True
    return mode.__class__ is tuple and _listed(str(base_url), _bases(mode))


@functools.lru_cache(maxsize=8)
def _bases(urls: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(normalise_base(url) for url in urls)


def _listed(url: str, bases: tuple[str, ...]) -> bool:
    url = normalise_base(url)
    return any(url == base or url.startswith(base + "/") for base in bases)


def asked_usage_body(body: dict[str, Any]) -> dict[str, Any]:
    """The request body with the option added (a new dict: the caller's is left as it was)."""
    return {**body, "stream_options": {"include_usage": True}}


class UsageChunkFilter:
    """Bytes of an SSE body in, the same bytes out minus what ``include_usage`` added.

    Events are passed on whole: the bytes after the last event boundary wait for the next chunk (servers
    flush one event or more at a time, so normally nothing waits)."""

    __slots__ = ("_pending", "_broken")

    def __init__(self) -> None:
        self._pending = b""
        self._broken = False

    def __call__(self, chunk: bytes) -> bytes:
        # One frame per chunk: the filtering is written inside the guard, not in a method it calls.
        try:
            if self._broken:
                return chunk
            data = self._pending + chunk if self._pending else chunk
            if data.endswith(b"\n\n") or data.endswith(b"\r\n\r\n"):  # the usual chunk: whole events
                self._pending = b""
            else:
                end = _last_boundary(data)
                if end < 0:
                    if len(data) > _MAX_EVENT:  # not an event stream after all: stop holding bytes back
                        self._pending, self._broken = b"", True
                        return data
                    self._pending = data
                    return b""
                self._pending = data[end:]
                data = data[:end]
            return _clean(data) if data.find(b'"usage"') >= 0 else data
        except Exception:  # never break the user's stream: pass the rest through as it comes
            logger.exception("agentwatch: could not filter a response stream (ignored)")
            data, self._pending = self._pending + chunk, b""
            self._broken = True
            return data

    def flush(self) -> bytes:
        """What is left when the body ends (a last event without the blank line after it)."""
        data, self._pending = self._pending, b""
        try:
            return _clean(data) if data.find(b'"usage"') >= 0 and not self._broken else data
        except Exception:
            logger.exception("agentwatch: could not filter a response stream (ignored)")
            return data


def _last_boundary(data: bytes) -> int:
    """The end of the last complete event (after its blank line), or -1."""
    lf = data.rfind(b"\n\n")
    crlf = data.rfind(b"\r\n\r\n")
    if lf < 0 and crlf < 0:
        return -1
    return max(lf + 2 if lf >= 0 else -1, crlf + 4 if crlf >= 0 else -1)


def _clean(block: bytes) -> bytes:
    # The usual spellings by plain replace (every chunk has one); a regex only for the rest.
    if block.find(_NULL_USAGE_SPELLINGS[0]) >= 0:
        block = block.replace(_NULL_USAGE_SPELLINGS[0], b"")
    elif block.find(_NULL_USAGE_SPELLINGS[1]) >= 0:
        block = block.replace(_NULL_USAGE_SPELLINGS[1], b"")
    if block.find(b'"usage"') < 0:
        return block
    if block.find(b"null") >= 0:  # the regex tries every byte: only where it can match (not the usage chunk itself)
        block = pattern(_NULL_USAGE).sub(b"", block)
    if block.find(b'"usage"') < 0 or pattern(_EMPTY_CHOICES).search(block) is None:
        return block
    kept = [event for event in _events(block) if event and not _usage_only(event)]
    return b"".join(kept)


def _events(block: bytes) -> list[bytes]:
    """``block`` cut after each blank line (``\\n\\n`` or ``\\r\\n\\r\\n``): its events, each with the blank line
    that ends it, and what follows the last. The pieces ``re.split(rb"(?<=\\n\\n)|(?<=\\r\\n\\r\\n)", block)``
    gives, found from the line ends alone: that regex tries its two lookbehinds at every byte (~100k machine
    instructions for one usage chunk), where every cut is right after a ``\\n``."""
    pieces: list[bytes] = []
    start = 0
    newline = block.find(b"\n")
    while newline >= 0:
        end = newline + 1
        if (newline and block[newline - 1] == 10) or (  # 10: ord("\n")
                newline >= 3 and block[newline - 3:end] == b"\r\n\r\n"):
            pieces.append(block[start:end])
            start = end
        newline = block.find(b"\n", end)
    pieces.append(block[start:])
    return pieces


def _usage_only(event: bytes) -> bool:
    """The final chunk ``include_usage`` adds: empty ``choices`` and a usage object."""
    if event.find(b'"usage"') < 0 or pattern(_EMPTY_CHOICES).search(event) is None:
        return False
    lines = [line[5:].strip() for line in event.splitlines() if line.startswith(b"data:")]
    try:
        # Decoded here as json.loads would decode UTF-8 bytes, without its Python-level detection of the encoding.
        data = json.loads(b"\n".join(lines).decode("utf-8", "surrogatepass"))
    except ValueError:  # UnicodeDecodeError too, as from json.loads
        return False
    return isinstance(data, dict) and data.get("choices") == [] and isinstance(data.get("usage"), dict)
