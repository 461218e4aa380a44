"""The patches: LiteLLM's module functions, its stream wrapper's iteration, and the Router's endpoints.

Why the module functions: every LiteLLM entry (direct calls, and each Router attempt, which the Router
looks up as ``getattr(litellm, op)`` per attempt) passes ``litellm.completion``/``acompletion``/... Limits
are checked there, before LiteLLM's own ``@client`` wrapper, so a block is raised before any request and
outside LiteLLM's retry loop and exception mapping: it reaches the caller unchanged and is never retried.
LiteLLM's internal calls (``acompletion`` runs ``litellm.main.completion``, ``text_completion`` runs the
chat path) use the unpatched functions, so one user call is one span.

The call is active while LiteLLM sends, so the HTTP layer (openai SDK, httpx) adds to it instead of
counting the request again. A Router checks the limits once more before its first attempt, so a block
is raised before the Router starts retrying or falling back.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Callable
from contextvars import ContextVar, Token
from types import ModuleType
from typing import Any

from agentwatch.instrumentation import (
    BlockCarrier,
    CircuitBreakerException,
    LLMCall,
    check_limits,
    defer,
    get_client,
    get_current_llm_call,
    record_blocked,
    start_llm_call,
    swallow_internal_error,
)
from agentwatch.plugins.http._patching import Patcher

from ._usage import litellm_price, read_responses_stream, read_stream, read_usage

__all__ = ["install", "uninstall"]

#: The module functions patched, and the span kind of each.
_FUNCTIONS = {"completion": "llm", "acompletion": "llm", "text_completion": "llm", "atext_completion": "llm",
              "responses": "llm", "aresponses": "llm", "embedding": "embedding", "aembedding": "embedding"}
_ROUTER_ENDPOINTS = ("completion", "acompletion", "text_completion", "atext_completion", "embedding",
                     "aembedding")
#: Where a stream keeps its call (an instance attribute the user never sees in iteration or repr).
_STREAM_CALL = "_agentwatch_call"

_patcher = Patcher()
_providers: dict[str, str | None] = {}
_stream_type: type | None = None  # LiteLLM's CustomStreamWrapper, set by install()
#: The streams ``litellm.responses(stream=True)`` returns (sync and async), set by install().
_responses_stream_types: tuple[type, ...] = ()
#: Inside a Router call: the block raised in one of its attempts (a limit crossed after the Router's own
#: check, e.g. by a failed first attempt). The Router retries and falls back on any exception; its later
#: attempts raise the same block again, without another blocked span or ``on_block``.
_ROUTER_BLOCK: ContextVar[list[CircuitBreakerException] | None] = ContextVar("agentwatch_litellm_router",
                                                                                 default=None)
#: The call one of the patched module functions opened (``litellm.completion`` called after ``init()``), while it runs.
#: LiteLLM's ``@client`` wrapper sits between that function and the one it calls (``_wrap_inside``) and re-runs the
#: whole attempt for ``num_retries`` on an error: a hard budget's refusal met below (the HTTP layer's ``top_up``) is
#: carried past it as a ``BlockCarrier`` from inside, and raised to the caller as the block by the function outside.
_OPENED: ContextVar[LLMCall | None] = ContextVar("agentwatch_litellm_opened", default=None)


def install(when_imported: Callable[[str, Callable[[ModuleType], None]], None] | None = None) -> None:
    """Patch LiteLLM; the Router's endpoints once its core is imported (``when_imported``, the client's), where the
    Router loads it on first use, or now (no ``when_imported``, or a Router that holds its endpoints itself)."""
    import litellm
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

    global _stream_type, _responses_stream_types
    _stream_type = CustomStreamWrapper
    _responses_stream_types = _responses_streams()
    for name, kind in _FUNCTIONS.items():
        make = _async_function if name.startswith("a") else _sync_function
        _wrap_inside(getattr(litellm, name), make, name, kind)
        _patcher.replace(litellm, name, lambda original, name=name, kind=kind, make=make: make(original, name, kind))
    for name, retries in (("completion_with_retries", _sync_retries), ("acompletion_with_retries", _async_retries)):
        if hasattr(litellm, name):
            _patcher.replace(litellm, name, retries)
    for stream_type in (CustomStreamWrapper, *_responses_stream_types):
        for name, patch in (("__next__", _stream_next), ("__anext__", _stream_anext), ("close", _stream_close),
                            ("aclose", _stream_aclose)):
            if name in vars(stream_type) or stream_type is CustomStreamWrapper:
                _patcher.replace(stream_type, name, patch)
        if hasattr(stream_type, "__del__"):  # LiteLLM's own (recent versions restore a context there)
            _patcher.replace(stream_type, "__del__", _stream_del)
        else:
            setattr(stream_type, "__del__", _stream_dropped)  # noqa: B010  # a finaliser for the class
            _finalised.append(stream_type)
    router = getattr(litellm, "Router", None)
    if router is None:
        return
    core = _deferred_router_core(router)
    if core is not None and when_imported is not None:
        when_imported(core, lambda _module: _patch_router(router))
    else:
        _patch_router(router)


#: The module that recent LiteLLMs load the Router's members from when a Router is first used (``litellm.router``'s
#: ``_core_class``): ~110 ms of imports, which reading an endpoint off the class to patch it set off in ``init()``.
_ROUTER_CORE = "litellm.router_rust.core"


def _deferred_router_core(router: type) -> str | None:
    """``_ROUTER_CORE`` if ``router`` loads its members from it on first use and it is not imported yet, else None."""
    if _ROUTER_CORE in sys.modules or not hasattr(sys.modules.get(router.__module__), "_core_class"):
        return None
    try:
        found = importlib.util.find_spec(_ROUTER_CORE)  # imports only its package, which imports nothing
    except (ImportError, ValueError):
        return None
    return _ROUTER_CORE if found is not None else None


def _patch_router(router: type) -> None:
    for name in _ROUTER_ENDPOINTS:
        try:
            wrap = _async_endpoint if name.startswith("a") else _sync_endpoint
            _patcher.replace(router, name, lambda original, name=name, wrap=wrap: wrap(original, name))
        except AttributeError:  # an endpoint this LiteLLM version lacks
            continue


def uninstall() -> None:
    _patcher.restore()
    while _inside:
        cell, inner = _inside.pop()
        cell.cell_contents = inner
    while _finalised:
        delattr(_finalised.pop(), "__del__")


#: The stream classes given a ``__del__`` (``_stream_dropped``) by ``install``, where they had none.
_finalised: list[type] = []


def _responses_streams() -> tuple[type, ...]:
    try:
        from litellm.responses.streaming_iterator import (
            ResponsesAPIStreamingIterator,
            SyncResponsesAPIStreamingIterator,
        )
    except ImportError:  # a LiteLLM without them: its Responses streams are ended by the HTTP layer's reading alone
        return ()
    return SyncResponsesAPIStreamingIterator, ResponsesAPIStreamingIterator


#: The closure cells of LiteLLM's ``@client`` wrappers that hold the function each calls, and that function.
_inside: list[tuple[Any, Callable[..., Any]]] = []


def _wrap_inside(decorated: Any, make: Callable[..., Callable[..., Any]], name: str, kind: str) -> None:
    """Wrap, too, the function that LiteLLM's ``@client`` wrapper of ``decorated`` calls (in the wrapper's closure).

    A program that imported the function before ``init()`` (``from litellm import completion`` at the top of a
    module, as LiteLLM's own examples do) holds the decorated function itself, which replacing the module's attribute
    never reaches: its calls went unchecked, and a block raised lower down (the openai SDK layer) came back as
    LiteLLM's ``InternalServerError`` and was retried. Reached here, inside ``@client`` and before the provider's
    handler, a block is re-raised by LiteLLM unchanged and not retried. A call through the module's attribute is
    already open (and active) by then, so this one adds nothing (``_open``)."""
    for _ in range(3):  # LiteLLM's public function may sit in front of it (its chat and embedding dispatch)
        code = getattr(decorated, "__code__", None)
        closure = getattr(decorated, "__closure__", None)
        inner = getattr(decorated, "__wrapped__", None)
        if inner is None:
            return
        if code is not None and closure and "original_function" in code.co_freevars:
            cell = closure[code.co_freevars.index("original_function")]
            if cell.cell_contents is inner:  # the function it wraps, not already ours (init() again)
                cell.cell_contents = make(inner, name, kind)
                _inside.append((cell, inner))
            return
        decorated = inner
    # Not the @client wrapper this was written against: the module's attribute alone is wrapped.


# ---- opening and closing a call -------------------------------------------------------------------


def _provider(model: str) -> str | None:
    """The provider as LiteLLM names it (``anthropic/claude-…`` → ``anthropic``), once per model name."""
    if model in _providers:
        return _providers[model]
    try:
        from litellm import get_llm_provider

        provider: str | None = get_llm_provider(model)[1] or None
    except Exception:  # a model LiteLLM cannot route: it will say so itself when called
        provider = None
    if len(_providers) > 1024:
        _providers.clear()
    _providers[model] = provider
    return provider


def _open(name: str, kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> LLMCall | None:
    """Check the limits and open the call; None if a call is already in flight (it gets the request)."""
    try:
        if get_current_llm_call() is not None:  # a framework on top of LiteLLM opened it
            return None
        responses = name.endswith("responses")  # responses(input, model, ...): the input comes first
        model = kwargs.get("model") or (args[int(responses)] if len(args) > int(responses) else None)
        model = str(model) if model else None
        provider = kwargs.get("custom_llm_provider") or (_provider(model) if model else None)
        messages = kwargs.get("messages") if kind == "llm" and not responses else kwargs.get("input")
        if messages is None:
            messages = kwargs.get("prompt") or (args[0] if responses and args else None)
        router_block = _ROUTER_BLOCK.get()
        if router_block:
            raise BlockCarrier(router_block[0])
        try:
            call = start_llm_call(f"litellm.{name}", model=model, provider=provider, kind=kind, input=messages,
                                  attributes={"framework": "litellm"})
        except CircuitBreakerException as blocked:
            if router_block is not None:
                router_block.append(blocked)
                raise BlockCarrier(blocked) from None  # out of the Router's retries (no backoff), to its caller
            raise
        call.set_fallback_price(litellm_price, "litellm")
        return call
    except Exception:
        swallow_internal_error("the litellm plugin")  # re-raises CircuitBreakerException
        return None


def _returned(call: LLMCall, result: Any) -> None:
    try:
        stream = _stream_of(result)
        if stream is not None:  # ends when the stream does
            stream.__dict__[_STREAM_CALL] = call
            return
        finish_reason = read_usage(call, result)
        call.end(finish_reason=finish_reason)
    except Exception:
        swallow_internal_error("the litellm plugin")


# LiteLLM's ``@client`` wrapper retries a failed call through these (``num_retries``): for ``acompletion`` whatever the
# error, a block too. The retries of an attempt that a block refused are not started, nor are any while a limit
# blocks: the caller gets the block, recorded and handed to ``on_block`` once.

def _sync_retries(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def retries(*args: Any, **kwargs: Any) -> Any:
        if get_client() is not None:
            _refuse_retries(kwargs)
        return original(*args, **kwargs)

    return retries


def _async_retries(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def retries(*args: Any, **kwargs: Any) -> Any:
        if get_client() is not None:
            _refuse_retries(kwargs)
        return await original(*args, **kwargs)

    return retries


def _refuse_retries(kwargs: dict[str, Any]) -> None:
    """Raise the block that refused the attempt LiteLLM is about to retry (its wrapper calls the retries while handling
    that attempt's error), else any block a limit would raise now. A function imported before ``init()`` opens its call
    inside the wrapper, so a hard budget's refusal of it (met by the HTTP layer: ``check_limits`` passes, the budget is
    not spent) reaches the wrapper as the block, which ``acompletion`` retries whatever it is: every attempt refused
    again, a blocked span and an ``on_block`` each. Only LiteLLM's wrapper hands the retries the attempt's own
    ``litellm_logging_obj``: a program calling them itself while it handles an older block is not refused by that."""
    failed = sys.exc_info()[1]
    if isinstance(failed, CircuitBreakerException) and "litellm_logging_obj" in kwargs:
        raise failed
    check_limits(scopes=())  # a boundary: the retry itself is checked (and counted) when sent


#: What a module function of ours that opened no call of its own (one was in flight) holds while it runs: the call it
#: joined, and the token to reset ``_OPENED`` with if it set it (it is the outermost function of ours), else None.
_Joined = tuple[LLMCall | None, Token[LLMCall | None] | None]


def _join() -> _Joined:
    """A module function of ours runs within a call it did not open: its own (the module's attribute outside LiteLLM's
    ``@client`` wrapper opened it, ``_OPENED``) or a framework's (CrewAI's ``LLM``, an Agents SDK ``LitellmModel``).
    The outermost function of ours marks the framework's call as ``_OPENED`` for the one inside the wrapper."""
    opened = _OPENED.get()
    if opened is not None:
        return opened, None
    framework = get_current_llm_call()
    return framework, (_OPENED.set(framework) if framework is not None else None)


