"""Three places where LangChain's callback machinery alone cannot give what the handler needs.

1. A model call's context. The handler activates the call it opens (``LLMCall.activate``) so that the
   model's HTTP request finds it and is counted once. LangChain ends an async call in a task of its own
   (``agenerate`` gathers ``on_llm_end``), where that activation cannot be undone, and a stream's
   generator runs in its consumer's context between chunks. So every model entry point restores the
   caller's context when it returns, and a stream restores it after each step: the activation lives
   exactly as long as the model's own code runs, and never crosses an ``await`` or ``yield`` of the caller.
   A program or library that drives an async callback manager itself (``AsyncCallbackManager.configure(...)``,
   ``on_chat_model_start``, then the run manager's ``on_llm_end``), outside any model entry point, gets the same:
   the end makes the call not current in the caller's context before LangChain dispatches it to a task.

2. The async start of a model (``AsyncCallbackManager.on_llm_start`` / ``on_chat_model_start``). Once any
   handler in the list is ``run_inline``, langchain-core dispatches a completion model's start to the inline
   handlers only, and every other handler never hears of the run (docs/upstream/langchain-inline-handler.md);
   and for either kind it makes every handler's coroutine before awaiting the inline ones, so a block raised
   by ours left the others' never awaited (a RuntimeWarning). Our handler must run inline (the block is raised
   in the caller's task and context, before the request), so here it runs first, by itself, and LangChain
   dispatches the start to every other handler exactly as it would without us.

3. A run that ours stops at its start (a block, or a pause for a human): the handlers LangChain gave the start
   before ours hear it end with that error (``_stopped``).

4. The context a LangGraph node's code and a tool's body run in (``_node_context``, patched when the first such
   run starts), and the end of a node its ``timeout=`` cuts off (``_timeouts``).

5. A block inside ``with_retry()`` / ``with_fallbacks()`` (``_error_wrappers``): not retried, and an enclosing one not
   handed to the fallbacks.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from types import ModuleType
from typing import Any
from uuid import UUID

from agentwatch.instrumentation import get_current_llm_call, restore_current, save_current

from ._error_wrappers import forget_error_wrappers, install_error_wrappers
from ._plugin import CHAT_MODELS_MODULE, MODEL_MODULES
from ._runs import RUNS, end_model_run_left_open, key_of
from ._stopped import (
    BATCH,
    abatched,
    aends_what_ours_stopped,
    atell_started,
    batched,
    ends_what_ours_stopped,
    named_like,
    raised_by_ours,
)

__all__ = ["install", "watch_models", "patch_models", "uninstall", "install_run_contexts", "UNPATCHED_RUN_CONTEXTS"]

#: The modules whose ``set_config_context`` makes the context a run's code runs in, and the kinds of span it enters
#: (a Functional API task's code runs as a node's does). Patched at the first such run (``install_run_contexts``):
#: ``_node_context`` and ``_timeouts`` are imported then, not by ``init()``.
RUN_CONTEXTS = (("langgraph._internal._runnable", ("node", "task")), ("langchain_core.tools.base", ("tool",)))

_ENTRY_POINTS = ("generate", "agenerate", "stream", "astream")
_originals: list[tuple[type, str, Any]] = []
_lock = threading.Lock()  # handlers may be made in several threads at once; patch exactly once

# The restore point (``save_current`` before, ``restore_current`` after) sets nothing when the model's code left the
# context as it found it (the handler's on_llm_end deactivates its call): the usual case costs four reads.


def _scoped_call(original: Callable[..., Any]) -> Callable[..., Any]:
    if _known_generate_signature(original) is not None:
        return _scoped_generate(original)

    @functools.wraps(original)
    def generate(self: Any, *args: Any, **kwargs: Any) -> Any:
        saved = save_current()
        try:
            return original(self, *args, **kwargs)
        except BaseException as error:
            if not isinstance(error, Exception):
                end_model_run_left_open(saved[1], error)
            raise
        finally:
            restore_current(saved)

    return generate


#: ``generate``'s parameters after its first (``messages`` / ``prompts``) in langchain-core 0.3 and 1.x.
_POSITIONAL, _KEYWORD = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
_GENERATE_REST = (("stop", _POSITIONAL), ("callbacks", _POSITIONAL), ("tags", _KEYWORD), ("metadata", _KEYWORD),
                  ("run_name", _KEYWORD), ("run_id", _KEYWORD), ("kwargs", inspect.Parameter.VAR_KEYWORD))


def _known_generate_signature(original: Callable[..., Any]) -> str | None:
    """The name of ``generate``'s first parameter if its signature is the one ``_scoped_generate`` spells out."""
    parameters = list(inspect.signature(original).parameters.values())
    if len(parameters) != 2 + len(_GENERATE_REST) or parameters[1].name not in ("messages", "prompts"):
        return None
    if [(p.name, p.kind) for p in parameters[2:]] != list(_GENERATE_REST):
        return None
    return parameters[1].name


