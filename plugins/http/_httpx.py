"""The tap in ``httpx`` and ``httpx2`` (same API): ``Client.send`` and ``AsyncClient.send``.

``send`` is where every request of a client passes (``post``, ``stream``, the openai/anthropic SDKs)
whatever its transport. A body read by ``send`` itself (``stream=False``) is read from
``response.content``; a streamed body is read as it passes through a wrapper around ``response.stream``
— the raw bytes, decoded here if the server compressed them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from types import ModuleType
from typing import Any

from agentwatch._safe import stop_on_exception

from ._endpoints import endpoint_for_path
from ._exchange import CURRENT_EXCHANGE, Exchange
from ._patching import Patcher
from ._tap import StreamTap, begin_safely, failed, finish_abandoned, received_whole

__all__ = ["install"]


def install(module: ModuleType, patcher: Patcher) -> None:
    sync_stream, async_stream = _stream_classes(module)
    patcher.replace(module.Client, "send", lambda original: _sync_send(original, sync_stream))
    patcher.replace(module.AsyncClient, "send", lambda original: _async_send(original, async_stream))


def _exchange_for(request: Any) -> tuple[Exchange | None, bool]:
    url = request.url

    def where() -> tuple[str, str, int | None]:
        return str(url), url.host, url.port

    def body() -> Any:
        try:
            return request.content
        except Exception:  # a streamed upload: not readable without consuming it
            return None

    return begin_safely(url.path, where, body)


@stop_on_exception
def _received(exchange: Exchange, response: Any, streaming: bool, stream_class: type) -> None:
    url = str(response.request.url)
    if not streaming:
        received_whole(exchange, url, response.status_code, response.headers, response.content)
        return
    exchange.responded(url, response.status_code, response.headers)
    response.stream = stream_class(response.stream, StreamTap(exchange, exchange.reader(response.headers,
                                                                                        encoded=True)))


def _sdk_reads_it(request: Any, streaming: bool) -> Exchange | None:
    """The SDK call of this context, if it will read this response's body itself (the common case)."""
    exchange = CURRENT_EXCHANGE.get()
    if exchange is None or not exchange.reads_result or streaming:
        return None
    if endpoint_for_path(request.url.path) is None:  # another request inside the SDK call (an auth token)
        return None
    return exchange


def _sync_send(original: Callable[..., Any], stream_class: type) -> Callable[..., Any]:
    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        sdk_call = _sdk_reads_it(request, bool(kwargs.get("stream")))
        if sdk_call is not None:
            response = original(self, request, *args, **kwargs)
            sdk_call.keep_response(response)
            return response
        exchange, opened = _exchange_for(request)
        if exchange is None:
            return original(self, request, *args, **kwargs)
        if opened:
            exchange.call.activate()
        try:
            response = original(self, request, *args, **kwargs)
        except BaseException as error:
            failed(exchange, error)
            raise
        finally:
            if opened:
                exchange.call.deactivate()
        _received(exchange, response, bool(kwargs.get("stream")), stream_class)
        return response

    return send


def _async_send(original: Callable[..., Any], stream_class: type) -> Callable[..., Any]:
    async def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        sdk_call = _sdk_reads_it(request, bool(kwargs.get("stream")))
        if sdk_call is not None:
            response = await original(self, request, *args, **kwargs)
            sdk_call.keep_response(response)
            return response
        exchange, opened = _exchange_for(request)
        if exchange is None:
            return await original(self, request, *args, **kwargs)
        if opened:
            exchange.call.activate()
        try:
            response = await original(self, request, *args, **kwargs)
        except BaseException as error:
            failed(exchange, error)
            raise
        finally:
            if opened:
                exchange.call.deactivate()
        _received(exchange, response, bool(kwargs.get("stream")), stream_class)
        return response

    return send


def _stream_classes(module: ModuleType) -> tuple[type, type]:
    """Wrappers deriving from this module's own stream bases, which its ``Response`` checks for."""

    class TapSyncStream(module.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, tap: StreamTap) -> None:
            self._inner = inner
            self._tap = tap

        def __iter__(self) -> Iterator[bytes]:
            tap = self._tap
            try:
                for chunk in self._inner:
                    tap.feed(chunk)
                    yield chunk
            except GeneratorExit:  # the reader stopped early (break, close)
                tap.finish(None, False)
                raise
            except BaseException as error:
                tap.finish(error, False)
                raise
            tap.finish(None, True)

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                self._tap.finish(None, False)

        def __del__(self) -> None:
            finish_abandoned(self)

    class TapAsyncStream(module.AsyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, tap: StreamTap) -> None:
            self._inner = inner
            self._tap = tap

        async def __aiter__(self) -> AsyncIterator[bytes]:
            tap = self._tap
            try:
                async for chunk in self._inner:
                    tap.feed(chunk)
                    yield chunk
            except GeneratorExit:
                tap.finish(None, False)
                raise
            except BaseException as error:
                tap.finish(error, False)
                raise
            tap.finish(None, True)

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            finally:
                self._tap.finish(None, False)

        def __del__(self) -> None:
            finish_abandoned(self)

    return TapSyncStream, TapAsyncStream
