"""Read timeouts for uvicorn's HTTP protocol: a client that stops sending a request is disconnected.

uvicorn waits for a request's headers and body for ever (its only timeout is keep-alive, between requests): 500
connections holding half a header stayed open, and 40 that sent 9.9 MB of a 10 MiB body and stalled held 380 MB
of buffered body. Here a request's headers must all arrive within ``read_timeout`` seconds of the connection (on a
kept-alive connection, of the request's first byte), and a body the application is reading must not pause for
longer than that. The headers have a deadline, not a pause limit, so sending them a byte at a time does not keep a
connection open; between requests, uvicorn's keep-alive timeout applies as before.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Literal

from uvicorn.protocols.http.auto import AutoHTTPProtocol

__all__ = ["protocol_with_read_timeout", "WorkerProtocol"]

Phase = Literal["headers", "body"] | None
Event = Literal["connected", "read", "answered"]
_TIMED_OUT_TEXT = b"request not received in time"
_TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: "
              + str(len(_TIMED_OUT_TEXT)).encode() + b"\r\nconnection: close\r\n\r\n" + _TIMED_OUT_TEXT)


class _ReadTimeouts(AutoHTTPProtocol):  # type: ignore[valid-type,misc]
    """uvicorn's own protocol (httptools, else h11), plus one timer per connection for what it is waiting for."""

    read_timeout: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: Phase = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._follow("connected")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow("read")

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow("answered")

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def _waiting_for(self) -> Phase:
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return "headers"  # of the next request
        return "body" if cycle.more_body else None  # None: the request is in, the application has it

    def _follow(self, event: Event) -> None:
        """Start the timer for what the connection now waits for. The headers have one deadline, from the
        connection or from the first byte of a request on a kept-alive connection (idle there is uvicorn's
        keep-alive timeout's business); a body's timer restarts on every read."""
        phase = self._waiting_for()
        if phase == self._phase and not (event == "read" and (phase == "body" or self._timer is None)):
            return
        self._phase = phase
        self._stop_timer()
        if phase is None or (phase == "headers" and event == "answered") or self.transport.is_closing():
            return
        self._timer = self.loop.call_later(self.read_timeout, self._expire)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        transport = self.transport
        if transport.is_closing() or transport.get_protocol() is not self:  # closed, or upgraded to another protocol
            return
        if self._phase == "body" and self.flow.read_paused:
            # uvicorn stopped reading because the application has not taken what came: the client is not to blame.
            self._timer = self.loop.call_later(self.read_timeout, self._expire)
            return
        transport.write(_TIMED_OUT)
        transport.close()  # the application's pending read ends as a disconnect, which frees what it buffered


@functools.cache
def protocol_with_read_timeout(seconds: float) -> type[asyncio.Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)`` for a collector in this process."""
    return type("ReadTimeoutProtocol", (_ReadTimeouts,), {"read_timeout": seconds})


@functools.cache
def _timeout_from_environment() -> float:
    from ._settings import Settings

    return Settings.from_env().read_timeout_seconds


class WorkerProtocol(_ReadTimeouts):
    """For ``serve --workers N``: uvicorn's worker processes import their protocol by name
    (``agentwatch.server._read_timeouts:WorkerProtocol``) and, like their app, take its settings from the
    environment."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = _timeout_from_environment()
