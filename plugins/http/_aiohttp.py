"""The tap in ``aiohttp``: ``ClientSession._request``, behind every ``session.get/post/request``.

aiohttp has no public per-request hook that sees every session (trace configs are fixed when a session
is created), so the coroutine all verbs share is wrapped. The response body is read through a proxy of
``response.content`` (the stream ``read()``, ``json()`` and ``async for line in resp.content`` all pull
from); ``release()``/``close()`` end a body left unread.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from agentwatch.instrumentation import stop_on_exception

from ._exchange import Exchange
from ._patching import Patcher
from ._tap import StreamTap, begin_safely, failed

__all__ = ["install"]


def install(module: ModuleType, patcher: Patcher) -> None:
    patcher.replace(module.ClientSession, "_request", _request)


def _request(original: Callable[..., Any]) -> Callable[..., Any]:
    from yarl import URL

    async def request(self: Any, method: str, str_or_url: Any, *args: Any, **kwargs: Any) -> Any:
        exchange, opened = _exchange_for(self, str_or_url, kwargs, URL)
        if exchange is None or exchange.sending:  # httpx's tap above this transport has the request (_httpx)
            return await original(self, method, str_or_url, *args, **kwargs)
        if opened:
            exchange.call.activate()
        try:
            response = await original(self, method, str_or_url, *args, **kwargs)
        except BaseException as error:
            failed(exchange, error)
            raise
        finally:
            if opened:
                exchange.call.deactivate()
        _received(exchange, response)
        return response

    return request


def _exchange_for(session: Any, str_or_url: Any, kwargs: dict[str, Any],
                  url_type: type) -> tuple[Exchange | None, bool]:
    build = getattr(session, "_build_url", None)
    try:
        url = build(str_or_url) if build is not None else url_type(str(str_or_url))
    except Exception:
        return None, False

    def body() -> Any:
        return kwargs["json"] if kwargs.get("json") is not None else kwargs.get("data")

    return begin_safely(url.path, lambda: (str(url), url.host or "", url.explicit_port), body)


@stop_on_exception
def _received(exchange: Exchange, response: Any) -> None:
    exchange.responded(str(response.url), response.status, response.headers)
    # aiohttp decompresses before the stream reader, so the reader sees plain bytes.
    tap = StreamTap(exchange, response.headers)
    response.content = _TapContent(response.content, tap)
    for name in ("release", "close"):
        setattr(response, name, _ending(getattr(response, name), tap))


def _ending(method: Callable[..., Any], tap: StreamTap) -> Callable[..., Any]:
    def end(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        finally:
            tap.finish(None, False)

    return end


class _TapContent:
    """Stands in for the response's ``StreamReader``: every way of reading passes through the tap."""

    def __init__(self, inner: Any, tap: StreamTap) -> None:
        self._inner = inner
        self._tap = tap

    def _took(self, data: bytes) -> bytes:
        if data:
            self._tap.feed(data)
        if self._inner.at_eof():
            self._tap.finish(None, True)
        return data

    async def _read(self, reading: Any) -> bytes:
        try:
            data = await reading
        except BaseException as error:
            self._tap.finish(error, False)
            raise
        return self._took(data)

    async def read(self, n: int = -1) -> bytes:
        return await self._read(self._inner.read(n))

    async def readany(self) -> bytes:
        return await self._read(self._inner.readany())

    async def readline(self, **kwargs: Any) -> bytes:
        return await self._read(self._inner.readline(**kwargs))

    async def readuntil(self, *args: Any, **kwargs: Any) -> bytes:
        return await self._read(self._inner.readuntil(*args, **kwargs))

    async def readexactly(self, n: int) -> bytes:
        return await self._read(self._inner.readexactly(n))

    async def readchunk(self) -> tuple[bytes, bool]:
        try:
            data, end_of_chunk = await self._inner.readchunk()
        except BaseException as error:
            self._tap.finish(error, False)
            raise
        return self._took(data), end_of_chunk

    def read_nowait(self, n: int = -1) -> bytes:
        return self._took(self._inner.read_nowait(n))

    def __aiter__(self) -> Any:
        from aiohttp.streams import AsyncStreamIterator

        return AsyncStreamIterator(self.readline)

    def iter_chunked(self, n: int) -> Any:
        from aiohttp.streams import AsyncStreamIterator

        set_size = getattr(self._inner, "set_read_chunk_size", None)
        if set_size is not None:
            set_size(n)
        return AsyncStreamIterator(lambda: self.read(n))

    def iter_any(self) -> Any:
        from aiohttp.streams import AsyncStreamIterator

        return AsyncStreamIterator(self.readany)

    def iter_chunks(self) -> Any:
        from aiohttp.streams import ChunkTupleAsyncStreamIterator

        return ChunkTupleAsyncStreamIterator(self)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
