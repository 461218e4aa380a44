"""Live dashboard: ``/api/live``, a server-sent event stream that says when stored data changed.

One watcher per app asks the store for its change token (SQLite: ``PRAGMA data_version``, which also sees the
writes of other worker processes) at most twice a second, however many pages are open; each stream sends
``change`` when the token moved and a comment as a keep-alive. A stream ends after ``STREAM_SECONDS`` (the page
reconnects at once) and when the server stops, so an open page never holds up a shutdown for long. It is an
``/api`` GET like any other: the API key (the dashboard reads the stream with ``fetch``, which can send the
header) and the Host check apply.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ._state import app_state
from ._store import Store

__all__ = ["router", "LiveWatch", "stop_live_streams", "STREAM_SECONDS"]

router = APIRouter(tags=["live"])

STREAM_SECONDS: Final = 25.0
_KEEPALIVE_SECONDS: Final = 10.0
_TOKEN_TTL: Final = 0.5


class LiveWatch:
    """The store's change token, shared by every stream of one app; ``stopping`` ends the streams."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._token: str | None = None
        self._at = 0.0
        self.stopping = threading.Event()

    def token(self) -> str:
        with self._lock:
            now = time.monotonic()
            if self._token is None or now - self._at >= _TOKEN_TTL:
                self._token = self._store.change_token()
                self._at = now
            return self._token


def _watch(request: Request) -> LiveWatch:
    state: Any = request.app.state
    watch = getattr(state, "live_watch", None)
    if watch is None:
        watch = state.live_watch = LiveWatch(app_state(request).store)
    return watch  # type: ignore[no-any-return]


def stop_live_streams(app: Any) -> None:
    """End the open streams of ``app`` (called when the server is asked to stop, before it drains connections)."""
    watch = getattr(app.state, "live_watch", None)
    if watch is not None:
        watch.stopping.set()


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


async def _stream(watch: LiveWatch, interval: float) -> AsyncIterator[str]:
    last = await run_in_threadpool(watch.token)
    yield "retry: 1000\n" + _event("hello", {"token": last})
    started = quiet_since = time.monotonic()
    while not watch.stopping.is_set() and time.monotonic() - started < STREAM_SECONDS:
        await asyncio.sleep(interval)
        token = await run_in_threadpool(watch.token)
        if token != last:
            last = token
            quiet_since = time.monotonic()
            yield _event("change", {"token": token, "time_unix_nano": time.time_ns()})
        elif time.monotonic() - quiet_since >= _KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
    yield _event("end", {"reconnect": not watch.stopping.is_set()})


# Not in the OpenAPI schema: a schema-driven client (or fuzzer) would hold each call open for the whole stream.
@router.get("/api/live", response_class=StreamingResponse, include_in_schema=False)
async def live(request: Request,
               interval: Annotated[float, Query(ge=0.2, le=30.0, description="seconds between checks")] = 1.0
               ) -> StreamingResponse:
    """Server-sent events: ``change`` whenever stored data changed (spans, breakers, alerts, rules, crons). The
    stream ends after about 25 s with ``end``; reconnect to go on."""
    watch = _watch(request)
    return StreamingResponse(_stream(watch, interval), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
