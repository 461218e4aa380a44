"""The tap in ``requests``: ``Session.send``, which every ``requests.post``/``Session.request`` reaches.

Without ``stream=True`` the body is read by ``send`` itself and taken from ``response.content``. With it,
``response.raw`` is wrapped so the chunks ``iter_content``/``iter_lines`` pull are read as they pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from agentwatch.instrumentation import stop_on_exception

from ._exchange import Exchange
from ._patching import Patcher
from ._tap import StreamTap, begin_safely, failed, finish_abandoned, received_whole

__all__ = ["install"]


def install(module: ModuleType, patcher: Patcher) -> None:
    patcher.replace(module.Session, "send", _send)


def _send(original: Callable[..., Any]) -> Callable[..., Any]:
    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        url = request.url or ""
        parts = urlsplit(url)
        exchange, opened = begin_safely(parts.path, lambda: (url, parts.hostname or "", parts.port),
                                        lambda: request.body)
        if exchange is None:
            return original(self, request, **kwargs)
        if opened:
            exchange.call.activate()  # a redirect re-enters send(): it then adds to this call
        try:
            response = original(self, request, **kwargs)
        except BaseException as error:
            failed(exchange, error)
            raise
        finally:
            if opened:
                exchange.call.deactivate()
        _received(exchange, url, response, bool(kwargs.get("stream")))
        return response

    return send


@stop_on_exception
def _received(exchange: Exchange, url: str, response: Any, streaming: bool) -> None:
    if not streaming:
        received_whole(exchange, url, response.status_code, response.headers, response.content)
        return
    exchange.responded(url, response.status_code, response.headers)
    # requests asks urllib3 to decode, so the reader sees plain bytes.
    response.raw = _TapRaw(response.raw, StreamTap(exchange, response.headers))


class _TapRaw:
    """Stands in for urllib3's response: the reading methods requests uses pass through the tap."""

    def __init__(self, raw: Any, tap: StreamTap) -> None:
        self._raw = raw
        self._tap = tap

    def stream(self, amt: int | None = 2**16, decode_content: bool | None = None) -> Iterator[bytes]:
        tap = self._tap
        try:
            for chunk in self._raw.stream(amt, decode_content=decode_content):
                tap.feed(chunk)
                yield chunk
        except GeneratorExit:
            tap.finish(None, False)
            raise
        except BaseException as error:
            tap.finish(error, False)
            raise
        tap.finish(None, True)

    def read(self, *args: Any, **kwargs: Any) -> bytes:
        try:
            data = self._raw.read(*args, **kwargs)
        except BaseException as error:
            self._tap.finish(error, False)
            raise
        if data:
            self._tap.feed(data)
        else:
            self._tap.finish(None, True)
        return data

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            self._tap.finish(None, False)

    def release_conn(self) -> None:
        try:
            self._raw.release_conn()
        finally:
            self._tap.finish(None, False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def __del__(self) -> None:
        finish_abandoned(self)
