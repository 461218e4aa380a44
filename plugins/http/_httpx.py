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

from agentwatch.instrumentation import logger, stop_on_exception

from ._endpoints import _MISSING, _known_paths, endpoint_for_path
from ._exchange import Exchange, _body_headers, get_built_request, get_current_exchange, set_built_request
from ._patching import Patcher, taking_keywords
from ._stream_usage import UsageChunkFilter
from ._tap import StreamTap, begin_safely, failed, finish_abandoned, received_whole, sdk_attempt_failed

__all__ = ["install"]


def install(module: ModuleType, patcher: Patcher) -> None:
    sync_stream, async_stream = _stream_classes(module)
    patcher.replace(module.Client, "send", lambda original: _sync_send(original, sync_stream))
    patcher.replace(module.AsyncClient, "send", lambda original: _async_send(original, async_stream))


def _path(url: Any) -> str:
    """The path as sent (httpx keeps it parsed): ``url.path`` would unquote it on every request."""
    reference = getattr(url, "_uri_reference", None)
    path = reference.path if reference is not None else None
    if path.__class__ is not str or "%" in path:
        path = url.path
    return path  # type: ignore[no-any-return]


def _exchange_for(request: Any) -> tuple[Exchange | None, bool]:
    url = request.url
    path = _path(url)
    if _known_paths.get(path, _MISSING) is None:
        # A path seen before that addresses no LLM API (most of a program's other traffic): nothing else to ask.
        return None, False
    built = get_built_request()
    if built is not None and built[0] is request:  # an SDK request opened when it was built (see _sdk): ours to end
        set_built_request(None)
        return built[1], True

    def where() -> tuple[str, str, int | None]:
        return str(url), url.host, url.port

    def body() -> Any:
        try:
            return request.content
        except Exception:  # a streamed upload: not readable without consuming it
            return None

    return begin_safely(path, where, body)


@stop_on_exception
def _received(exchange: Exchange, response: Any, streaming: bool, stream_class: type) -> None:
    url = str(response.request.url)
    if not streaming:
        received_whole(exchange, url, response.status_code, response.headers, response.content)
        return
    exchange.responded(url, response.status_code, response.headers)
    if hasattr(response, "_content"):
        _read_already(exchange, response, None)
        return
    response.stream = stream_class(response.stream, StreamTap(exchange, response.headers, encoded=True))


def _read_already(exchange: Exchange, response: Any, hide: UsageChunkFilter | None) -> None:
    """A streamed response whose body httpx read when the response was made: a transport that builds it from bytes
    (``httpx.MockTransport``, respx, vcrpy's replays). httpx serves such a body from ``_content`` and never iterates
    ``response.stream``, so a wrapper there would see nothing: the body is read now, and the usage chunk we asked
    for (``hide``) is taken out of what the user will read."""
    body = response.content
    if hide is not None:
        response._content = hide(body) + hide.flush()
    exchange.streamed = True
    exchange.whole_body(response.headers, body)


def _sdk_exchange(exchange: Exchange, request: Any) -> Exchange | None:
    """The SDK call of this context (``exchange``), if this request is its LLM request (not, say, an auth token fetch):
    known by its path where it is not the request the SDK layer saw built (``Exchange.request``)."""
    url = request.url
    reference = getattr(url, "_uri_reference", None)  # _path(url), inlined: every SDK call's request comes here
    path = reference.path if reference is not None else None
    if path.__class__ is not str or "%" in path:
        path = url.path
    endpoint = _known_paths.get(path, _MISSING)
    if endpoint is _MISSING:
        endpoint = endpoint_for_path(path)
    return exchange if endpoint is not None and not exchange.call.ended else None


def _sdk_received(exchange: Exchange, response: Any, streaming: bool, stream_class: type) -> None:
    """A response of an SDK call that the SDK does not parse in full itself: a streamed body is read as
    it passes (see ``send`` for the usual case)."""
    try:
        exchange.keep_response(response)
        if streaming:
            hide = None
            if exchange.usage_requested:  # we asked for usage: the user must not see the answer (_stream_usage)
                # response.headers.get("content-encoding", "identity"), in one pass over httpx's header triples
                encoding = _body_headers(response.headers, True)[1]
                encoding = "identity" if encoding is None else encoding.strip().lower()
                if encoding == "identity":
                    hide = UsageChunkFilter()
                else:  # we asked for plain bytes; a server that compresses anyway shows the usage chunk
                    logger.debug("agentwatch: a %s stream cannot be filtered; its usage chunk is shown", encoding)
            if hasattr(response, "_content"):  # httpx's own test for a body read already
                _read_already(exchange, response, hide)
            else:
                response.stream = stream_class(response.stream, StreamTap(exchange, response.headers, encoded=True),
                                               hide)
        else:  # not expected from the SDK layer: read the body here
            exchange.whole_body(response.headers, response.content)
    except Exception:
        logger.exception("agentwatch: internal error in the httpx tap (ignored)")


# Both wrappers declare send()'s keywords and pass them on by name (see ``taking_keywords``): httpx's own
# ``request()`` passes ``auth`` and ``follow_redirects`` on every request, the SDKs ``stream``.

def _client_default(original: Callable[..., Any]) -> Any:
    """httpx's ``USE_CLIENT_DEFAULT`` (each of httpx and httpx2 has its own), as ``send`` has it for ``auth``."""
    return (getattr(original, "__kwdefaults__", None) or {}).get("auth", _MISSING)


