"""Span builders shared by the collector tests (a module of its own: every test folder has a conftest)."""

from __future__ import annotations

import gzip
import json
import os
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

SpanFactory = Callable[..., dict[str, Any]]

_counter = [0]


def _hex(width: int) -> str:
    _counter[0] += 1
    return f"{os.getpid():08x}{_counter[0]:024x}{time.perf_counter_ns():016x}"[-width:]


def new_trace_id() -> str:
    return _hex(32)


def new_span_id() -> str:
    return _hex(16)


def span_factory() -> SpanFactory:
    """A span in the SDK's wire format (``Span.to_dict()``); keyword arguments override fields."""

    def factory(**fields: Any) -> dict[str, Any]:
        start = fields.pop("start", None) or time.time_ns() - 5_000_000_000
        duration_ms = fields.pop("duration_ms", 100.0)
        span: dict[str, Any] = {
            "trace_id": new_trace_id(), "span_id": new_span_id(), "parent_span_id": None, "name": "openai.chat",
            "kind": "llm", "status": "ok", "start_time_unix_nano": start,
            "end_time_unix_nano": start + int(duration_ms * 1_000_000), "agent_id": "researcher",
            "agent_name": "Researcher", "agent_role": "Agent", "model": "gpt-4o-mini", "provider": "openai",
            "input_tokens": 100, "output_tokens": 20, "cached_input_tokens": 0, "cost_usd": 0.001, "attributes": {},
        }
        span.update(fields)
        return span

    return factory


def make_trace(make_span: SpanFactory, *, calls: int = 3, start: int | None = None, agent: str = "researcher",
               model: str = "gpt-4o-mini", status: str = "ok", name: str = "research task",
               **call_fields: Any) -> list[dict[str, Any]]:
    """A root agent span and ``calls`` LLM calls under it."""
    start = start or time.time_ns() - 10_000_000_000
    trace_id = new_trace_id()
    root = make_span(trace_id=trace_id, name=name, kind="agent", model=None, provider=None, input_tokens=0,
                     output_tokens=0, cost_usd=0.0, start=start, duration_ms=calls * 1000.0 + 10, agent_id=agent,
                     agent_name=agent.title())
    spans = [root]
    for index in range(calls):
        spans.append(make_span(trace_id=trace_id, parent_span_id=root["span_id"], start=start + index * 1_000_000_000,
                               agent_id=agent, agent_name=agent.title(), model=model,
                               status=status if index == calls - 1 else "ok", **call_fields))
    return spans


def gzip_json(value: Any) -> bytes:
    return gzip.compress(json.dumps(value).encode("utf-8"))


class WebhookHandler(BaseHTTPRequestHandler):
    """Records each JSON body POSTed to it; subclass with your own ``received`` list."""

    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def run_together(processes: int, work: Callable[[int], None]) -> list[int]:
    """Exit codes of ``processes`` forked children, each running ``work(index)``; all are released at once when
    every one is ready (as worker processes starting together). A child's error is printed to stderr."""
    ready, go = os.pipe(), os.pipe()
    children = []
    try:
        for index in range(processes):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child reports through its exit status
                code = 1
                try:
                    os.write(ready[1], b"x")
                    os.read(go[0], 1)
                    work(index)
                    code = 0
                except BaseException:
                    traceback.print_exc()
                finally:
                    os._exit(code)
            children.append(pid)
        for _ in children:
            os.read(ready[0], 1)
        os.write(go[1], b"x" * len(children))
        return [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    finally:
        for end in (*ready, *go):
            os.close(end)