def _scoped_generate(original: Callable[..., Any]) -> Callable[..., Any]:
    """``generate`` with its parameters spelled out: every chat call passes it seven keywords, which a
    ``*args, **kwargs`` wrapper packs into a dict and unpacks again (about half a microsecond per call)."""

    def generate(self: Any, inputs: Any, stop: Any = None, callbacks: Any = None, *, tags: Any = None,
                 metadata: Any = None, run_name: Any = None, run_id: Any = None, **kwargs: Any) -> Any:
        saved = save_current()
        try:
            if kwargs:
                return original(self, inputs, stop, callbacks, tags=tags, metadata=metadata, run_name=run_name,
                                run_id=run_id, **kwargs)
            return original(self, inputs, stop, callbacks, tags=tags, metadata=metadata, run_name=run_name,
                            run_id=run_id)
        except BaseException as error:
            if not isinstance(error, Exception):  # another handler's SystemExit or Ctrl-C (``_runs``)
                end_model_run_left_open(saved[1], error)
            raise
        finally:
            restore_current(saved)

    return functools.wraps(original)(named_like(original, generate))  # callers may pass ``messages`` by keyword


#: The runs ours started in this ``agenerate`` (our handler, run id): a chat model's ``agenerate`` ends its runs only
#: for errors its gathered calls return; a cancelled task (``asyncio.wait_for``, ``task.cancel()``) leaves at the
#: ``await`` of the gather, and no handler would ever hear of the run's end (its span open, a hard budget's
#: reservation held for good).
_STARTED: ContextVar[list[tuple[Any, UUID]] | None] = ContextVar("agentwatch_langchain_started", default=None)


