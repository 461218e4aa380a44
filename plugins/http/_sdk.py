"""Limits checked in the SDK itself: the openai and anthropic clients' ``request()``.

Every SDK method (``create``, ``stream()``, ``with_raw_response``, ``with_streaming_response``, sync and
async) goes through ``SyncAPIClient.request`` / ``AsyncAPIClient.request``, which holds the SDK's retry
loop. Raising ``CircuitBreakerException`` before the original runs sends nothing and is neither retried
nor wrapped (raised inside the HTTP transport it would become ``APIConnectionError`` and be retried).

The call is then published for the HTTP tap (``CURRENT_EXCHANGE``) for exactly the duration of
``request()``: the tap keeps the response, and a streamed body is read as it passes. A non-streamed
call's usage is read from the object the SDK parsed, not from the body again; it ends when ``request()``
returns. A streamed one ends when its body ends (read, closed, cut or dropped).

This is the per-call path of every SDK call, so it is kept short: the route and span name are looked up
once per path, the provider once per client, and nothing is read from the request body but the model
(and the messages, if text is captured).

A request built outside that wrapper (``_build_request`` with no SDK call in this context: another
instrumentation replaced ``request`` on the client object before ``init()``, and calls the SDK's function
it kept) is opened and checked when it is built: inside the SDK's retry loop but outside its error handling,
so a block is neither retried nor wrapped. Each attempt is then a call of its own, as at the HTTP layer, and
is left to the HTTP tap (``BUILT_REQUEST``), which reads its response and ends it.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from agentwatch.instrumentation import (
    adopt_registered,
    get_client,
    get_current_llm_call,
    start_llm_call,
    swallow_internal_error,
)

from ._body import parse_json
from ._endpoints import Endpoint, endpoint_for_path
from ._exchange import (
    Exchange,
    get_built_request,
    get_current_exchange,
    request_input,
    request_model,
    reset_current_exchange,
    set_built_request,
    set_current_exchange,
    settings,
)
from ._patching import Patcher, taking_keywords
from ._stream_usage import asked_usage_body, wants_usage

__all__ = ["install"]


def install(base_client: ModuleType, patcher: Patcher, sdk: str) -> None:
    """Wrap ``request`` of the SDK's ``SyncAPIClient``/``AsyncAPIClient`` (``<sdk>._base_client``), and of any client
    class below them that has one of its own.

    The SDKs' client classes (``OpenAI``, ``AzureOpenAI``, ``Anthropic``, ...) inherit ``request``; one defined on
    such a class was put there by another instrumentation (OpenInference wraps ``OpenAI.request``). It calls the
    SDK's function it captured, not the base class's attribute, so wrapping the base alone would leave every call
    of that class unobserved and unlimited when the other instrumentation came first."""
    wrappers: tuple[tuple[type, Callable[[str, Callable[..., Any]], Callable[..., Any]]], ...] = (
        (base_client.SyncAPIClient, _sync_request), (base_client.AsyncAPIClient, _async_request))
    for base, wrap in wrappers:
        for owner in (base, *_subclasses(base)):
            if owner is base or "request" in owner.__dict__:
                patcher.replace(owner, "request", functools.partial(wrap, sdk))
    # A client object can have its own ``request``, which no class patch reaches: its requests are caught where
    # they are built. Azure's client builds its own (and then calls the base class's): both wrapped, opened once.
    builder = getattr(base_client, "BaseClient", None)
    for owner in (builder, *_subclasses(builder)) if builder is not None else ():
        if owner is builder or "_build_request" in owner.__dict__:
            patcher.replace(owner, "_build_request", functools.partial(_build_request, sdk))


def _subclasses(base: type) -> list[type]:
    found: list[type] = []
    pending: list[type] = list(base.__subclasses__())
    while pending:
        owner = pending.pop()
        if owner not in found:
            found.append(owner)
            pending.extend(owner.__subclasses__())
    return found


_MISSING = object()
_Route = tuple[Endpoint, str]  # the endpoint and the span name, e.g. "openai.chat.completions"
#: Per SDK, the route of each request path (``options.url``): a client calls few distinct paths.
_routes: dict[str, dict[str, _Route | None]] = {}
_ROUTES_MAX = 4096  # paths with ids in them must not grow it forever


def _route(routes: dict[str, _Route | None], sdk: str, path: str) -> _Route | None:
    endpoint = endpoint_for_path(path)
    route = (endpoint, f"{sdk}.{endpoint.name}") if endpoint is not None else None
    if len(routes) < _ROUTES_MAX:
        routes[path] = route
    return route


def _llm_route(options: Any, sdk: str, routes: dict[str, _Route | None]) -> _Route | None:
    """The route of an SDK request that is an LLM call (a POST to an LLM path), else None."""
    method = getattr(options, "method", None)
    if method.__class__ is not str or method.lower() != "post":
        return None
    path = options.url
    route: _Route | None = routes.get(path, _MISSING)  # type: ignore[arg-type]
    return _route(routes, sdk, path) if route is _MISSING else route


def _open(api_client: Any, options: Any, sdk: str, routes: dict[str, _Route | None],
          client: Any) -> Exchange | None:
    """The exchange for this request, or None if it is no LLM call (or an internal error left it unobserved: logged).
    May raise ``CircuitBreakerException``."""
    try:
        if get_current_exchange() is not None:
            return None  # a request() inside ours (a wrapped subclass's that calls the base class's): counted once
        # _llm_route(options, sdk, routes), inlined: every SDK call passes here (a frame fewer per call)
        method = getattr(options, "method", None)
        if method != "post" and (method.__class__ is not str or method.lower() != "post"):
            return None
        path = options.url
        route: _Route | None = routes.get(path, _MISSING)  # type: ignore[arg-type]
        if route is _MISSING:
            route = _route(routes, sdk, path)
        if route is None:
            return None
        endpoint, name = route
        capture_text = client.config.capture_text  # capturing(client), inlined
        body = options.json_data
        in_flight = get_current_llm_call()
        if in_flight is not None:  # a framework's call: add to it, count it once
            if settings.providers.has_registered:
                adopt_registered(in_flight, api_client.base_url, settings.providers)
            if not in_flight.span.provider:  # a framework class that did not say (a user's embedding class): priced
                in_flight.set_model(None, provider=_provider(api_client.base_url, sdk))  # as what the SDK talks to
            if in_flight.monitors_when_sent is not None:  # a local model's call sending a request: checked now
                in_flight.before_sending(_provider(api_client.base_url, sdk))
            in_flight.reserve_request(body)  # hard budget: this body's worst case, before sending
            exchange = Exchange(in_flight, endpoint, False, False, True, capture_text, body)
        else:
            if body.__class__ is dict and endpoint.api != "gemini":
                model = body.get("model") or None
                if model is not None and model.__class__ is not str:
                    model = str(model)
            else:
                model = request_model(endpoint, path, body)
            base = api_client.base_url
            known = _providers.get(id(base))  # _provider(base, sdk) for a client seen before, without its call
            provider = known[1] if known is not None and known[0] is base else _provider(base, sdk)
            call = start_llm_call(name, model=model, provider=provider, kind=endpoint.kind,
                                  input=request_input(body) if capture_text else None,
                                  request_body=body)
            exchange = Exchange(call, endpoint, True, False, True, capture_text, body)
        if endpoint.api == "chat" and body.__class__ is dict and body.get("stream") is True:
            _ask_stream_usage(api_client, options, exchange, client)
        return exchange
    except Exception:
        swallow_internal_error("the SDK layer")  # re-raises a block
        return None


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


def _ask_stream_usage(api_client: Any, options: Any, exchange: Exchange, client: Any) -> None:
    """Decide whether a chat stream (``body["stream"] is True``) is asked for its usage (``_stream_usage``): only
    where the response passes our httpx tap, which hides the answer. Never raises.

    Only decided here: the option is added to the request the SDK builds (``_asking_usage``), never to ``options``.
    That object is the caller's, and so also that of any instrumentation wrapped around ``request()`` inside or
    outside ours (OpenInference's, instrumented before ``init()``, runs inside ours and records the options it is
    given): changed, it would show ``stream_options`` the user never set."""
    try:
        body = options.json_data
        if not wants_usage(client.config.stream_usage, api_client.base_url, body, options.extra_json):
            return
        if not getattr(type(api_client._client).send, "agentwatch_tap", False):
            return  # an HTTP client our tap does not see: the added chunk would reach the user
        headers = options.headers if isinstance(options.headers, Mapping) else {}
        custom = getattr(api_client, "_custom_headers", None) or {}
        if any(name.lower() == "accept-encoding" for name in (*headers, *custom)):
            return  # the user chose an encoding: the tap filters plain bytes only
        exchange.usage_requested = True
    except Exception:
        swallow_internal_error("the SDK layer")


def _asking_usage(options: Any, exchange: Exchange) -> Any:
    """A copy of the options of one attempt, as the SDK is about to build its request, that asks for the stream's
    usage; ``options`` itself is left as it was. Never raises: on an internal error the request goes as the user made
    it, and nothing is filtered from its response."""
    try:
        body = options.json_data
        if body.__class__ is not dict or body.get("stream") is not True:
            return options  # not the chat stream that was decided on (some other request built inside its call)
        if "stream_options" in body:
            return options  # a builder around the base class's (Azure's) asked already, in the copy it passes on
        asked = copy.copy(options)  # shallow, as the SDK's own model_copy: only the two replaced fields differ
        asked.json_data = asked_usage_body(body)
        # The tap filters the SSE bytes as they arrive, before the client decodes them: ask for them plain.
        asked.headers = {**(options.headers if isinstance(options.headers, Mapping) else {}),
                         "Accept-Encoding": "identity"}
        return asked
    except Exception:
        exchange.usage_requested = False
        swallow_internal_error("the SDK layer")
        return options


def _raised(exchange: Exchange, error: BaseException) -> None:
    try:
        exchange.fail(error)
    except Exception:
        swallow_internal_error("the SDK layer")


# Both wrappers declare the SDK's keywords and pass them on by name (``taking_keywords``); other arguments (an older
# SDK's ``remaining_retries``) go through as given.

def _sync_request(sdk: str, original: Callable[..., Any]) -> Callable[..., Any]:
    routes = _routes.setdefault(sdk, {})
    original, defaults = taking_keywords(original, stream=False, stream_cls=None)
    no_stream, no_stream_cls = defaults["stream"], defaults["stream_cls"]

    def request(self: Any, cast_to: Any, options: Any, *args: Any, stream: bool = no_stream,
                stream_cls: Any = no_stream_cls, **kwargs: Any) -> Any:
        client = get_client()
        exchange = _open(self, options, sdk, routes, client) if client is not None else None
        if exchange is None:
            return original(self, cast_to, options, *args, stream=stream, stream_cls=stream_cls, **kwargs)
        token = set_current_exchange(exchange)
        try:
            if args or kwargs:
                result = original(self, cast_to, options, *args, stream=stream, stream_cls=stream_cls, **kwargs)
            else:
                result = original(self, cast_to, options, stream=stream, stream_cls=stream_cls)
        except BaseException as error:
            _raised(exchange, error)
            raise
        finally:
            reset_current_exchange(token)
        exchange.returned(result)
        return result

    return request


def _async_request(sdk: str, original: Callable[..., Any]) -> Callable[..., Any]:
    routes = _routes.setdefault(sdk, {})
    original, defaults = taking_keywords(original, stream=False, stream_cls=None)
    no_stream, no_stream_cls = defaults["stream"], defaults["stream_cls"]

    async def request(self: Any, cast_to: Any, options: Any, *args: Any, stream: bool = no_stream,
                      stream_cls: Any = no_stream_cls, **kwargs: Any) -> Any:
        client = get_client()
        exchange = _open(self, options, sdk, routes, client) if client is not None else None
        if exchange is None:
            return await original(self, cast_to, options, *args, stream=stream, stream_cls=stream_cls, **kwargs)
        token = set_current_exchange(exchange)
        try:
            if args or kwargs:
                result = await original(self, cast_to, options, *args, stream=stream, stream_cls=stream_cls,
                                        **kwargs)
            else:
                result = await original(self, cast_to, options, stream=stream, stream_cls=stream_cls)
        except BaseException as error:
            _raised(exchange, error)
            raise
        finally:
            reset_current_exchange(token)
        exchange.returned(result)
        return result

    return request


def _build_request(sdk: str, original: Callable[..., Any]) -> Callable[..., Any]:
    routes = _routes.setdefault(sdk, {})
    original, defaults = taking_keywords(original, retries_taken=0)
    first_attempt = defaults["retries_taken"]

    def _build_request(self: Any, options: Any, *args: Any, retries_taken: int = first_attempt, **kwargs: Any) -> Any:
        exchange = get_current_exchange()
        if exchange is not None:
            if exchange.usage_requested:  # a chat stream we ask for its usage: a copy asks
                options = _asking_usage(options, exchange)
            if exchange.unanswered > exchange.covered:  # a retry after a read timeout: that prompt was billed
                _cover_unanswered(exchange, options)
        if args or kwargs:
            request = original(self, options, *args, retries_taken=retries_taken, **kwargs)
        else:  # the SDK's own call: no argument tuple and keyword dict to build again
            request = original(self, options, retries_taken=retries_taken)
        if exchange is not None:  # the usual case: built inside our request(), which has its call
            exchange.request = request  # what the tap is about to send for it (Azure's builder wraps the base's: its)
        else:
            _open_built(self, options, request, sdk, routes)
        return request

    return _build_request


def _cover_unanswered(exchange: Exchange, options: Any) -> None:
    """``Exchange.cover_unanswered``, inside the SDK's retry loop but outside its error handling: a block is neither
    retried nor wrapped. Other errors are logged."""
    try:
        if exchange.call.hard_budget:
            exchange.cover_unanswered(options.json_data)
    except Exception:
        swallow_internal_error("the SDK layer")  # re-raises a block


def _open_built(api_client: Any, options: Any, request: Any, sdk: str, routes: dict[str, _Route | None]) -> None:
    """An LLM request built outside our ``request()`` (see the module's docstring): open its call and check the
    limits now, where the SDK's error handling does not reach (a block raised from the transport would be retried
    and then raised as a connection error). May raise ``CircuitBreakerException``; other errors are logged."""
    try:
        client = get_client()
        if client is None:
            return
        built = get_built_request()
        if built is not None:
            if built[0] is request:  # a subclass's _build_request around the base class's: opened once
                return
            set_built_request(None)  # an earlier one that was never sent (something raised before the send)
            built[1].end("the request was not sent")
        route = _llm_route(options, sdk, routes)
        if route is None:
            return
        if get_current_llm_call() is not None:
            return  # a framework's call: the tap adds this request to it
        if not getattr(type(api_client._client).send, "agentwatch_tap", False):
            return  # an HTTP client our tap does not see: nothing would end the call
        endpoint, name = route
        body = options.json_data
        if not isinstance(body, dict):
            body = parse_json(request.content)
        call = start_llm_call(name, model=request_model(endpoint, options.url, body),
                              provider=_provider(api_client.base_url, sdk), kind=endpoint.kind,
                              input=request_input(body) if client.config.capture_text else None, request_body=body)
        exchange = Exchange(call, endpoint, owned=True, ends_with_body=True, capture_text=client.config.capture_text,
                            request_body=body)
        set_built_request((request, exchange))
    except Exception:
        swallow_internal_error("the SDK layer")  # re-raises a block
