"""Runs that our handler stops at their start (a block, or a pause for a human) end for every other handler.

LangChain gives a start to each handler in turn, so the handlers before ours have heard of the run; LangChain then
raises out of the start and never ends the run for them (it would stay open in Langfuse or LangSmith). The sync
starts and the async chain start tell them it ended with that error; the async model starts run ours first
(``_patches._ours_first``), so no other handler hears of a run ours stops.

A completion model's call with several prompts (``batch``) starts each prompt with a manager of its own: when ours
stops one, the prompts started before it end, for every handler, ours too (``Batch``), and in async, where the
starts run concurrently, a prompt that would start after it is stopped the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any
from uuid import UUID

__all__ = ["Batch", "BATCH", "raised_by_ours", "ends_what_ours_stopped", "aends_what_ours_stopped", "batched",
           "abatched", "atell_started", "named_like"]

#: Per start event: the event that ends such a run with an error, and the handler property that skips both.
_ERROR_EVENTS = {"on_llm_start": ("on_llm_error", "ignore_llm"),
                 "on_chat_model_start": ("on_llm_error", "ignore_chat_model"),
                 "on_chain_start": ("on_chain_error", "ignore_chain")}


class Batch:
    """The prompts of one completion-model call started so far (their managers and run ids), and the error that
    stopped one of them."""

    __slots__ = ("started", "stopped")

    def __init__(self) -> None:
        self.started: list[tuple[Any, UUID]] = []
        self.stopped: BaseException | None = None


BATCH: ContextVar[Batch | None] = ContextVar("agentwatch_langchain_batch", default=None)


def batched(original: Callable[..., Any]) -> Callable[..., Any]:
    """``BaseLLM.generate`` with a ``Batch`` for its prompts' starts."""

    @functools.wraps(original)
    def generate(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = BATCH.set(Batch())
        try:
            return original(self, *args, **kwargs)
        finally:
            BATCH.reset(token)

    return generate


def abatched(original: Callable[..., Any]) -> Callable[..., Any]:
    """``BaseLLM.agenerate`` with a ``Batch`` (its prompts' starts run in tasks that share it)."""

    @functools.wraps(original)
    async def agenerate(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = BATCH.set(Batch())
        try:
            return await original(self, *args, **kwargs)
        finally:
            BATCH.reset(token)

    return agenerate


def raised_by_ours(error: BaseException) -> bool:
    from agentwatch import CircuitBreakerException

    from ._graph import is_control_flow

    return isinstance(error, CircuitBreakerException) or is_control_flow(error)  # a block, or a pause for a human


def _heard_before_ours(handlers: list[Any], handler_class: type[Any], ignore: str) -> list[Any]:
    """The handlers LangChain gave a start before ours, which stopped the run by raising."""
    heard: list[Any] = []
    for handler in handlers:
        if isinstance(handler, handler_class):
            return heard
        if not getattr(handler, ignore, False):
            heard.append(handler)
    return []  # ours is not in the list: the error came from elsewhere


def _tell(handlers: list[Any], event: str, error: BaseException, run_id: UUID, manager: Any) -> None:
    from langchain_core.callbacks.manager import handle_event

    error_event, ignore = _ERROR_EVENTS[event]
    handle_event(handlers, error_event, ignore, error, run_id=run_id, parent_run_id=manager.parent_run_id,
                 tags=manager.tags)


async def atell_started(batch: Batch, error: BaseException) -> None:
    """End, for every handler, the prompts of ``batch`` started before ``error`` stopped one (async)."""
    from langchain_core.callbacks.manager import ahandle_event

    started, batch.started = batch.started, []
    for manager, run_id in started:
        await ahandle_event(manager.handlers, "on_llm_error", "ignore_llm", error, run_id=run_id,
                            parent_run_id=manager.parent_run_id, tags=manager.tags)


def ends_what_ours_stopped(original: Callable[..., Any], handler_class: type[Any], event: str) -> Callable[..., Any]:
    """``CallbackManager.<event>`` (the sync starts), ending for the other handlers what ours stops. Until then it
    costs this wrapper's frame (~27 bytecodes a chat call): the ``try`` is free, and the run id is drawn here
    instead of in LangChain."""
    from langchain_core.utils.uuid import uuid7

    ignore = _ERROR_EVENTS[event][1]
    chain = event == "on_chain_start"
    prompts = event == "on_llm_start"

    @functools.wraps(original)
    def on_start(self: Any, serialized: Any, inputs: Any, run_id: UUID | None = None, **kwargs: Any) -> Any:
        if chain or len(inputs) == 1:
            if run_id is None:
                run_id = uuid7()
            try:
                started = original(self, serialized, inputs, run_id, **kwargs)
            except BaseException as error:
                if raised_by_ours(error):
                    _tell(_heard_before_ours(self.handlers, handler_class, ignore), event, error, run_id, self)
                    if prompts and kwargs.get("batch_size", 1) > 1:
                        _end_started(BATCH.get(), error)
                raise
            if prompts and kwargs.get("batch_size", 1) > 1:
                batch = BATCH.get()
                if batch is not None:
                    batch.started.append((self, run_id))
            return started
        managers: list[Any] = []  # several inputs in one start: one start each, so that each run's id is known
        for index, item in enumerate(inputs):
            one = run_id if index == 0 and run_id is not None else uuid7()
            try:
                managers.extend(original(self, serialized, [item], one, **kwargs))
            except BaseException as error:
                if raised_by_ours(error):
                    _tell(_heard_before_ours(self.handlers, handler_class, ignore), event, error, one, self)
                    for manager in managers:
                        _tell(self.handlers, event, error, manager.run_id, self)
                raise
        return managers

    if chain:

        @functools.wraps(original)
        def on_chain_start(self: Any, serialized: Any, inputs: Any, run_id: UUID | None = None, *,
                           name: Any = _ABSENT, **kwargs: Any) -> Any:
            """``on_start`` for a chain's start given ``name`` alone (LangGraph's graphs and nodes): passed on by name,
            not through ``**kwargs`` twice, ~1.9k machine instructions a start fewer."""
            if kwargs or name is _ABSENT:  # any other call: as given
                if name is not _ABSENT:
                    kwargs["name"] = name
                return on_start(self, serialized, inputs, run_id, **kwargs)
            if run_id is None:
                run_id = uuid7()
            try:
                return original(self, serialized, inputs, run_id, name=name)
            except BaseException as error:
                if raised_by_ours(error):
                    _tell(_heard_before_ours(self.handlers, handler_class, ignore), event, error, run_id, self)
                raise

        return named_like(original, on_chain_start)

    @functools.wraps(original)
    def on_model_start(self: Any, serialized: Any, inputs: Any, run_id: UUID | None = None, *,
                       invocation_params: Any = _ABSENT, options: Any = _ABSENT, name: Any = _ABSENT,
                       batch_size: Any = _ABSENT, **kwargs: Any) -> Any:
        """``on_start`` for a model's start with the keywords langchain-core passes spelled out (every model call):
        passed on by name, not through ``**kwargs`` twice, ~3k machine instructions a call fewer."""
        if kwargs or len(inputs) != 1 or invocation_params is _ABSENT or options is _ABSENT or name is _ABSENT \
                or batch_size is _ABSENT:  # any other call: as given
            for key, value in (("invocation_params", invocation_params), ("options", options), ("name", name),
                               ("batch_size", batch_size)):
                if value is not _ABSENT:
                    kwargs[key] = value
            return on_start(self, serialized, inputs, run_id, **kwargs)
        if run_id is None:
            run_id = uuid7()
        try:
            started = original(self, serialized, inputs, run_id, invocation_params=invocation_params, options=options,
                               name=name, batch_size=batch_size)
        except BaseException as error:
            if raised_by_ours(error):
                _tell(_heard_before_ours(self.handlers, handler_class, ignore), event, error, run_id, self)
                if prompts and batch_size > 1:
                    _end_started(BATCH.get(), error)
            raise
        if prompts and batch_size > 1:
            batch = BATCH.get()
            if batch is not None:
                batch.started.append((self, run_id))
        return started

    return named_like(original, on_model_start)


#: A keyword the caller did not pass (``None`` is a value a caller may pass).
_ABSENT: Any = object()


def named_like(original: Callable[..., Any], wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """``wrapper`` with its positional parameters named as ``original``'s (``on_chat_model_start``'s ``messages``,
    ``on_llm_start``'s ``prompts``, ``generate``'s ``messages``/``prompts``): callers may pass them by keyword, and
    CPython matches a keyword by the parameter's own name (``functools.wraps`` only changes what ``inspect`` shows)."""
    import inspect

    code = wrapper.__code__
    names = list(code.co_varnames)
    wanted = [parameter.name for parameter in inspect.signature(original).parameters.values()
              if parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    count = min(len(wanted), code.co_argcount)
    if names[:count] != wanted[:count] and not set(wanted[:count]) & set(names[count:]):
        names[:count] = wanted[:count]
        wrapper.__code__ = code.replace(co_varnames=tuple(names))
    return wrapper


def _end_started(batch: Batch | None, error: BaseException) -> None:
    if batch is None:
        return
    started, batch.started = batch.started, []
    for manager, run_id in started:
        _tell(manager.handlers, "on_llm_start", error, run_id, manager)


def aends_what_ours_stopped(original: Callable[..., Any], handler_class: type[Any]) -> Callable[..., Any]:
    """``AsyncCallbackManager.on_chain_start``: as ``ends_what_ours_stopped``. LangChain awaits the inline
    handlers first, in turn (LangSmith's tracer is one), and the others only after them: when ours stops the run,
    the inline handlers before it have heard of the start, and the others of nothing."""
    from langchain_core.callbacks.manager import ahandle_event
    from langchain_core.utils.uuid import uuid7

    @functools.wraps(original)
    async def on_chain_start(self: Any, serialized: Any, inputs: Any, run_id: UUID | None = None,
                             **kwargs: Any) -> Any:
        if run_id is None:
            run_id = uuid7()
        try:
            return await original(self, serialized, inputs, run_id, **kwargs)
        except BaseException as error:
            if raised_by_ours(error):
                inline = [handler for handler in self.handlers if handler.run_inline]
                await ahandle_event(_heard_before_ours(inline, handler_class, "ignore_chain"), "on_chain_error",
                                    "ignore_chain", error, run_id=run_id, parent_run_id=self.parent_run_id,
                                    tags=self.tags)
            raise

    return on_chain_start
