"""A stub LLM provider on 127.0.0.1 that speaks the OpenAI, Anthropic and Gemini wire formats.

Tests point real clients (``openai``, ``anthropic``, ``httpx``, ``requests``, ``aiohttp``, framework
LLM classes) at it instead of a paid API. Replies are scripted with ``queue(Reply(...))`` and consumed
in order; with nothing queued every request gets ``Reply()``. Standard library only.

Routes are matched on the end of the path, so provider prefixes work too (Azure's
``/openai/deployments/<name>/chat/completions``, Groq's ``/openai/v1/...``, a LiteLLM proxy root):

- ``.../chat/completions``  OpenAI chat completions, JSON or SSE (``stream: true``); the usage chunk is
  sent only when ``stream_options.include_usage`` is true, like the real API
- ``.../responses``         OpenAI Responses API, JSON or SSE (``response.created`` ... ``.completed``)
- ``.../embeddings``        OpenAI embeddings (float or base64, as the client asks)
- ``.../messages``          Anthropic messages, JSON or SSE (``message_start`` ... ``message_stop``)
- ``...:generateContent`` / ``...:streamGenerateContent``  Gemini (``usageMetadata``)

SDK clients retry 408/409/429/5xx answers on their own: build them with ``max_retries=0`` when a test
queues an error reply, or queue one reply per attempt.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["StubProvider", "Reply", "RecordedRequest"]

_EMBEDDING_DIMENSIONS = 8


@dataclass
class Reply:
    """One scripted answer. Token counts use each provider's own convention on the wire."""

    content: str = "ok"
    input_tokens: int = 10
    output_tokens: int = 5
    #: OpenAI ``prompt_tokens_details.cached_tokens`` (part of input) / Anthropic ``cache_read_input_tokens``
    #: (on top of input) / Gemini ``cachedContentTokenCount``.
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    #: Anthropic: the part of ``cache_creation_tokens`` written to the 1-hour cache (``usage.cache_creation``
    #: splits the writes by time to live; the rest are 5-minute writes).
    cache_creation_1h_tokens: int = 0
    #: Web searches the provider's search tool ran: Anthropic ``usage.server_tool_use.web_search_requests`` (sent
    #: only when not 0, in the message and in a stream's ``message_delta``, as the API does); the Responses API
    #: has no count, but one ``web_search_call`` output item per search, before the answer.
    web_search_requests: int = 0
    model: str | None = None  # None: echo the request's model
    tool_calls: list[dict[str, Any]] | None = None  # [{"name": ..., "arguments": {...}}]
    status: int = 200
    error_body: dict[str, Any] | None = None  # None with an error status: the provider's usual error shape
    delay: float = 0.0  # seconds before the response starts
    chunk_delay: float = 0.0  # seconds between stream events
    cut_stream_after: int | None = None  # close the connection after this many stream events (no end marker)
    raw_body: bytes | None = None  # send exactly these bytes as the body (truncated JSON, garbage, ...)
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers (retry-after, ...)
    #: Report no usage at all (a server that counts nothing): Responses' ``usage`` is null, and a chat
    #: stream sends no usage chunk even when ``stream_options.include_usage`` asks for one.
    omit_usage: bool = False


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    json: Any  # the parsed body, or None if it was not JSON


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Pooled keep-alive connections would make server_close() wait for the clients to hang up.
    block_on_close = False
    stub: StubProvider

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        # A client hanging up (pool closed, early break) is normal here; anything else is a stub bug.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class StubProvider:
    """``with StubProvider() as server:`` serves on ``server.base_url`` until the block ends."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._connections: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.stub = self
        self._thread: threading.Thread | None = None
        host, port = self._server.server_address[:2]
        self.host = str(host)
        self.port = int(port)
        self.base_url = f"http://{self.host}:{self.port}"
        self.openai_base_url = self.base_url + "/v1"

    # ---- life cycle ---------------------------------------------------------------------------

    def start(self) -> StubProvider:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="stub-provider", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()

    def __enter__(self) -> StubProvider:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- scripting and inspection -------------------------------------------------------------

    def queue(self, *replies: Reply | dict[str, Any]) -> None:
        """Script the next answers, in order. A dict is the keyword form: ``{"content": "hi"}``."""
        with self._lock:
            for reply in replies:
                self._replies.append(reply if isinstance(reply, Reply) else Reply(**reply))

    def clear(self) -> None:
        """Forget recorded requests and queued replies."""
        with self._lock:
            self.requests.clear()
            self._replies.clear()

    def count(self, path_suffix: str = "") -> int:
        """How many requests arrived whose path ends with ``path_suffix``."""
        with self._lock:
            return sum(1 for request in self.requests if request.path.endswith(path_suffix))

    async def until_received(self, count: int = 1, timeout: float = 30.0) -> None:
        """Wait, in an event loop, until ``count`` requests have arrived; fail the test after ``timeout`` seconds
        (a request that never came would otherwise hang it)."""
        deadline = time.monotonic() + timeout
        while self.count() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the stub provider received {self.count()} of {count} requests in {timeout} s")
            await asyncio.sleep(0.01)

    @property
    def last(self) -> RecordedRequest:
        with self._lock:
            return self.requests[-1]

    def _take(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            return self._replies.popleft() if self._replies else Reply()

    def _next_id(self) -> int:
        return next(self._ids)

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            (self._connections.add if open_ else self._connections.discard)(connection)


# -------------------------------------------------------------------------------------------------
# Wire formats: each returns the JSON body, or the list of SSE events (event name or None, data)

_Event = tuple[str | None, Any]


def _pieces(text: str) -> list[str]:
    """Split text the way a model streams it: word by word, spaces kept."""
    return re.findall(r"\S+\s*|\s+", text) or [""]


def _openai_tool_calls(reply: Reply, number: int) -> list[dict[str, Any]]:
    return [{"id": f"call_stub_{number}_{index}", "type": "function",
             "function": {"name": call["name"], "arguments": json.dumps(call.get("arguments", {}))}}
            for index, call in enumerate(reply.tool_calls or [])]


def _openai_usage(reply: Reply) -> dict[str, Any]:
    return {"prompt_tokens": reply.input_tokens, "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def _chat_completion(reply: Reply, model: str, number: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    finish_reason = "stop"
    if reply.tool_calls:
        message["tool_calls"] = _openai_tool_calls(reply, number)
        message["content"] = reply.content or None
        finish_reason = "tool_calls"
    return {"id": f"chatcmpl-stub{number}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "system_fingerprint": "fp_stub",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": _openai_usage(reply)}


def _chat_completion_stream(reply: Reply, model: str, number: int, include_usage: bool) -> list[_Event]:
    base = {"id": f"chatcmpl-stub{number}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "system_fingerprint": "fp_stub"}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> _Event:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        body = {**base, "choices": [choice]}
        if include_usage:
            body["usage"] = None
        return None, body

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    if reply.content:
        events += [chunk({"content": piece}) for piece in _pieces(reply.content)]
    for index, call in enumerate(_openai_tool_calls(reply, number)):
        opening = {"name": call["function"]["name"], "arguments": ""}
        events.append(chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                             "function": opening}]}))
        events.append(chunk({"tool_calls": [{"index": index,
                                             "function": {"arguments": call["function"]["arguments"]}}]}))
    events.append(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
    if include_usage:
        events.append((None, {**base, "choices": [], "usage": _openai_usage(reply)}))
    events.append((None, "[DONE]"))
    return events


def _response_usage(reply: Reply) -> dict[str, Any]:
    return {"input_tokens": reply.input_tokens,
            "input_tokens_details": {"cached_tokens": reply.cached_tokens},
            "output_tokens": reply.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": reply.input_tokens + reply.output_tokens}


def _response_output(reply: Reply, number: int) -> list[dict[str, Any]]:
    output: list[dict[str, Any]] = [
        {"type": "web_search_call", "id": f"ws_stub{number}_{index}", "status": "completed",
         "action": {"type": "search", "query": "stub"}} for index in range(reply.web_search_requests)]
    if reply.content or not reply.tool_calls:
        text = {"type": "output_text", "text": reply.content, "annotations": [], "logprobs": []}
        output.append({"type": "message", "id": f"msg_stub{number}", "status": "completed",
                       "role": "assistant", "content": [text]})
    for index, call in enumerate(reply.tool_calls or []):
        output.append({"type": "function_call", "id": f"fc_stub{number}_{index}",
                       "call_id": f"call_stub_{number}_{index}", "name": call["name"],
                       "arguments": json.dumps(call.get("arguments", {})), "status": "completed"})
    return output


def _compacted(reply: Reply, request: dict[str, Any], number: int) -> dict[str, Any]:
    """``responses.compact()``: the request's user messages, then one compaction item (no model field)."""
    given = request.get("input")
    users = [item for item in given if isinstance(item, dict) and item.get("role") == "user"] \
        if isinstance(given, list) else []
    return {"id": f"cmp_stub{number}", "object": "response.compaction", "created_at": int(time.time()),
            "output": [*users, {"type": "compaction", "id": f"cmp_item_stub{number}",
                                "encrypted_content": "c3R1Yg=="}],
            "usage": _response_usage(reply)}


