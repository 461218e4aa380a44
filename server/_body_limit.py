"""A bound on every request body, whatever route reads it (pure ASGI).

FastAPI reads a JSON route's body whole before validating it: a 300 MB chunked body sent to ``/api/control`` was
held, then answered 422 (+600 MB of RSS, kept), and a declared ``Content-Length`` of 100 GB was waited for. Here a
body declared larger than its route's bound is refused with 413 before any of it is read, and a body sent without
a length (chunked) is counted as the route reads it: at the first byte over the bound the client gets 413 and the
route sees the client disconnect (what it was reading is dropped). The connection is closed after a 413.

The bound is 1 MiB (``MAX_JSON_BODY_BYTES``) for every route but those that read and cap their bodies themselves:
``/api/ingest`` and ``/v1/traces`` (``AGENTWATCH_MAX_BODY_BYTES``) and ``/api/reports/verify`` (a PDF); for them
this bound is a backstop a little above the route's own cap, so the route still gives its own answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimitMiddleware", "MAX_JSON_BODY_BYTES"]

#: What any other route (the control, alert, limit and cron APIs: a few KB of JSON) may be sent.
MAX_JSON_BODY_BYTES = 1024 * 1024
#: How far above its own cap a self-capping route's bound is: more than a read from the socket brings at once.
_BACKSTOP_MARGIN = 1024 * 1024


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, own_caps: Mapping[str, int], default: int = MAX_JSON_BODY_BYTES) -> None:
        self.app = app
        self._default = default
        self._limits = {path: cap + _BACKSTOP_MARGIN for path, cap in own_caps.items()}
        # What a client is told it may send: the route's own cap, not the backstop's margin above it.
        self._caps = dict(own_caps)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limits.get(scope["path"], self._default)
        cap = self._caps.get(scope["path"], limit)
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.strip().isdigit() and int(value) > limit:
                    # Not one byte of it is read; a client that sends it anyway finds the connection closed.
                    await _refuse(send, cap)
                    return
                break
        received = 0
        started = refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await _refuse(send, cap)
                    # The route stops reading as for a client gone; what it read so far is dropped with it.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused and not started:
                return  # the 413 is the answer; the route's own (to a "disconnected" client) goes nowhere
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused or started:
                raise
            # The route failed on the disconnect it was told of (ClientDisconnect): answered already.


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