def _scoped_acall(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def agenerate(self: Any, *args: Any, **kwargs: Any) -> Any:
        saved = save_current()
        started: list[tuple[Any, UUID]] = []
        token = _STARTED.set(started)
        try:
            return await original(self, *args, **kwargs)
        except BaseException as error:
            if not isinstance(error, Exception):  # cancelled, or Ctrl-C: ended here (ours only; ends nothing twice)
                for handler, run_id in started:
                    handler.on_llm_error(error, run_id=run_id)
            raise
        finally:
            _STARTED.reset(token)
            restore_current(saved)

    return agenerate


def _scoped_stream(original: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    @functools.wraps(original)
    def stream(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        steps = original(self, *args, **kwargs)
        opened: Any = None  # the call the first step made current (``end_model_run_left_open``)
        try:
            while True:
                saved = save_current()
                try:
                    item = next(steps)
                except StopIteration:
                    return
                except BaseException as error:
                    if not isinstance(error, Exception):  # another handler's SystemExit or Ctrl-C (``_runs``)
                        end_model_run_left_open(saved[1], error, opened)
                    raise
                finally:
                    if opened is None:
                        opened = get_current_llm_call()
                    restore_current(saved)
                yield item
        finally:
            close = getattr(steps, "close", None)
            if close is not None:
                saved = save_current()
                try:
                    close()
                finally:
                    restore_current(saved)

    return stream


def _scoped_astream(original: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(original)
    async def astream(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        steps = original(self, *args, **kwargs)
        opened: Any = None
        try:
            while True:
                saved = save_current()
                try:
                    item = await steps.__anext__()
                except StopAsyncIteration:
                    return
                except BaseException as error:
                    if not isinstance(error, Exception):
                        end_model_run_left_open(saved[1], error, opened)
                    raise
                finally:
                    if opened is None:
                        opened = get_current_llm_call()
                    restore_current(saved)
                yield item
        finally:
            aclose = getattr(steps, "aclose", None)
            if aclose is not None:
                saved = save_current()
                try:
                    await aclose()
                finally:
                    restore_current(saved)

    return astream


def _ends_in_the_callers_context(original: Callable[..., Any]) -> Callable[..., Any]:
    """``AsyncCallbackManagerForLLMRun.on_llm_end`` / ``on_llm_error``, which langchain-core runs in a task of its own
    (``shielded``), where the call our handler made current at the run's start cannot be made not current: it is
    made not current first, here, in the context of whoever ends the run (point 1)."""

    @functools.wraps(original)
    async def on_end(self: Any, *args: Any, **kwargs: Any) -> Any:
        run = RUNS.get(key_of(self.run_id))
        if run is not None and run.call is not None and run.call is get_current_llm_call():
            run.call.deactivate()
        return await original(self, *args, **kwargs)

    return on_end


def _ours_first(original: Callable[..., Any], handler_class: type[Any], event: str) -> Callable[..., Any]:
    """``AsyncCallbackManager.<event>`` (``on_llm_start``, ``on_chat_model_start``) with our handler run first, by
    itself. For ``on_llm_start`` that is what makes the start reach every other handler (point 2 above); for both,
    a block raised by ours leaves nothing behind: LangChain makes every handler's coroutine before awaiting the
    inline ones, and the rest of a batch whose inline start raised were never awaited (a RuntimeWarning each)."""
    from langchain_core.utils.uuid import uuid7

    @functools.wraps(original)
    async def on_start(self: Any, serialized: dict[str, Any], inputs: list[Any], run_id: UUID | None = None,
                       **kwargs: Any) -> Any:
        ours = [handler for handler in self.handlers if isinstance(handler, handler_class)]
        if not ours:
            return await original(self, serialized, inputs, run_id, **kwargs)
        # A prompt of a completion model's batch (each started in a task of its own): stopped like the one before.
        batch = BATCH.get() if kwargs.get("batch_size", 1) > 1 else None
        if batch is not None and batch.stopped is not None:
            raise batch.stopped
        run_ids = [run_id or uuid7(), *(uuid7() for _ in inputs[1:])]
        started: list[UUID] = []
        try:
            for one, item in zip(run_ids, inputs, strict=True):
                for handler in ours:
                    # Inline, in the caller's task and context, before any request: a block raises here.
                    getattr(handler, event)(serialized, [item], run_id=one, parent_run_id=self.parent_run_id,
                                            tags=self.tags, metadata=self.metadata, **kwargs)
                started.append(one)
        except BaseException as error:
            for one in started:  # a batch stopped part-way: its earlier runs are never sent
                for handler in ours:
                    handler.on_llm_error(error, run_id=one)
            if batch is not None and raised_by_ours(error):
                batch.stopped = error
                await atell_started(batch, error)
            raise
        # Everyone else, dispatched by LangChain as if we were not in the list (a shallow copy of this
        # manager without us); the run managers it returns carry the full list again for the run's end.
        others = copy.copy(self)
        others.handlers = [handler for handler in self.handlers if not isinstance(handler, handler_class)]
        managers: list[Any] = []
        for one, item in zip(run_ids, inputs, strict=True):
            managers.extend(await original(others, serialized, [item], one, **kwargs))
        for manager in managers:
            manager.handlers = self.handlers
        started_here = _STARTED.get()
        if started_here is not None:
            started_here.extend((handler, one) for one in run_ids for handler in ours)
        if batch is not None:
            batch.started.extend((manager, manager.run_id) for manager in managers)
            if batch.stopped is not None:  # another prompt was stopped while these were being started
                await atell_started(batch, batch.stopped)
        return managers

    return named_like(original, on_start)


_WRAPPERS: dict[str, Callable[[Any], Any]] = {"generate": _scoped_call, "agenerate": _scoped_acall,
                                             "stream": _scoped_stream, "astream": _scoped_astream}


def import_now(module_name: str, callback: Callable[[ModuleType], None]) -> None:
    """``Client.when_imported`` where there is no client to ask (a handler made without ``init()``): imported now."""
    callback(importlib.import_module(module_name))


def install(handler_class: type[Any],
            when_imported: Callable[[str, Callable[[ModuleType], None]], None] = import_now) -> None:
    """Patch once; ``uninstall`` puts every original back. ``BaseChatModel`` and ``BaseLLM`` are patched once their
    module is imported (``watch_models``), not by importing it here when a client can wait for it."""
    if _originals:
        return
    from langchain_core.callbacks.manager import AsyncCallbackManager, AsyncCallbackManagerForLLMRun, CallbackManager

    with _lock:
        if _originals:
            return
        for event in ("on_llm_start", "on_chat_model_start"):
            original = AsyncCallbackManager.__dict__[event]
            _originals.append((AsyncCallbackManager, event, original))
            setattr(AsyncCallbackManager, event, _ours_first(original, handler_class, event))
        for event in ("on_llm_end", "on_llm_error"):
            original = AsyncCallbackManagerForLLMRun.__dict__[event]
            _originals.append((AsyncCallbackManagerForLLMRun, event, original))
            setattr(AsyncCallbackManagerForLLMRun, event, _ends_in_the_callers_context(original))
        for event in ("on_llm_start", "on_chat_model_start", "on_chain_start"):
            original = CallbackManager.__dict__[event]
            _originals.append((CallbackManager, event, original))
            setattr(CallbackManager, event, ends_what_ours_stopped(original, handler_class, event))
        original = AsyncCallbackManager.__dict__["on_chain_start"]
        _originals.append((AsyncCallbackManager, "on_chain_start", original))
        AsyncCallbackManager.on_chain_start = aends_what_ours_stopped(original, handler_class)  # type: ignore[method-assign]
        UNPATCHED_RUN_CONTEXTS.update(kind for _, kinds in RUN_CONTEXTS for kind in kinds)
        install_error_wrappers(_patch_later, when_imported)
    watch_models(when_imported)


def watch_models(when_imported: Callable[[str, Callable[[ModuleType], None]], None]) -> None:
    """``patch_models`` for each model base class's module when it is imported (``when_imported(name, callback)``: now
    if it is)."""
    for name in MODEL_MODULES:
        when_imported(name, patch_models)


def patch_models(module: ModuleType) -> None:
    """Patch the model base class ``module`` defines (``BaseChatModel``, ``BaseLLM``), once ``install`` has run (before
    it: nothing). A completion model starts each prompt of a call with a manager of its own: the call keeps a Batch of
    them."""
    if module.__name__ == CHAT_MODELS_MODULE:
        _patch_entry_points(module.BaseChatModel, {})
    else:
        _patch_entry_points(module.BaseLLM, {"generate": batched, "agenerate": abatched})


def _patch_entry_points(model_class: type[Any], batches: dict[str, Callable[[Any], Any]]) -> None:
    """A model base class's entry points, each run in a scope of its own (``_scoped_call`` and the others), once
    its module is imported. Not after ``uninstall`` (nothing patched then)."""
    with _lock:
        if not _originals or any(owner is model_class for owner, _, _ in _originals):
            return
        for name in _ENTRY_POINTS:
            original = model_class.__dict__[name]
            _originals.append((model_class, name, original))
            wrapped = _WRAPPERS[name](original)
            setattr(model_class, name, batches[name](wrapped) if name in batches else wrapped)


def _patch_later(owner: Any, name: str, new: Any) -> None:
    """Replace ``owner.name`` after ``install`` (an error wrapper's module imported later), undone by ``uninstall``."""
    if _originals:  # not uninstalled meanwhile
        _originals.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, new)


def install_run_contexts() -> None:
    """Patch ``set_config_context`` where a node's code and a tool's body run (``_node_context``), once each, when the
    first such run starts: its module is imported by then, and importing LangGraph for a program that only uses
    LangChain would cost it ~55 ms. The handler calls this only while the kind of run starting is in
    ``UNPATCHED_RUN_CONTEXTS`` (a set lookup per start, not a call: a graph without tools never imports the tools'
    module, and every node start looked for it)."""
    from ._node_context import module_of, wrap_set_config_context

    with _lock:
        for name, kinds in RUN_CONTEXTS:
            module = module_of(name)
            if module is None and name in sys.modules:  # a layout without set_config_context: nothing to patch
                UNPATCHED_RUN_CONTEXTS.difference_update(kinds)
            if name in _run_contexts_installed or not _originals or module is None:
                continue
            original = module.__dict__["set_config_context"]
            _originals.append((module, "set_config_context", original))  # type: ignore[arg-type]
            module.set_config_context = wrap_set_config_context(original, kinds)  # type: ignore[attr-defined]
            _run_contexts_installed.append(name)
            UNPATCHED_RUN_CONTEXTS.difference_update(kinds)
            if "node" in kinds:
                _install_timed_runs()


def _install_timed_runs() -> None:
    """A node cut off by its ``timeout=`` ends with LangGraph's ``NodeTimeoutError`` (``_timeouts``); a LangGraph
    without node timeouts has nothing to patch."""
    from . import _timeouts as timeouts

    module = sys.modules.get(timeouts.MODULE)
    original = getattr(module, timeouts.ORIGINAL, None)
    if module is None or not inspect.iscoroutinefunction(original):
        return
    _originals.append((module, timeouts.ORIGINAL, original))  # type: ignore[arg-type]
    setattr(module, timeouts.ORIGINAL, timeouts.wrap_timed_run(original))


#: The modules ``install_run_contexts`` has patched (emptied by ``uninstall``).
_run_contexts_installed: list[str] = []
#: The kinds of run (node, task, tool) whose code's context is not patched yet: filled by ``install``, emptied as
#: ``install_run_contexts`` patches their module, and by ``uninstall`` (nothing to patch then).
UNPATCHED_RUN_CONTEXTS: set[str] = set()


def uninstall() -> None:
    forget_error_wrappers()
    with _lock:
        while _originals:
            cls, name, original = _originals.pop()
            setattr(cls, name, original)
        _run_contexts_installed.clear()
        UNPATCHED_RUN_CONTEXTS.clear()