def _response(reply: Reply, model: str, number: int, *, status: str = "completed") -> dict[str, Any]:
    done = status == "completed"
    return {"id": f"resp_stub{number}", "object": "response", "created_at": int(time.time()),
            "status": status, "model": model, "output": _response_output(reply, number) if done else [],
            "usage": _response_usage(reply) if done and not reply.omit_usage else None, "error": None,
            "incomplete_details": None,
            "instructions": None, "metadata": {}, "parallel_tool_calls": True, "temperature": 1.0,
            "top_p": 1.0, "tool_choice": "auto", "tools": [], "text": {"format": {"type": "text"}}}


def _response_stream(reply: Reply, model: str, number: int) -> list[_Event]:
    sequence = itertools.count()
    events: list[_Event] = []

    def add(kind: str, **data: Any) -> None:
        events.append((kind, {"type": kind, "sequence_number": next(sequence), **data}))

    add("response.created", response=_response(reply, model, number, status="in_progress"))
    add("response.in_progress", response=_response(reply, model, number, status="in_progress"))
    for index, item in enumerate(_response_output(reply, number)):
        if item["type"] == "message":
            add("response.output_item.added", output_index=index,
                item={**item, "status": "in_progress", "content": []})
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            add("response.content_part.added", item_id=item["id"], output_index=index, content_index=0,
                part=part)
            for piece in _pieces(reply.content):
                add("response.output_text.delta", item_id=item["id"], output_index=index, content_index=0,
                    delta=piece, logprobs=[])
            add("response.output_text.done", item_id=item["id"], output_index=index, content_index=0,
                text=reply.content, logprobs=[])
            add("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
                part=item["content"][0])
        elif item["type"] == "web_search_call":
            add("response.output_item.added", output_index=index, item={**item, "status": "in_progress"})
            add("response.web_search_call.completed", item_id=item["id"], output_index=index)
        else:
            add("response.output_item.added", output_index=index,
                item={**item, "status": "in_progress", "arguments": ""})
            add("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                delta=item["arguments"])
            add("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                arguments=item["arguments"], name=item["name"])
        add("response.output_item.done", output_index=index, item=item)
    add("response.completed", response=_response(reply, model, number))
    return events


def _embeddings(reply: Reply, model: str, request: dict[str, Any]) -> dict[str, Any]:
    inputs = request.get("input")
    count = len(inputs) if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else 1
    as_base64 = request.get("encoding_format") == "base64"
    data = []
    for index in range(count):
        vector = [round(0.1 * (index + 1) + 0.01 * d, 4) for d in range(_EMBEDDING_DIMENSIONS)]
        encoded: Any = (base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if as_base64
                        else vector)
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": reply.input_tokens, "total_tokens": reply.input_tokens}}


def _anthropic_content(reply: Reply, number: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.content or not reply.tool_calls:
        blocks.append({"type": "text", "text": reply.content})
    for index, call in enumerate(reply.tool_calls or []):
        blocks.append({"type": "tool_use", "id": f"toolu_stub{number}_{index}", "name": call["name"],
                       "input": call.get("arguments", {})})
    return blocks


def _anthropic_usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": reply.input_tokens, "output_tokens": output_tokens,
        "cache_read_input_tokens": reply.cached_tokens, "cache_creation_input_tokens": reply.cache_creation_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": reply.cache_creation_tokens - reply.cache_creation_1h_tokens,
                           "ephemeral_1h_input_tokens": reply.cache_creation_1h_tokens}}
    if reply.web_search_requests:
        usage["server_tool_use"] = {"web_search_requests": reply.web_search_requests}
    return usage


def _message(reply: Reply, model: str, number: int) -> dict[str, Any]:
    return {"id": f"msg_stub{number}", "type": "message", "role": "assistant", "model": model,
            "content": _anthropic_content(reply, number),
            "stop_reason": "tool_use" if reply.tool_calls else "end_turn", "stop_sequence": None,
            "usage": _anthropic_usage(reply, reply.output_tokens)}


def _message_stream(reply: Reply, model: str, number: int) -> list[_Event]:
    opening_usage = _anthropic_usage(reply, 1)
    opening_usage.pop("server_tool_use", None)  # counted by message_delta, once the searches ran
    start = {**_message(reply, model, number), "content": [], "stop_reason": None, "usage": opening_usage}
    events: list[_Event] = [("message_start", {"type": "message_start", "message": start}),
                            ("ping", {"type": "ping"})]
    for index, block in enumerate(_anthropic_content(reply, number)):
        opening: dict[str, Any]
        deltas: list[dict[str, Any]]
        if block["type"] == "text":
            opening, deltas = {"type": "text", "text": ""}, [
                {"type": "text_delta", "text": piece} for piece in _pieces(block["text"])]
        else:
            opening = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block["input"])}]
        events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": opening}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                   for delta in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    final_usage: dict[str, Any] = {"output_tokens": reply.output_tokens}
    if reply.web_search_requests:  # the API's message_delta repeats the server tools' counts
        final_usage["server_tool_use"] = {"web_search_requests": reply.web_search_requests}
    events.append(("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": "tool_use" if reply.tool_calls else "end_turn",
                                               "stop_sequence": None},
                                     "usage": final_usage}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _gemini(reply: Reply, model: str, text: str | None = None, usage: bool = True) -> dict[str, Any]:
    parts = [{"text": reply.content if text is None else text}]
    body: dict[str, Any] = {"candidates": [{"content": {"parts": parts, "role": "model"},
                                            "finishReason": "STOP", "index": 0}],
                            "modelVersion": model}
    if usage:
        body["usageMetadata"] = {"promptTokenCount": reply.input_tokens,
                                 "candidatesTokenCount": reply.output_tokens,
                                 "cachedContentTokenCount": reply.cached_tokens,
                                 "totalTokenCount": reply.input_tokens + reply.output_tokens}
    return body


