"""The blocking layer: every ``ChatCompletionClient.create`` / ``create_stream`` opens an LLM call first.

The call is checked against every enclosing limit before the client sends anything, and it is the
current LLM call while the client works, so autogen-core's event logger (``_events``) and an HTTP-level
tap below add to it instead of counting it again. What the events do not say (a client that logs none)
comes from the ``CreateResult``.

A client that wraps another watched one (``ChatCompletionCache(client, store)``: the inner client is its
``client``) opens no call of its own: what it sends, it sends through the inner client, which counts it as its
model. What it answers without the inner client and marks ``cached`` (a cache hit) is recorded as a ``cache_hit``
span costing $0 that no limit counts or blocks: nothing was sent.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, Callable
from contextvars import ContextVar
from typing import Any

from agentwatch import CircuitBreakerException
from agentwatch.instrumentation import (
    LLMCall,
    capturing,
    estimate_text_bytes,
    estimate_tokens,
    get_client,
    get_current_llm_call,
    logger,
    provider_for_url,
    start_llm_call,
    stop_on_exception,
)

from ._blocked import note_blocked, raise_blocked
from ._patching import ORIGINAL

__all__ = ["wrap_create", "wrap_create_stream", "watch", "unwatch", "is_watched"]

_WATCHED = "_agentwatch_watched"
#: On a client ``watch`` was given: the inner client it watched too (a wrapper's), which ``unwatch`` unwatches.
_WATCHED_INNER = "_agentwatch_watched_inner"
#: A span attribute: the answer came from a cache (nothing sent, nothing spent, no limit counts it).
CACHE_HIT = "cache_hit"
_OPENAI_BASES = ("BaseOpenAIChatCompletionClient",)


# ---- what the client is ---------------------------------------------------------------------------


def _configured(model_client: Any, key: str) -> Any:
    for attribute in ("_create_args", "_raw_config"):
        settings = getattr(model_client, attribute, None)
        if isinstance(settings, dict) and settings.get(key) is not None:
            return settings[key]
    return None


def _model(model_client: Any) -> str | None:
    model = _configured(model_client, "model")
    if model is None:
        model = getattr(model_client, "model", None)
    return model if isinstance(model, str) and model else None


@functools.lru_cache(maxsize=256)
def _is_openai_class(kind: type) -> bool:
    return any(base.__name__ in _OPENAI_BASES for base in kind.__mro__)


@functools.lru_cache(maxsize=256)
def _provider_of(kind: type) -> str | None:
    """The provider a client class speaks to by default (its wire format for an OpenAI client)."""
    name, module = kind.__name__.lower(), kind.__module__.lower()
    if "azure" in name:
        return "azure"
    if "anthropic" in name or "anthropic" in module:
        return "anthropic"
    if "ollama" in name or "ollama" in module:
        return "ollama"
    if _is_openai_class(kind):
        return "openai"
    return None


def _provider(model_client: Any) -> str | None:
    """The provider for pricing: the core rule on the client's base URL (``init(providers=...)``, known
    hosts), else the one its class speaks to; None lets the price table go by the model name alone."""
    base_url = _configured(model_client, "base_url")
    cls: type = type(model_client)
    return provider_for_url(None if base_url is None else str(base_url), _provider_of(cls))


def _dump_messages(messages: Any) -> Any:
    try:
        return [m.model_dump(mode="json") if hasattr(m, "model_dump") else str(m) for m in messages]
    except TypeError:
        return str(messages)


# ---- a client wrapping another (ChatCompletionCache) ---------------------------------------------------


class _Delegation:
    """One call of a wrapping client in flight: whether it reached a watched inner client."""

    __slots__ = ("reached",)

    def __init__(self) -> None:
        self.reached = False


_DELEGATION: ContextVar[_Delegation | None] = ContextVar("agentwatch_autogen_delegation", default=None)


def _note_reached() -> None:
    """Tell the wrapping client above (if any) that this call reached a watched client below it."""
    delegation = _DELEGATION.get()
    if delegation is not None:
        delegation.reached = True


def _watched_inner(model_client: Any) -> Any:
    """The watched client this one wraps (``ChatCompletionCache.client``), or None."""
    inner = getattr(model_client, "__dict__", {}).get("client")
    if inner is None or inner is model_client:
        return None
    if not _is_model_client(inner):
        return None
    if is_watched(inner) or hasattr(getattr(type(inner), "create", None), ORIGINAL):
        return inner
    return None


@stop_on_exception
def _record_cache_hit(model_client: Any, inner: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                      result: Any, streaming: bool) -> None:
    """A wrapper answered without its inner client, from its cache: a span of the inner client's model that costs
    $0 and is checked against and counted by no limit (nothing was sent)."""
    client = get_client()
    if client is None:
        return
    messages = args[0] if args else kwargs.get("messages")
    call = start_llm_call(
        type(model_client).__name__, model=_model(inner), provider=_provider(inner),
        input=_dump_messages(messages) if capturing(client) and messages is not None else None,
        attributes={"framework": "autogen", "streaming": streaming, CACHE_HIT: True}, check=False,
    )
    content = getattr(result, "content", None)
    call.set_output(content if isinstance(content, str) else _dump_messages(content or []))
    call.end(finish_reason=getattr(result, "finish_reason", None))


async def _delegate(original: Callable[..., Any], model_client: Any, inner: Any, args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
    delegation = _Delegation()
    token = _DELEGATION.set(delegation)
    try:
        result = await original(model_client, *args, **kwargs)
    finally:
        _DELEGATION.reset(token)
    if not delegation.reached and getattr(result, "cached", False) is True:
        _record_cache_hit(model_client, inner, args, kwargs, result, False)
    return result


async def _delegate_stream(original: Callable[..., Any], model_client: Any, inner: Any, args: tuple[Any, ...],
                           kwargs: dict[str, Any]) -> AsyncGenerator[Any, None]:
    delegation = _Delegation()
    token = _DELEGATION.set(delegation)
    try:
        stream = original(model_client, *args, **kwargs)
    finally:
        _DELEGATION.reset(token)
    result: Any = None
    try:
        while True:
            token = _DELEGATION.set(delegation)  # only while the wrapper's own code runs, not in the caller's
            try:
                item = await stream.__anext__()
            except StopAsyncIteration:
                break
            finally:
                _DELEGATION.reset(token)
            if hasattr(item, "finish_reason"):
                result = item
            yield item
    finally:
        await stream.aclose()
    if not delegation.reached and getattr(result, "cached", False) is True:
        _record_cache_hit(model_client, inner, args, kwargs, result, True)


# ---- one call ---------------------------------------------------------------------------------------


def _counted_above() -> bool:
    """A layer above (another wrapper of this client, a manual ``llm_call``) has this call in flight.

    An ended call is no call: whatever a context leaks (or ``get_current_llm_call()`` returns for it), a
    finished call must not exempt the next one from its check."""
    call = get_current_llm_call()
    return call is not None and not call.ended


@stop_on_exception
def _begin(model_client: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
           streaming: bool) -> LLMCall | None:
    client = get_client()
    if client is None:
        return None
    messages = args[0] if args else kwargs.get("messages")
    call = start_llm_call(
        type(model_client).__name__, model=_model(model_client), provider=_provider(model_client),
        input=_dump_messages(messages) if capturing(client) and messages is not None else None,
        attributes={"framework": "autogen", "streaming": streaming},
    )
    if call.hard_budget:  # only a hard budget's top-up refuses a call below this layer
        call.raise_refusal_as(_noted)
    return call


def _noted(blocked: CircuitBreakerException) -> CircuitBreakerException:
    """A hard budget's refusal below AutoGen, as a block here is: noted for the team run (``_blocked``).

    The HTTP layer inside the provider SDK reserves the request body's worst case after this layer admitted the
    call, and may be refused there. A team's runtime turns whatever its agent raised into AgentChat's
    ``RuntimeError``; only a noted block is given back to the team's caller as the ``CircuitBreakerException``
    (with ``.monitor``) and ends the team span blocked. Nothing was sent, and the block is raised unchanged."""
    note_blocked(blocked)
    return blocked


def _usage_from_result(call: LLMCall, result: Any) -> None:
    span = call.span
    usage = getattr(result, "usage", None)
    if usage is not None and not (span.input_tokens or span.output_tokens):
        call.set_usage(input_tokens=getattr(usage, "prompt_tokens", None),
                       output_tokens=getattr(usage, "completion_tokens", None))


@stop_on_exception
def _finish(call: LLMCall, result: Any, error: BaseException | None, messages: Any = None,
            streamed: int = 0) -> None:
    """End the call with what the client returned (``result``) or raised. A stream the caller stopped reading (or whose
    task was cancelled), ``streamed`` characters of text in: charged from an estimate of the prompt and that text if
    no usage came (AutoGen leaves the provider's stream open then, so the HTTP layer's own estimate would come late)."""
    if error is not None:
        if isinstance(error, GeneratorExit | asyncio.CancelledError):
            call.set_attribute("cancelled", True)
            span = call.span
            if messages is not None and not (span.input_tokens or span.output_tokens):
                call.set_attribute("stream_incomplete", True)
                call.estimate_usage(_prompt_tokens(messages), estimate_text_bytes(streamed))
            call.end()
        else:
            call.end(error=error)
        return
    if getattr(result, "cached", False) is True:  # answered from a cache: its usage is the original call's
        call.set_attribute(CACHE_HIT, True)
    else:
        _usage_from_result(call, result)
    content = getattr(result, "content", None)
    if isinstance(content, list):
        names = [getattr(item, "name", None) for item in content]
        call.set_attribute("tool_calls", [name for name in names if name])
    call.set_output(content if isinstance(content, str) else _dump_messages(content or []))
    # The provider's own finish reason (from the event) is more precise than AutoGen's normalised one.
    provider_reason = call.span.attributes.get("finish_reason")
    call.end(finish_reason=provider_reason or getattr(result, "finish_reason", None))


def _prompt_tokens(messages: Any) -> int:
    """Tokens of AutoGen ``LLMMessage`` contents (text, or a list of parts), estimated."""
    tokens = 0
    for message in messages if isinstance(messages, list | tuple) else ():
        content = getattr(message, "content", None)
        for part in content if isinstance(content, list) else (content,):
            tokens += estimate_tokens(part if isinstance(part, str) else str(part or ""))
    return tokens


async def _create(original: Callable[..., Any], model_client: Any, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> Any:
    if get_client() is None:
        return await original(model_client, *args, **kwargs)
    _note_reached()
    if _counted_above():
        return await original(model_client, *args, **kwargs)
    inner = _watched_inner(model_client)
    if inner is not None:
        return await _delegate(original, model_client, inner, args, kwargs)
    try:
        call = _begin(model_client, args, kwargs, False)
    except CircuitBreakerException as blocked:
        await raise_blocked(blocked)
    if call is None:
        return await original(model_client, *args, **kwargs)
    call.activate()
    try:
        result = await original(model_client, *args, **kwargs)
    except BaseException as error:
        call.deactivate()
        _finish(call, None, error)
        raise
    call.deactivate()
    _finish(call, result, None)
    return result


async def _stream(original: Callable[..., Any], model_client: Any, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> AsyncGenerator[Any, None]:
    try:
        call = _begin(model_client, args, kwargs, True)
    except CircuitBreakerException as blocked:
        await raise_blocked(blocked)  # nothing sent
    if call is None:
        async for item in original(model_client, *args, **kwargs):
            yield item
        return
    call.activate()  # an inner wrapper of the same client sees the call in flight when it is made
    try:
        inner = original(model_client, *args, **kwargs)
    finally:
        call.deactivate()
    result: Any = None
    error: BaseException | None = None
    streamed = 0
    try:
        while True:
            call.activate()
            try:
                item = await inner.__anext__()
            except StopAsyncIteration:
                break
            finally:
                call.deactivate()
            if isinstance(item, str):
                call.mark_first_token()
                streamed += len(item)
            elif hasattr(item, "finish_reason"):
                result = item
            yield item
    except BaseException as raised:
        error = raised
        raise
    finally:
        try:
            await inner.aclose()
        finally:
            _finish(call, result, error, args[0] if args else kwargs.get("messages"), streamed)


def _create_stream(original: Callable[..., Any], model_client: Any, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> Any:
    if get_client() is None:
        return original(model_client, *args, **kwargs)
    _note_reached()
    if _counted_above():
        return original(model_client, *args, **kwargs)
    inner = _watched_inner(model_client)
    if inner is not None:
        return _delegate_stream(original, model_client, inner, args, kwargs)
    # A stream's usage is the HTTP layer's business (``init(stream_usage=...)``): it asks where asked to and
    # hides the usage chunk, so the client streams exactly what it would without AgentWatch.
    return _stream(original, model_client, args, kwargs)


# ---- class-level (zero-config) and instance-level (explicit) wrapping -------------------------------


def wrap_create(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await _create(original, self, args, kwargs)

    return create


def wrap_create_stream(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def create_stream(self: Any, *args: Any, **kwargs: Any) -> Any:
        return _create_stream(original, self, args, kwargs)

    return create_stream


def is_watched(model_client: Any) -> bool:
    return bool(getattr(model_client, "__dict__", {}).get(_WATCHED))


def watch(model_client: Any) -> Any:
    """Watch this model client explicitly and return it (the same object).

    For clients that zero-config does not reach (the ``autogen`` plugin disabled, ``auto_instrument``
    off, a duck-typed client that is no ``ChatCompletionClient``). Idempotent, and never counted twice
    with zero-config: the outer layer records the call, the inner one sees it in flight. Inert while
    AgentWatch is not running; ``unwatch`` removes it.
    """
    state = getattr(model_client, "__dict__", None)
    if state is None:
        logger.warning("agentwatch: cannot watch %r (no instance dictionary)", type(model_client).__name__)
        return model_client
    if state.get(_WATCHED):
        return model_client
    kind = type(model_client)

    async def create(*args: Any, **kwargs: Any) -> Any:
        return await _create(kind.create, model_client, args, kwargs)

    def create_stream(*args: Any, **kwargs: Any) -> Any:
        return _create_stream(kind.create_stream, model_client, args, kwargs)

    state["create"] = create
    if callable(getattr(kind, "create_stream", None)):
        state["create_stream"] = create_stream
    state[_WATCHED] = True
    inner = state.get("client")
    if inner is not None and inner is not model_client and not is_watched(inner) and _is_model_client(inner):
        # A wrapper (ChatCompletionCache) sends through its inner client: that one counts what is sent.
        watch(inner)
        state[_WATCHED_INNER] = inner
    return model_client


def _is_model_client(candidate: Any) -> bool:
    from autogen_core.models import ChatCompletionClient

    return isinstance(candidate, ChatCompletionClient)


def unwatch(model_client: Any) -> Any:
    """Undo ``watch(model_client)``; returns the client."""
    state = getattr(model_client, "__dict__", None)
    if state is not None and state.pop(_WATCHED, False):
        state.pop("create", None)
        state.pop("create_stream", None)
        inner = state.pop(_WATCHED_INNER, None)
        if inner is not None:
            unwatch(inner)
    return model_client