def _sync_send(original: Callable[..., Any], stream_class: type) -> Callable[..., Any]:
    client_default = _client_default(original)
    original, defaults = taking_keywords(original, stream=False, auth=client_default, follow_redirects=client_default)
    no_stream, default = defaults["stream"], defaults["auth"]

    def send(self: Any, request: Any, *args: Any, stream: bool = no_stream, auth: Any = default,
             follow_redirects: Any = default, **kwargs: Any) -> Any:
        # The SDK layer's call (opened and limit-checked there), else a call of the tap's own, one in flight, or none.
        sdk_call = get_current_exchange()
        if sdk_call is not None and (sdk_call.request is not request or sdk_call.call.ended):
            sdk_call = _sdk_exchange(sdk_call, request)
        exchange, opened = (None, False) if sdk_call is not None else _exchange_for(request)
        if opened:
            exchange.call.activate()  # type: ignore[union-attr]
        elif sdk_call is not None:
            sdk_call.sending = True
        try:
            if args or kwargs:
                response = original(self, request, *args, stream=stream, auth=auth,
                                    follow_redirects=follow_redirects, **kwargs)
            else:
                response = original(self, request, stream=stream, auth=auth, follow_redirects=follow_redirects)
        except BaseException as error:
            if exchange is not None:
                failed(exchange, error)
            elif sdk_call is not None:
                sdk_attempt_failed(sdk_call, error)
            raise
        finally:
            if opened:
                exchange.call.deactivate()  # type: ignore[union-attr]
            elif sdk_call is not None:
                sdk_call.sending = False
        if sdk_call is not None:
            if sdk_call.reads_result and not stream:
                # The usual case: the SDK parses the body. Keep the response (Exchange.keep_response);
                # status, URL and request id are read from it when the call settles, not on the way out.
                sdk_call.attempts += 1
                sdk_call._response = response
            else:
                _sdk_received(sdk_call, response, bool(stream), stream_class)
        elif exchange is not None:
            _received(exchange, response, bool(stream), stream_class)
        return response

    send.agentwatch_tap = True  # type: ignore[attr-defined]  # _sdk asks: can this client's streams be filtered
    return send


def _async_send(original: Callable[..., Any], stream_class: type) -> Callable[..., Any]:
    client_default = _client_default(original)
    original, defaults = taking_keywords(original, stream=False, auth=client_default, follow_redirects=client_default)
    no_stream, default = defaults["stream"], defaults["auth"]

    async def send(self: Any, request: Any, *args: Any, stream: bool = no_stream, auth: Any = default,
                   follow_redirects: Any = default, **kwargs: Any) -> Any:
        # The SDK layer's call (opened and limit-checked there), else a call of the tap's own, one in flight, or none.
        sdk_call = get_current_exchange()
        if sdk_call is not None and (sdk_call.request is not request or sdk_call.call.ended):
            sdk_call = _sdk_exchange(sdk_call, request)
        exchange, opened = (None, False) if sdk_call is not None else _exchange_for(request)
        if opened:
            exchange.call.activate()  # type: ignore[union-attr]
        elif sdk_call is not None:
            sdk_call.sending = True
        try:
            if args or kwargs:
                response = await original(self, request, *args, stream=stream, auth=auth,
                                          follow_redirects=follow_redirects, **kwargs)
            else:
                response = await original(self, request, stream=stream, auth=auth,
                                          follow_redirects=follow_redirects)
        except BaseException as error:
            if exchange is not None:
                failed(exchange, error)
            elif sdk_call is not None:
                sdk_attempt_failed(sdk_call, error)
            raise
        finally:
            if opened:
                exchange.call.deactivate()  # type: ignore[union-attr]
            elif sdk_call is not None:
                sdk_call.sending = False
        if sdk_call is not None:
            if sdk_call.reads_result and not stream:
                # The usual case: the SDK parses the body. Keep the response (Exchange.keep_response);
                # status, URL and request id are read from it when the call settles, not on the way out.
                sdk_call.attempts += 1
                sdk_call._response = response
            else:
                _sdk_received(sdk_call, response, bool(stream), stream_class)
        elif exchange is not None:
            _received(exchange, response, bool(stream), stream_class)
        return response

    send.agentwatch_tap = True  # type: ignore[attr-defined]
    return send


def _stream_classes(module: ModuleType) -> tuple[type, type]:
    """Wrappers deriving from this module's own stream bases, which its ``Response`` checks for."""

    class TapSyncStream(module.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, tap: StreamTap, hide: UsageChunkFilter | None = None) -> None:
            self._inner = inner
            self._tap = tap
            self._hide = hide

        def __iter__(self) -> Iterator[bytes]:
            tap = self._tap
            feed = tap.feed  # once per body, not per chunk
            hide = self._hide
            try:
                if hide is None:
                    for chunk in self._inner:
                        feed(chunk)
                        yield chunk
                else:  # read what the server sent, pass on what the user would get without AgentWatch
                    for chunk in self._inner:
                        feed(chunk)
                        chunk = hide(chunk)
                        if chunk:
                            yield chunk
                    chunk = hide.flush()
                    if chunk:
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
        def __init__(self, inner: Any, tap: StreamTap, hide: UsageChunkFilter | None = None) -> None:
            self._inner = inner
            self._tap = tap
            self._hide = hide

        async def __aiter__(self) -> AsyncIterator[bytes]:
            tap = self._tap
            feed = tap.feed  # once per body, not per chunk
            hide = self._hide
            try:
                if hide is None:
                    async for chunk in self._inner:
                        feed(chunk)
                        yield chunk
                else:
                    async for chunk in self._inner:
                        feed(chunk)
                        chunk = hide(chunk)
                        if chunk:
                            yield chunk
                    chunk = hide.flush()
                    if chunk:
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