def _leave(joined: _Joined) -> None:
    if joined[1] is not None:
        _OPENED.reset(joined[1])


def _raise_carried(joined: _Joined, leaving: BlockCarrier) -> None:
    """The outermost function of ours raises the block carried past LiteLLM's wrapper (``_carry_refusal``)."""
    if joined[1] is not None:
        _raise_refusal(leaving.blocked)


def _carry_refusal(joined: _Joined, error: BaseException) -> None:
    """A refusal of the call this function joined, met below (``error`` is it, or LiteLLM's error mapped from it:
    ``InternalServerError``), is raised as the block. Inside LiteLLM's ``@client`` wrapper (a function of ours outside
    it) it leaves as a ``BlockCarrier``, which the wrapper's ``except Exception`` does not catch; else the wrapper
    would retry the refused attempt ``num_retries`` times (each refused again: ``on_block`` and LiteLLM's loggers once
    per attempt). A framework's call is refused so by a hard budget whose top-up (the HTTP layer) fails: the framework
    gets its block (CrewAI's ``HookAborted`` one), not a LiteLLM error it would retry or report as a provider's."""
    call, token = joined
    if call is None:
        return
    block = call.refusal(error)
    if block is None or block is error:
        return
    if token is None:
        raise BlockCarrier(block) from None
    _raise_refusal(block)


