"""What every transport tap shares: asking ``begin()`` safely, and feeding one streamed body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentwatch._safe import logger, stop_on_exception

from ._body import BodyReader
from ._exchange import Exchange, begin

__all__ = ["StreamTap", "begin_safely", "failed", "received_whole", "finish_abandoned"]

#: ``begin`` that never breaks the host: only ``CircuitBreakerException`` gets through.
begin_safely: Callable[..., tuple[Exchange | None, bool]] = stop_on_exception(default=(None, False))(begin)


@stop_on_exception
def failed(exchange: Exchange, error: BaseException) -> None:
    """The request raised before a response: a call this layer owns ends with that error."""
    if exchange.ends_with_body:
        exchange.end(error)


@stop_on_exception
def received_whole(exchange: Exchange, url: str, status: int, headers: Any, body: bytes) -> None:
    """A response whose body the client already read in full."""
    exchange.responded(url, status, headers)
    exchange.whole_body(headers, body)


class StreamTap:
    """Feeds a streamed body to its reader as chunks pass, and ends it exactly once."""

    __slots__ = ("_exchange", "_reader", "_started", "_done")

    def __init__(self, exchange: Exchange, reader: BodyReader) -> None:
        self._exchange = exchange
        self._reader = reader
        self._started = False
        self._done = False
        exchange.body_open = True

    def feed(self, chunk: bytes) -> None:
        if not self._started:
            self._started = True
            self._exchange.mark_first_chunk()
        try:
            self._reader.feed(chunk)
        except Exception:  # stop reading; the chunks keep flowing to the user
            logger.exception("agentwatch: could not read a response stream (ignored)")
            self._reader.unreadable = "reader error"

    @stop_on_exception
    def finish(self, error: BaseException | None, complete: bool) -> None:
        if not self._done:
            self._done = True
            self._exchange.body_ended(self._reader, error, complete=complete)


def finish_abandoned(holder: Any) -> None:
    """From ``__del__``: a stream dropped unread still ends its call."""
    tap = getattr(holder, "_tap", None)
    if tap is not None:
        tap.finish(None, False)
