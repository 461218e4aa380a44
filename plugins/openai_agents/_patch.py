"""The patches: the SDK's run loop (``agents.run_internal.run_loop``) around each model call.

Why there: exceptions raised in a tracing processor are swallowed by the SDK, so a block must be raised from
the model call. ``get_new_response`` (``Runner.run``/``run_sync``) and ``run_single_turn_streamed``
(``run_streamed``) hold one turn; inside it the loop resolves the model (``get_model``) and the input
(``maybe_filter_model_input``), then calls ``get_response_with_retry`` / ``stream_response_with_retry``. Each
is looked up as a global of ``run_loop``, so replacing the module attribute reaches every run.

Limits are checked before the SDK's retry loop starts: a block reaches the caller unchanged (the SDK passes
exceptions that are not its own through ``Runner.run``) and is never retried. A block met inside the loop (a
retry after a failed attempt, a hard budget's refusal as the request is sent) leaves it as a ``BlockCarrier``,
which the loop does not catch, and is raised again as itself outside it: the retry policy is not asked and no
backoff is slept. Each attempt the SDK makes is one call of ours, active while the model sends, so the HTTP
layer (openai SDK, httpx) adds to it instead of counting the request again.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from agentwatch.instrumentation import (
    KEEP,
    BlockCarrier,
    CircuitBreakerException,
    LLMCall,
    attach,
    detach,
    get_client,
    get_current_llm_call,
    logger,
    stop_on_exception,
    swallow_internal_error,
)
from agentwatch.plugins.http._patching import Patcher

from . import _tracing
from ._runs import note_turn, run_scope, streamed_guardrails, streamed_run_scope
from ._tool_blocks import FAILURE_HANDLER, skipping_blocks
from ._turns import TURN, Turn, note_block, open_call, read_event, read_response

__all__ = ["install", "uninstall"]

_patcher = Patcher()


def install() -> None:
    from agents.run_internal import run_loop

    missing = [name for name in _RUN_LOOP if not hasattr(run_loop, name)]
    if missing:  # another SDK layout: traced, but its model calls are left to the HTTP layer
        logger.warning("agentwatch: openai-agents %s has no run_loop.%s; its model calls are checked by the HTTP "
                       "layer only (without the agent's scope)", _version(), ", ".join(missing))
    else:
        for name, wrap in _RUN_LOOP.items():
            _patcher.replace(run_loop, name, wrap)
    _wrap_runs(run_loop)
    from agents.run_internal import tool_execution

    if hasattr(tool_execution, _TOOL_BODY):
        _patcher.replace(tool_execution, _TOOL_BODY, _tool_scope)
    else:  # another SDK layout: a model call inside a tool is still limited, by the limits around the run only
        logger.warning("agentwatch: openai-agents %s has no tool_execution.%s; LLM calls made inside function tools "
                       "are not counted against the calling agent", _version(), _TOOL_BODY)
    _skip_failure_text_for_blocks()
    _SDK_LOGGER.addFilter(_REFUSAL_LOG_FILTER)
    from agents.tracing.provider import SynchronousMultiTracingProcessor

    # Every way of replacing the processors (``agents.set_trace_processors``, however early it was imported, and
    # the provider's ``set_processors``) ends in this method: ours is kept where it was registered.
    _patcher.replace(SynchronousMultiTracingProcessor, "set_processors", _keeping_ours)
    provider = _made_provider()
    if provider is None:  # the SDK makes it at its first trace: ours goes in then (and in any provider made later)
        from agents.tracing.provider import DefaultTraceProvider

        _patcher.replace(DefaultTraceProvider, "__init__", _registering_ours)
    elif _tracing.PROCESSOR not in _registered(provider):
        provider.register_processor(_tracing.PROCESSOR)
    _tracing.PROCESSOR.active = True


def _made_provider() -> Any:
    """The SDK's trace provider, or None while it has made none: newer SDKs make it at their first trace, not at
    import (with its exporter to OpenAI's backend, whose HTTP client imports httpcore: ~40 ms that ``init()`` would
    pay for a program that has not traced yet, or never does)."""
    from agents.tracing import get_trace_provider

    try:
        from agents.tracing import setup
    except ImportError:  # another SDK layout: asked for (made now if it makes it lazily)
        return get_trace_provider()
    if not hasattr(setup, "GLOBAL_TRACE_PROVIDER"):
        return get_trace_provider()
    return setup.GLOBAL_TRACE_PROVIDER


def _registering_ours(original: Callable[..., Any]) -> Callable[..., Any]:
    """``DefaultTraceProvider.__init__``: a provider made after ``init()`` (the SDK's own, at its first trace) gets ours
    as its first processor."""

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if _tracing.PROCESSOR not in _registered(self):
            self.register_processor(_tracing.PROCESSOR)

    return __init__


def _wrap_runs(run_loop: Any) -> None:
    """Each run (``Runner.run``/``run_sync``, the task of ``run_streamed`` and a streamed run's input guardrails task)
    puts its resume on a block leaving it (``_runs``). Each is optional: without one, only a nested run's block keeps
    that run's resume; the model calls stay limited."""
    from agents import run

    runner = getattr(run, "AgentRunner", None)
    if runner is not None and "run" in runner.__dict__:
        _patcher.replace(runner, "run", run_scope)
    if hasattr(run, "start_streaming"):
        _patcher.replace(run, "start_streaming", streamed_run_scope)
    if hasattr(run_loop, _STREAMED_GUARDRAILS):
        _patcher.replace(run_loop, _STREAMED_GUARDRAILS, streamed_guardrails)
    if runner is None or not hasattr(run, "start_streaming") or not hasattr(run_loop, _STREAMED_GUARDRAILS):
        # another SDK layout: a nested run's block keeps its own
        logger.warning("agentwatch: openai-agents %s: a block inside a nested run (a guardrail's, an agent used as a "
                       "tool) resumes that run, not yours", _version())


def _skip_failure_text_for_blocks() -> None:
    """A block raised in a function tool is not made the model's text (``_tool_blocks``)."""
    from agents import tool
    from agents.run_internal import tool_execution

    for module in (tool, tool_execution):
        if hasattr(module, FAILURE_HANDLER):
            _patcher.replace(module, FAILURE_HANDLER, skipping_blocks)
        else:  # another SDK layout: the model gets the block's text, as any tool error's
            logger.warning("agentwatch: openai-agents %s has no %s.%s; a block inside a function tool becomes the "
                           "tool's error text for the model", _version(), module.__name__, FAILURE_HANDLER)


def _registered(provider: Any) -> tuple[Any, ...]:
    processors = getattr(getattr(provider, "_multi_processor", None), "_processors", ())
    return processors if isinstance(processors, tuple) else ()


def _keeping_ours(original: Callable[..., Any]) -> Callable[..., Any]:
    """``set_trace_processors([yours])`` replaces the SDK's processors (OpenAI's exporter, as its docs show): ours
    stays after yours, else the run's agents, tools and handoffs would silently stop being spans and each model call
    become a trace of its own. Yours get exactly what they get without AgentWatch (ours only reads)."""

    @functools.wraps(original)
    def set_processors(self: Any, processors: Any, *args: Any, **kwargs: Any) -> Any:
        ours = _tracing.PROCESSOR
        try:
            keep = ours.active and ours in getattr(self, "_processors", ()) and ours not in processors
            if keep:  # one new list, set at once: no event finds ours missing in between
                processors = [*processors, ours]
        except Exception:  # something else than a list: the SDK's call as it was made
            swallow_internal_error("the openai-agents plugin")
        return original(self, processors, *args, **kwargs)

    return set_processors


def _version() -> str:
    try:
        from agents.version import __version__

        return str(__version__)
    except Exception:  # only for the warning
        return "?"


def uninstall() -> None:
    _tracing.PROCESSOR.active = False
    _SDK_LOGGER.removeFilter(_REFUSAL_LOG_FILTER)
    _patcher.restore()
    try:
        provider = _made_provider()
        registered = _registered(provider) if provider is not None else ()
        if _tracing.PROCESSOR in registered:  # the next init() adds it again
            provider.set_processors([processor for processor in registered if processor is not _tracing.PROCESSOR])
    except Exception:
        swallow_internal_error("the openai-agents plugin")


class _RefusalLogFilter(logging.Filter):
    """Drops the SDK's model-error line ("Error getting response" / "Error streaming response") for a request a
    hard budget refused as it was sent: that is a block, which the SDK logs no error for when it is raised before
    the request (a soft block), and the caller gets it as ``CircuitBreakerException`` anyway. Only ERROR records
    of the SDK's own logger, logged while one of our calls is current, are looked at."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        call = get_current_llm_call()
        return call is None or call.span.status != "blocked"


#: The logger the SDK's models log their errors to (``agents.logger.logger``).
_SDK_LOGGER = logging.getLogger("openai.agents")
_REFUSAL_LOG_FILTER = _RefusalLogFilter()


# ---- the turn: agent, model and input ---------------------------------------------------------------


def _parameter(function: Callable[..., Any], name: str) -> int | None:
    """Where ``name`` is among ``function``'s parameters (the run loop passes some positionally), found once."""
    try:
        names = list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return None
    return names.index(name) if name in names else None


def _new_turn(bindings: Any, tracker_at: int | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Turn:
    """The turn's agent and conversation: the run's session (the SDK saves each finished turn to it, so a resume
    gives it nothing again) and whether the server chains the run's responses (``auto_previous_response_id``),
    read from the run loop's ``OpenAIServerConversationTracker``."""
    tracker = kwargs.get("server_conversation_tracker")
    if tracker is None and tracker_at is not None and tracker_at < len(args):
        tracker = args[tracker_at]
    return Turn(getattr(bindings, "public_agent", None), session=kwargs.get("session"),
                auto_previous_response_id=getattr(tracker, "auto_previous_response_id", False) is True)


def _turn_scope(original: Callable[..., Any]) -> Callable[..., Any]:
    at = _parameter(original, "server_conversation_tracker")
    tracker_at = at - 1 if at else None  # in ``args``: after ``bindings``

    async def get_new_response(bindings: Any, *args: Any, **kwargs: Any) -> Any:
        if get_client() is None:
            return await original(bindings, *args, **kwargs)
        token = TURN.set(_new_turn(bindings, tracker_at, args, kwargs))
        try:
            return await original(bindings, *args, **kwargs)
        finally:
            TURN.reset(token)

    return get_new_response


def _streamed_turn_scope(original: Callable[..., Any]) -> Callable[..., Any]:
    at = _parameter(original, "server_conversation_tracker")
    tracker_at = at - 2 if at and at >= 2 else None  # in ``args``: after ``streamed_result`` and ``bindings``

    async def run_single_turn_streamed(streamed_result: Any, bindings: Any, *args: Any, **kwargs: Any) -> Any:
        if get_client() is None:
            return await original(streamed_result, bindings, *args, **kwargs)
        token = TURN.set(_new_turn(bindings, tracker_at, args, kwargs))
        try:
            return await original(streamed_result, bindings, *args, **kwargs)
        finally:
            TURN.reset(token)

    return run_single_turn_streamed


def _get_model(original: Callable[..., Any]) -> Callable[..., Any]:
    def get_model(agent: Any, run_config: Any) -> Any:
        model = original(agent, run_config)
        turn = TURN.get()
        if turn is not None:
            turn.model = model
        return model

    return get_model


def _filter_input(original: Callable[..., Any]) -> Callable[..., Any]:
    async def maybe_filter_model_input(*args: Any, **kwargs: Any) -> Any:
        turn = TURN.get()
        if turn is not None:
            items = kwargs.get("input_items")
            turn.input = list(items) if isinstance(items, list) else None
            note_turn(turn)
        return await original(*args, **kwargs)

    return maybe_filter_model_input


# ---- the model call ---------------------------------------------------------------------------------


def _end(call: LLMCall, error: BaseException | None = None) -> None:
    try:
        call.end(error=error)
    except Exception:
        swallow_internal_error("the openai-agents plugin")


# A block met inside the SDK's retry loop leaves it as a ``BlockCarrier``: the loop hands every ``Exception`` to the
# retry policy (and sleeps its backoff before the next attempt); a carrier is not one, so the non-streamed loop does
# not catch it and the streamed one raises it again at once. The wrapper around the loop raises the block instead.


def _note_conversation(turn: Turn, kwargs: dict[str, Any]) -> None:
    """The server-side conversation this request continues (the retry loop is given it): a resume must too."""
    previous = kwargs.get("previous_response_id")
    conversation = kwargs.get("conversation_id")
    turn.previous_response_id = previous if isinstance(previous, str) else None
    turn.conversation_id = conversation if isinstance(conversation, str) else None


def _open_attempt(turn: Turn, pending: list[LLMCall], name: str) -> LLMCall:
    """The call of one attempt: the first was opened (and checked) before the loop; a retry's is checked here,
    inside the loop, so its block must leave the loop."""
    if pending:
        return pending.pop()
    try:
        return open_call(turn, name)
    except CircuitBreakerException as blocked:
        raise BlockCarrier(blocked) from None


def _get_response_with_retry(original: Callable[..., Any]) -> Callable[..., Any]:
    async def get_response_with_retry(*args: Any, **kwargs: Any) -> Any:
        turn = TURN.get()
        get_response = kwargs.get("get_response")
        if get_client() is None or turn is None or get_response is None:
            return await original(*args, **kwargs)
        _note_conversation(turn, kwargs)
        pending = [open_call(turn, "openai_agents.get_response")]  # a block is raised here, before any retry

        async def attempt() -> Any:
            call = _open_attempt(turn, pending, "openai_agents.get_response")
            call.activate()
            try:
                response = await get_response()
            except BaseException as error:
                call.deactivate()
                _end(call, error)
                refused = _refused(call, error)
                if refused is not None:
                    note_block(turn, refused)
                    raise BlockCarrier(refused) from None
                raise
            call.deactivate()
            try:
                read_response(call, response)
            except Exception:
                swallow_internal_error("the openai-agents plugin")
            _end(call)
            return response

        kwargs["get_response"] = attempt
        try:
            return await original(*args, **kwargs)
        except BlockCarrier as leaving:
            blocked = leaving.blocked
        finally:
            for call in pending:  # the loop failed before its first attempt: nothing was sent
                _end(call, RuntimeError("model call not made"))
        # Raised outside the handler, so the block's context stays what it was (not our carrier).
        raise blocked

    return get_response_with_retry


def _stream_response_with_retry(original: Callable[..., Any]) -> Callable[..., Any]:
    def stream_response_with_retry(*args: Any, **kwargs: Any) -> Any:
        turn = TURN.get()
        if get_client() is None or turn is None or kwargs.get("get_stream") is None:
            return original(*args, **kwargs)
        _note_conversation(turn, kwargs)
        return _guarded_stream(original, turn, args, kwargs)

    return stream_response_with_retry


async def _guarded_stream(original: Callable[..., Any], turn: Turn, args: tuple[Any, ...],
                          kwargs: dict[str, Any]) -> AsyncIterator[Any]:
    pending = [open_call(turn, "openai_agents.stream_response")]  # raised on the first event, before any retry
    get_stream = kwargs["get_stream"]
    kwargs["get_stream"] = lambda: _attempt(get_stream, pending, turn)
    inner = original(*args, **kwargs)
    blocked: CircuitBreakerException | None = None
    try:
        async for event in inner:
            yield event
    except BlockCarrier as leaving:
        blocked = leaving.blocked
    finally:
        await inner.aclose()
        for call in pending:
            _end(call, RuntimeError("model call not made"))
    if blocked is not None:  # raised outside the handler: the block's context stays what it was
        raise blocked


def _refused(call: LLMCall, error: BaseException) -> CircuitBreakerException | None:
    """The block that stopped this attempt: a hard budget's top-up refusing the request (raised as is by the openai
    SDK, wrapped by a LitellmModel's LiteLLM as its ``InternalServerError``), or a block raised as such."""
    return error if isinstance(error, CircuitBreakerException) else call.refusal(error)


async def _attempt(get_stream: Callable[[], Any], pending: list[LLMCall], turn: Turn) -> AsyncIterator[Any]:
    """One streamed request: the call is active while the SDK reads (the request goes out on the first read)."""
    call = _open_attempt(turn, pending, "openai_agents.stream_response")
    stream = get_stream()
    try:
        while True:
            call.activate()
            try:
                event = await stream.__anext__()
            except StopAsyncIteration:
                break
            finally:
                call.deactivate()
            try:
                read_event(call, event)
            except Exception:
                swallow_internal_error("the openai-agents plugin")
            yield event
    except GeneratorExit:  # the consumer stopped early: charge what was streamed
        call.set_attribute("stream_incomplete", True)
        raise
    except BaseException as error:
        _end(call, error)
        refused = _refused(call, error)
        if refused is not None:
            note_block(turn, refused)
            raise BlockCarrier(refused) from None
        raise
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
        _end(call)


# ---- a function tool's body ---------------------------------------------------------------------------

#: Where the run loop invokes a function tool (``FunctionTool.on_invoke_tool``), inside the tool's SDK span.
_TOOL_BODY = "_invoke_function_tool_with_metadata"


def _tool_scope(original: Callable[..., Any]) -> Callable[..., Any]:
    """A function tool runs inside its agent's scope and under its tool span: an LLM call the tool makes (the
    openai SDK directly, another framework, an agent used as a tool) counts against the calling agent's limits too,
    and is recorded under the tool, in the run's trace."""

    @functools.wraps(original)
    async def invoke_tool(*args: Any, **kwargs: Any) -> Any:
        token = _enter_tool(kwargs.get("context"))
        try:
            return await original(*args, **kwargs)
        finally:
            if token:
                detach(token)

    return invoke_tool


@stop_on_exception(default=None)
def _enter_tool(tool_context: Any) -> tuple[Any, ...] | None:
    client = get_client()
    if client is None:
        return None
    name = getattr(getattr(tool_context, "agent", None), "name", None)
    scope = client.agent_scope(name) if isinstance(name, str) and name else None
    tool_span = _tracing.current_parent()  # the SDK's current span is the tool's: ours for it (None untraced)
    if scope is None and tool_span is None:
        return None
    return attach(tool_span if tool_span is not None else KEEP, agent=scope)


#: The run loop's globals wrapped, all or none, and how (the turn's scope, its model and input, its model calls).
_RUN_LOOP: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "get_new_response": _turn_scope, "run_single_turn_streamed": _streamed_turn_scope, "get_model": _get_model,
    "maybe_filter_model_input": _filter_input, "get_response_with_retry": _get_response_with_retry,
    "stream_response_with_retry": _stream_response_with_retry}

#: A streamed run's input guardrails, run in a task of their own (``_runs.streamed_guardrails``): wrapped if there.
_STREAMED_GUARDRAILS = "run_input_guardrails_with_queue"