def _raise_block_below(call: LLMCall, error: BaseException) -> None:
    """Raise the block that ``error`` wraps, if it does: a hard budget's top-up refused by the HTTP layer inside
    LiteLLM's provider handler comes out of LiteLLM's exception mapping as its own error (``InternalServerError``), with
    the block as its context, or as the ``BlockCarrier`` of ``_carry_refusal``. The caller gets the block, as from any
    other layer; a Router's later attempts raise it too."""
    block = error.blocked if isinstance(error, BlockCarrier) else call.refusal(error)
    if block is None or block is error:
        return
    call.end(error=block)
    _raise_refusal(block)


def _raise_refusal(block: CircuitBreakerException) -> None:
    router_block = _ROUTER_BLOCK.get()
    if router_block is not None:
        if not router_block:
            router_block.append(block)
        raise BlockCarrier(block) from None  # out of the Router's retries (no backoff), to its caller
    raise block from None


def _stream_of(result: Any) -> Any:
    stream_type = _stream_type
    if stream_type is None or isinstance(result, stream_type):
        return result if stream_type is not None else None
    if isinstance(result, _responses_stream_types):
        return result
    inner = getattr(result, "completion_stream", None)  # text_completion's wrapper around a chat stream
    return inner if isinstance(inner, stream_type) else None


