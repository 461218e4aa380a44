"""What every transport tap shares: asking ``begin()`` safely, and feeding one streamed body."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from agentwatch.instrumentation import (
    collecting_garbage,
    defer,
    logger,
    stop_on_exception,
    unwatch_collections,
    watch_collections,
)

from ._body import BodyReader
from ._exchange import Exchange, begin, get_current_exchange

__all__ = ["StreamTap", "begin_safely", "failed", "sdk_attempt_failed", "received_whole", "finish_abandoned"]

_time_ns = time.time_ns

#: ``begin`` that never breaks the host: only ``CircuitBreakerException`` gets through.
begin_safely: Callable[..., tuple[Exchange | None, bool]] = stop_on_exception(default=(None, False))(begin)


@stop_on_exception
def failed(exchange: Exchange, error: BaseException) -> None:
    """The request raised before a response: one that went out is charged its prompt (a call in flight that this
    request joined too, if no usage comes for it); a call this layer owns ends with that error."""
    if exchange is get_current_exchange():
        return  # an SDK call's, sent through a transport under the SDK's httpx client: that tap notes the attempt
    exchange.unanswered_attempt(error)
    if exchange.unanswered:
        exchange.charge_unanswered(exchange.unanswered)
    if exchange.ends_with_body:
        exchange.end(error)


@stop_on_exception
def sdk_attempt_failed(exchange: Exchange, error: BaseException) -> None:
    """An attempt of an SDK call raised before a response: noted, for the SDK layer to charge (``Exchange.fail``)
    once its retries are over."""
    exchange.unanswered_attempt(error)


@stop_on_exception
def received_whole(exchange: Exchange, url: str, status: int, headers: Any, body: bytes) -> None:
    """A response whose body the client already read in full."""
    exchange.responded(url, status, headers)
    exchange.whole_body(headers, body)


class StreamTap:
    """Reads a streamed body as its chunks pass, and ends it exactly once.

    Nothing is done before a chunk goes on to the user: each chunk is read when the next one arrives (the
    last when the body ends), and the reader is made (headers looked at) only then. So the first chunk
    reaches the user with no more delay than noting the time it came."""

    __slots__ = ("_exchange", "_headers", "_encoded", "_reader", "_held", "_held_ns", "_done")

    def __init__(self, exchange: Exchange, headers: Any, *, encoded: bool = False) -> None:
        self._exchange = exchange
        self._headers = headers
        self._encoded = encoded
        self._reader: BodyReader | None = None
        self._held: bytes | None = None
        #: When the chunk now held arrived, while no output token was seen (the time to the first token is the
        #: arrival of the chunk that has it); -1 once one was.
        self._held_ns = 0
        self._done = False
        exchange.body_open = True
        exchange.streamed = True
        watch_collections()  # until finish(): the collector may finalise an abandoned stream, and run finish then

    def feed(self, chunk: bytes) -> None:
        reader = self._reader
        held = self._held
        self._held = chunk
        if reader is not None and held is not None:  # every chunk after the second: read the one before it
            try:
                reader.feed(held)
            except Exception:  # stop reading; the chunks keep flowing to the user
                logger.exception("agentwatch: could not read a response stream (ignored)")
                reader.unreadable = "reader error"
            if self._held_ns >= 0:
                self._note_token(reader)
        elif held is None:  # the first chunk: only its time now
            if not self._held_ns:
                self._held_ns = _time_ns()
        elif reader is None:  # the first chunk's turn
            self._read(held)

    def _read(self, chunk: bytes) -> None:
        """Read a chunk the reader has not seen, out of turn: the first one, or the last at the body's end."""
        reader = self._reader or self._make_reader()
        try:
            reader.feed(chunk)
        except Exception:  # stop reading; the chunks keep flowing to the user
            logger.exception("agentwatch: could not read a response stream (ignored)")
            reader.unreadable = "reader error"
        if self._held_ns >= 0:
            self._note_token(reader)

    def _note_token(self, reader: BodyReader) -> None:
        """After reading a chunk while no token was seen: the first token came with it (at ``_held_ns``), or the
        next look is at the chunk held now, which arrived just now."""
        if reader.token_seen:
            arrived, self._held_ns = self._held_ns, -1
            if arrived > 0:
                self._exchange.mark_first_chunk(arrived)
        else:
            self._held_ns = _time_ns()

    def _make_reader(self) -> BodyReader:
        try:
            reader = self._exchange.reader(self._headers, encoded=self._encoded)
        except Exception:  # headers we cannot make sense of: the body passes unread
            logger.exception("agentwatch: could not read a response stream (ignored)")
            reader = BodyReader(self._exchange.endpoint.api, None)
            reader.unreadable = "reader error"
        self._reader = reader
        return reader

    @stop_on_exception
    def finish(self, error: BaseException | None, complete: bool) -> None:
        if self._done:
            return
        if collecting_garbage():
            # A finaliser (the SDK's stream dropped unfinished is cyclic garbage, closed by the collector) may run at
            # any allocation, perhaps while this thread holds a lock that ending the call takes: later, at a safe point.
            defer(functools.partial(self.finish, error, complete))
            return
        self._done = True
        unwatch_collections()
        held, self._held = self._held, None
        if held is not None:
            self._read(held)
        self._exchange.body_ended(self._reader or self._make_reader(), error, complete=complete)


def finish_abandoned(holder: Any) -> None:
    """From ``__del__``: a stream dropped unread still ends its call. One read to its end was finished already: asked
    here, that costs no call of ``finish`` (and its guard) for every stream."""
    tap = getattr(holder, "_tap", None)
    if tap is not None and not tap._done:
        tap.finish(None, False)