def _gemini_stream(reply: Reply, model: str) -> list[_Event]:
    # Gemini repeats usageMetadata on every chunk; the last one has the final counts.
    return [(None, _gemini(reply, model, text=piece)) for piece in _pieces(reply.content)]


def _error_body(flavor: str, status: int) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
            404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
    message = f"stub provider error {status}"
    if flavor == "anthropic":
        return {"type": "error", "error": {"type": kind, "message": message}}
    if flavor == "gemini":
        return {"error": {"code": status, "message": message, "status": kind.upper()}}
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


# -------------------------------------------------------------------------------------------------
# HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs stall each reply ~40 ms.
    disable_nagle_algorithm = True
    server: _Server
    timeout = 30  # an idle keep-alive connection ends its thread after this

    def setup(self) -> None:
        super().setup()
        self.server.stub._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.stub._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        stub = self.server.stub
        url = urlsplit(self.path)
        body = self._read_body()
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        request = RecordedRequest(self.command, url.path, parse_qs(url.query),
                                  {name.lower(): value for name, value in self.headers.items()}, body, parsed)
        reply = stub._take(request)
        number = stub._next_id()
        if reply.delay:
            time.sleep(reply.delay)
        payload: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        path = url.path
        gemini = re.search(r"/models/([^/:]+):(generateContent|streamGenerateContent)$", path)
        flavor = "anthropic" if path.endswith("/messages") else "gemini" if gemini else "openai"
        requested = gemini.group(1) if gemini else payload.get("model")
        model = reply.model or str(requested or "stub-model")
        headers = {"x-request-id": f"req_stub{number}", "request-id": f"req_stub{number}", **reply.headers}

        if reply.status >= 400:
            error = json.dumps(reply.error_body or _error_body(flavor, reply.status)).encode()
            return self._send(reply.status, reply.raw_body if reply.raw_body is not None else error, headers)
        if reply.raw_body is not None:
            return self._send(reply.status, reply.raw_body, headers)

        streaming = bool(payload.get("stream")) or bool(gemini and gemini.group(2) == "streamGenerateContent")
        if path.endswith("/chat/completions"):
            if streaming:
                include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
                include_usage = include_usage and not reply.omit_usage
                chunks = _chat_completion_stream(reply, model, number, include_usage)
                return self._stream(reply, chunks, headers)
            return self._json(reply.status, _chat_completion(reply, model, number), headers)
        if path.endswith("/responses/compact"):
            return self._json(reply.status, _compacted(reply, payload, number), headers)
        if path.endswith("/responses"):
            if streaming:
                return self._stream(reply, _response_stream(reply, model, number), headers)
            return self._json(reply.status, _response(reply, model, number), headers)
        if path.endswith("/embeddings"):
            return self._json(reply.status, _embeddings(reply, model, payload), headers)
        if path.endswith("/messages"):
            if streaming:
                return self._stream(reply, _message_stream(reply, model, number), headers)
            return self._json(reply.status, _message(reply, model, number), headers)
        if gemini is not None:
            if streaming:
                return self._stream(reply, _gemini_stream(reply, model), headers)
            return self._json(reply.status, _gemini(reply, model), headers)
        return self._json(404, _error_body(flavor, 404), headers)

    def _send(self, status: int, body: bytes, headers: dict[str, str],
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _json(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        self._send(status, json.dumps(body).encode(), headers)

    def _stream(self, reply: Reply, events: list[_Event], headers: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            for index, encoded in enumerate(_encode_events(events)):
                if reply.cut_stream_after is not None and index >= reply.cut_stream_after:
                    # Hang up mid-body: the client sees an incomplete chunked read, like a dropped connection.
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if index and reply.chunk_delay:
                    time.sleep(reply.chunk_delay)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(encoded), encoded))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # The client stopped reading (an early break or close()): nothing more to send.
            self.close_connection = True


def _encode_events(events: list[_Event]) -> Iterator[bytes]:
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data)
        prefix = f"event: {name}\n" if name else ""
        yield f"{prefix}data: {text}\n\n".encode()