# ``functools.wraps`` on both: LiteLLM's ``@client`` wrapper tells the kind of call (and so what it logs and hands its
# callbacks) by the ``__name__`` of the function it wraps, which ``_wrap_inside`` makes ours.

def _sync_function(original: Callable[..., Any], name: str, kind: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def function(*args: Any, **kwargs: Any) -> Any:
        if get_client() is None:
            return original(*args, **kwargs)
        call = _open(name, kind, args, kwargs)
        if call is None:
            joined = _join()
            try:
                return original(*args, **kwargs)
            except BlockCarrier as leaving:
                _raise_carried(joined, leaving)
                raise
            except Exception as error:
                _carry_refusal(joined, error)
                raise
            finally:
                _leave(joined)
        call.activate()
        opened = _OPENED.set(call)
        try:
            result = original(*args, **kwargs)
        except BaseException as error:
            call.deactivate()
            _raise_block_below(call, error)
            call.end(error=error)
            raise
        finally:
            _OPENED.reset(opened)
        call.deactivate()
        _returned(call, result)
        return result

    return function


def _async_function(original: Callable[..., Any], name: str, kind: str) -> Callable[..., Any]:
    @functools.wraps(original)
    async def function(*args: Any, **kwargs: Any) -> Any:
        if get_client() is None:
            return await original(*args, **kwargs)
        call = _open(name, kind, args, kwargs)
        if call is None:
            joined = _join()
            try:
                return await original(*args, **kwargs)
            except BlockCarrier as leaving:
                _raise_carried(joined, leaving)
                raise
            except Exception as error:
                _carry_refusal(joined, error)
                raise
            finally:
                _leave(joined)
        call.activate()
        opened = _OPENED.set(call)
        try:
            result = await original(*args, **kwargs)
        except BaseException as error:
            call.deactivate()
            _raise_block_below(call, error)
            call.end(error=error)
            raise
        finally:
            _OPENED.reset(opened)
        call.deactivate()
        _returned(call, result)
        return result

    return function


# ---- streams ---------------------------------------------------------------------------------------


def _stream_ended(call: LLMCall, stream: Any, error: BaseException | None = None) -> None:
    call.end(error=error, finish_reason=_stream_read(call, stream) if error is None else None)


def _stream_read(call: LLMCall, stream: Any) -> str | None:
    """What ``stream`` streamed, read onto ``call`` (usage, model); its finish reason. Never raises."""
    try:
        if isinstance(stream, _responses_stream_types):
            return read_responses_stream(call, stream)
        return read_stream(call, stream)
    except Exception:
        swallow_internal_error("the litellm plugin")
        return None


def _unfinished_call(stream: Any) -> LLMCall | None:
    """The open call of a stream closed or dropped; incomplete unless LiteLLM had handed out its last chunk
    (``sent_last_chunk``, set with the ``finish_reason`` chunk; LiteLLM also closes a stream itself at its end, just
    before the ``StopIteration``)."""
    call = stream.__dict__.get(_STREAM_CALL)
    if call is None or call.ended:
        return None
    # A Responses stream has its last event once it holds the completed response.
    if getattr(stream, "sent_last_chunk", None) is not True and getattr(stream, "completed_response", None) is None:
        call.set_attribute("stream_incomplete", True)
    return call


def _stream_next(original: Callable[..., Any]) -> Callable[..., Any]:
    def __next__(self: Any) -> Any:
        call = self.__dict__.get(_STREAM_CALL)
        if call is None or call.ended:
            return original(self)
        # Active while LiteLLM reads: a provider that sends the request on the first chunk joins the call.
        call.activate()
        try:
            chunk = original(self)
        except StopIteration:
            call.deactivate()
            _stream_ended(call, self)
            raise
        except BaseException as error:
            call.deactivate()
            _stream_ended(call, self, error)
            raise
        call.deactivate()
        call.mark_first_token()
        return chunk

    return __next__


def _stream_anext(original: Callable[..., Any]) -> Callable[..., Any]:
    async def __anext__(self: Any) -> Any:
        call = self.__dict__.get(_STREAM_CALL)
        if call is None or call.ended:
            return await original(self)
        call.activate()
        try:
            chunk = await original(self)
        except StopAsyncIteration:
            call.deactivate()
            _stream_ended(call, self)
            raise
        except BaseException as error:
            call.deactivate()
            _stream_ended(call, self, error)
            raise
        call.deactivate()
        call.mark_first_token()
        return chunk

    return __anext__


def _closing(stream: Any) -> None:
    """Closed (a ``break`` then ``close()``): end the call with what was streamed so far."""
    try:
        call = _unfinished_call(stream)
        if call is not None:
            _stream_ended(call, stream)
    except Exception:
        swallow_internal_error("the litellm plugin")


def _stream_dropped(self: Any) -> None:
    """``CustomStreamWrapper.__del__``: a stream left unfinished without ``close()`` (a ``break`` out of its loop) is
    charged once it is dropped, as ``close()`` charges it; else its call never ended (nothing charged, and a hard
    budget's reservation held for the rest of the hour). What it streamed is read now; the call is ended at the next
    safe point (``defer``): a dropped stream is cyclic garbage, finalised by the collector at any allocation, perhaps
    while this thread holds the lock that ending a call takes."""
    try:
        call = _unfinished_call(self)
        if call is not None:
            defer(functools.partial(call.end, finish_reason=_stream_read(call, self)))
    except Exception:
        swallow_internal_error("the litellm plugin")


def _stream_del(original: Callable[..., Any]) -> Callable[..., Any]:
    def __del__(self: Any) -> None:
        _stream_dropped(self)
        original(self)

    return __del__


def _stream_close(original: Callable[..., Any]) -> Callable[..., Any]:
    def close(self: Any) -> Any:
        try:
            return original(self)
        finally:
            _closing(self)

    return close


def _stream_aclose(original: Callable[..., Any]) -> Callable[..., Any]:
    async def aclose(self: Any) -> Any:
        try:
            return await original(self)
        finally:
            _closing(self)

    return aclose


# ---- the Router ------------------------------------------------------------------------------------


def _check_router(name: str, kwargs: dict[str, Any]) -> None:
    """Before the Router's first attempt: a block is raised to its caller, never retried nor sent to a
    fallback (raised inside an attempt, the Router would retry it and try every fallback in turn)."""
    try:
        check_limits(scopes=())  # a boundary: each attempt is checked (and counted) when sent
    except CircuitBreakerException as blocked:
        model = kwargs.get("model")
        record_blocked(blocked, f"litellm.router.{name}", model=str(model) if model else None,
                       kind=_FUNCTIONS.get(name, "llm"), attributes={"framework": "litellm"})
        raise


def _raise_router_block(blocks: list[CircuitBreakerException], error: Exception) -> None:
    """Raise the block met during a Router call, whatever the Router raised instead: when a fallback fails, LiteLLM
    re-raises the *primary's* error (its last attempt's ``InternalServerError``, say), not the fallback's, so a block
    met by the fallback (an error-rate trip on the primary's failure, a hard budget refusing the fallback model's worst
    case) would reach the caller as that LiteLLM error. Nothing was sent after the block; the caller gets it as it
    would from any other call, with its monitor to recover."""
    if blocks and error is not blocks[0]:
        raise blocks[0] from None


def _sync_endpoint(original: Callable[..., Any], name: str) -> Callable[..., Any]:
    def endpoint(self: Any, *args: Any, **kwargs: Any) -> Any:
        if get_client() is None:
            return original(self, *args, **kwargs)
        _check_router(name, kwargs)
        blocks: list[CircuitBreakerException] = []
        token = _ROUTER_BLOCK.set(blocks)
        try:
            return original(self, *args, **kwargs)
        except BlockCarrier as leaving:
            raise leaving.blocked from None
        except Exception as error:
            _raise_router_block(blocks, error)
            raise
        finally:
            _ROUTER_BLOCK.reset(token)

    return endpoint


def _async_endpoint(original: Callable[..., Any], name: str) -> Callable[..., Any]:
    async def endpoint(self: Any, *args: Any, **kwargs: Any) -> Any:
        if get_client() is None:
            return await original(self, *args, **kwargs)
        _check_router(name, kwargs)
        blocks: list[CircuitBreakerException] = []
        token = _ROUTER_BLOCK.set(blocks)
        try:
            return await original(self, *args, **kwargs)
        except BlockCarrier as leaving:
            raise leaving.blocked from None
        except Exception as error:
            _raise_router_block(blocks, error)
            raise
        finally:
            _ROUTER_BLOCK.reset(token)

    return endpoint
