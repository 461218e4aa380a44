"""Read timeouts for uvicorn's HTTP protocol: a client that stops sending a request is disconnected. (The same
protocol also bounds a request's headers, MAX_HEADER_BYTES, and names the host of a target in absolute form in
its Host header, for the Host check.)

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

__all__ = ["protocol_with_read_timeout", "WorkerProtocol", "MAX_HEADER_BYTES"]

Phase = Literal["headers", "body"] | None
Event = Literal["connected", "read", "answered"]
_TIMED_OUT_TEXT = b"request not received in time"
_TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: "
              + str(len(_TIMED_OUT_TEXT)).encode() + b"\r\nconnection: close\r\n\r\n" + _TIMED_OUT_TEXT)
#: The most a request's line and headers may take. uvicorn's httptools protocol has no bound (its h11 one has
#: 16 KiB): one request with a 200 MB header held 320 MB of the collector until the read timeout. A browser's
#: request, cookies of every localhost app included, stays far below.
MAX_HEADER_BYTES = 64 * 1024
_TOO_LARGE_TEXT = f"request line and headers larger than {MAX_HEADER_BYTES} bytes".encode()
_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
              b"content-length: " + str(len(_TOO_LARGE_TEXT)).encode() + b"\r\nconnection: close\r\n\r\n"
              + _TOO_LARGE_TEXT)


class _ReadTimeouts(AutoHTTPProtocol):  # type: ignore[valid-type,misc]
    """uvicorn's own protocol (httptools, else h11), plus one timer per connection for what it is waiting for."""

    read_timeout: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: Phase = None
        self._timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0  # of the request whose headers are awaited
        self._refused = False  # answered 431: nothing more is read from this connection
        # From a request's headers to the end of its body, answered or not: a route may answer before reading the body
        # (a 413 on its declared length), and the rest of it then still comes on a kept-alive connection.
        self._in_request = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._follow("connected")

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the rest of a request refused for its headers: dropped as it comes, until the client closes
        before = self._waiting_for()
        super().data_received(data)
        # Counted once parsed: a read that ends the headers may carry much of the body too (up to 256 KiB), which
        # is not the headers' size; nor is one that ends the body of a request answered before it was read (its rest
        # is dropped by the parser as it comes). What the parser holds is then at most the bound and one read.
        if self._waiting_for() == "headers":
            if before == "headers":
                self._header_bytes += len(data)
                if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
                    self._refuse_headers()
                    return
        else:
            self._header_bytes = 0
        self._follow("read")

    def _refuse_headers(self) -> None:
        """Answer 431 and end the connection. Closed at once, with the client's bytes still coming, the socket
        would be reset and the answer lost with it: the sending side is closed instead (the client reads the
        answer, then the end), what still comes is dropped, and the connection closes when the client closes
        its side, or after the read timeout."""
        self._refused = True
        self._stop_timer()
        transport = self.transport
        transport.write(_TOO_LARGE)
        if transport.can_write_eof():
            transport.write_eof()
            self._timer = self.loop.call_later(self.read_timeout, transport.close)
        else:
            transport.close()

    def on_headers_complete(self) -> None:
        # RFC 9112 3.2.2: a request whose target is in absolute form ("GET http://name/api/traces") is for the
        # target's host, whatever its Host header says; uvicorn keeps only the target's path, so the Host check
        # judged the Host header ("localhost") and served a request made out to another name.
        target = getattr(self, "url", b"")  # httptools' protocol; h11's routes such a target to no route (404)
        if isinstance(target, bytes) and target[:1] not in (b"/", b"*") and b"://" in target:
            authority = target.split(b"://", 1)[1].split(b"/", 1)[0].split(b"?", 1)[0]
            self.headers[:] = [(name, value) for name, value in self.headers if name != b"host"]
            self.headers.append((b"host", authority))
        super().on_headers_complete()
        self._in_request = True

    def on_message_complete(self) -> None:
        self._in_request = False  # httptools' protocol (h11's never calls it: its parser bounds headers itself)
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._header_bytes = 0  # the next request's headers are counted from their own first byte
        self._follow("answered")

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def _waiting_for(self) -> Phase:
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            # The next request's headers; or, for a request answered before its body was read, the rest of that body.
            return "body" if self._in_request else "headers"
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
