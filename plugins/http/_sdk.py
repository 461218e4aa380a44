"""Limits checked in the SDK itself: the openai and anthropic clients' ``request()``.

Every SDK method (``create``, ``stream()``, ``with_raw_response``, ``with_streaming_response``, sync and
async) goes through ``SyncAPIClient.request`` / ``AsyncAPIClient.request``, which holds the SDK's retry
loop. Raising ``CircuitBreakerException`` before the original runs sends nothing and is neither retried
nor wrapped (raised inside the HTTP transport it would become ``APIConnectionError`` and be retried).

The call is then published for the HTTP tap (``CURRENT_EXCHANGE``) for exactly the duration of
``request()``: the tap adds status, request id and usage to it (a non-streamed call's usage is read
from the object the SDK parsed, not from the body again). A non-streamed call ends when
``request()`` returns; a streamed one when its body ends (read, closed, cut or dropped).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from agentwatch._client import get_client
from agentwatch._llm import current_llm_call, start_llm_call
from agentwatch._safe import stop_on_exception

from ._endpoints import endpoint_for_path
from ._exchange import CURRENT_EXCHANGE, Exchange, request_input, request_model, settings
from ._patching import Patcher

__all__ = ["install"]


def install(base_client: ModuleType, patcher: Patcher, sdk: str) -> None:
    """Wrap ``request`` of the SDK's ``SyncAPIClient``/``AsyncAPIClient`` (``<sdk>._base_client``)."""
    patcher.replace(base_client.SyncAPIClient, "request", lambda original: _sync_request(original, sdk))
    patcher.replace(base_client.AsyncAPIClient, "request", lambda original: _async_request(original, sdk))


@stop_on_exception
def _open(api_client: Any, options: Any, sdk: str) -> Exchange | None:
    """The exchange for this request, or None if it is no LLM call. May raise ``CircuitBreakerException``."""
    if get_client() is None or str(getattr(options, "method", "")).lower() != "post":
        return None
    path = options.url
    endpoint = endpoint_for_path(path)
    if endpoint is None:
        return None
    in_flight = current_llm_call()
    if in_flight is not None and not in_flight.ended:  # a framework's call: add to it, count it once
        return Exchange(in_flight, endpoint, owned=False, ends_with_body=False)
    body = options.json_data
    provider = _provider(api_client.base_url, sdk)
    call = start_llm_call(f"{sdk}.{endpoint.name}", model=request_model(endpoint, path, body),
                          provider=provider, kind=endpoint.kind, input=request_input(body))
    return Exchange(call, endpoint, owned=True, ends_with_body=False, reads_result=True)


#: Provider per base-URL object (a client keeps its URL object): naming it costs a few string operations
#: that need not be paid on every call. The URL object is kept in the value, so its id is not reused.
_providers: dict[int, tuple[Any, str]] = {}


def _provider(base: Any, sdk: str) -> str:
    known = _providers.get(id(base))
    if known is not None and known[0] is base:
        return known[1]
    provider = settings.providers.provider_for(str(base), base.host, base.port) or sdk
    if len(_providers) > 256:
        _providers.clear()
    _providers[id(base)] = (base, provider)
    return provider


def forget_providers() -> None:
    """Registered base URLs change with each init(): name providers afresh."""
    _providers.clear()


@stop_on_exception
def _raised(exchange: Exchange, error: BaseException) -> None:
    if exchange.owned:
        exchange.fail(error)


@stop_on_exception
def _returned(exchange: Exchange, result: Any) -> None:
    if not exchange.owned:
        return
    if exchange.body_open:
        exchange.ends_with_body = True  # a stream: it ends when its body does
        return
    exchange.settle(result)


def _sync_request(original: Callable[..., Any], sdk: str) -> Callable[..., Any]:
    def request(self: Any, cast_to: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
        exchange = _open(self, options, sdk)
        if exchange is None:
            return original(self, cast_to, options, *args, **kwargs)
        token = CURRENT_EXCHANGE.set(exchange)
        try:
            result = original(self, cast_to, options, *args, **kwargs)
        except BaseException as error:
            _raised(exchange, error)
            raise
        finally:
            CURRENT_EXCHANGE.reset(token)
        _returned(exchange, result)
        return result

    return request


def _async_request(original: Callable[..., Any], sdk: str) -> Callable[..., Any]:
    async def request(self: Any, cast_to: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
        exchange = _open(self, options, sdk)
        if exchange is None:
            return await original(self, cast_to, options, *args, **kwargs)
        token = CURRENT_EXCHANGE.set(exchange)
        try:
            result = await original(self, cast_to, options, *args, **kwargs)
        except BaseException as error:
            _raised(exchange, error)
            raise
        finally:
            CURRENT_EXCHANGE.reset(token)
        _returned(exchange, result)
        return result

    return request
