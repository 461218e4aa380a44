"""The context a LangGraph node's code or a tool's body runs in: the run's span current, its agent scopes pushed.

LangGraph runs a node's code, and langchain-core a tool's body, in a copy of the context made right after the
run's start callbacks (``set_config_context`` in ``langgraph._internal._runnable`` and in
``langchain_core.tools.base``). Setting the values there, not in the caller's context at the start callback, keeps
them out of the caller whatever happens next: LangChain ends an async run in a task of its own (its ``shielded``
end callbacks), where nothing set in the caller could be undone, and a run whose start another handler refuses gets
no end callback at all. An LLM call the code makes without LangChain (the openai SDK used directly) then finds the
run and its agents.
"""

from __future__ import annotations

import functools
import inspect
import sys
from contextvars import Context, ContextVar
from types import ModuleType, TracebackType
from typing import Any
from uuid import UUID

import agentwatch
from agentwatch import BlockEvent, CircuitBreakerException
from agentwatch.instrumentation import (
    attach,
    attach_call_attributes,
    attach_run_budget,
    get_current_agent_scopes,
    swallow_internal_error,
)

from ._graph import graph_block, graph_stop, take_answer
from ._runs import RUNS, Run, key_of

__all__ = ["wrap_set_config_context", "module_of", "take_answer_before_block"]

#: The graph run (node, task, or tool in a graph) whose code runs in this context, if its blocks pause the graph for a
#: human (``on_budget="interrupt"``).
PAUSING_RUN: ContextVar[Run | None] = ContextVar("agentwatch_langchain_pausing_run", default=None)
_TAKING: ContextVar[bool] = ContextVar("agentwatch_langchain_taking_answer", default=False)

#: A node's (or task's) span attributes that every LLM call of its code carries, as LangChain's calls there do.
_CALL_ATTRIBUTES = ("langgraph_node", "langgraph_step")


_new_object = object.__new__


def module_of(name: str) -> ModuleType | None:
    """The module, if imported and holding ``set_config_context`` (this layout of it)."""
    module = sys.modules.get(name)
    return module if callable(getattr(module, "set_config_context", None)) else None


def wrap_set_config_context(original: Any, kinds: tuple[str, ...]) -> Any:
    if _takes_config_and_run(original):
        # LangGraph's ``set_config_context(config, run=None)``, spelled out: through ``*args, **kwargs`` every node's
        # start cost ~1.7k machine instructions more (the tuple and dict made, then unpacked again).
        def set_config_context_with_run(config: Any, run: Any = None) -> Any:
            # Built with object.__new__ and its slots set, not through the class call (type.__call__, then __init__ in
            # a frame of its own): ~0.5k machine instructions fewer a node. Every slot of _EnteringRun is set.
            entering: _EnteringRun = _new_object(_EnteringRun)
            entering._inner = original(config, run)
            entering._config = config
            entering._kinds = kinds
            entering._entered = None
            return entering

        return set_config_context_with_run

    def set_config_context(config: Any, *args: Any, **kwargs: Any) -> Any:
        return _EnteringRun(original(config, *args, **kwargs), config, kinds)

    return set_config_context


def _takes_config_and_run(original: Any) -> bool:
    try:
        parameters = list(inspect.signature(original).parameters.values())
    except (TypeError, ValueError):  # no signature to read: the generic wrapper
        return False
    return [(p.name, p.kind, p.default) for p in parameters] == [
        ("config", inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty),
        ("run", inspect.Parameter.POSITIONAL_OR_KEYWORD, None)]


class _EnteringRun:
    """``set_config_context``'s context manager, entering the run (of one of ``kinds``) whose child config this is.

    Every exception of the run's code leaves through its ``__exit__``: a block raised there by any layer (LangChain's
    model call, the openai SDK used directly, a hard budget's reservation, the program itself) leaves the run in a graph
    as the handler's own blocks do (``graph_stop``), before LangGraph's ``RetryPolicy`` or ``error_handler`` (or a
    ``ToolNode`` handling tool errors) sees it.
    """

    __slots__ = ("_inner", "_config", "_kinds", "_entered")

    def __init__(self, inner: Any, config: Any, kinds: tuple[str, ...]) -> None:
        self._inner = inner
        self._config = config
        self._kinds = kinds
        self._entered: tuple[Context, Run] | None = None

    def __enter__(self) -> Context:
        context: Context = self._inner.__enter__()
        # The run is looked up (a UUID's key read in place, as the handler does) and entered here, not in a helper: a
        # frame fewer for every node, ~1.3k machine instructions. Internal errors are caught inline, as
        # ``stop_on_exception`` does, without its frame.
        try:
            config = self._config
            callbacks = config.get("callbacks") if isinstance(config, dict) else None
            parent = getattr(callbacks, "parent_run_id", None)
            if parent is None:
                return context
            run = RUNS.get(parent.int if parent.__class__ is UUID else key_of(parent))
            if run is None or run.span.kind not in self._kinds:
                return context
            context.run(_make_current, run)  # the copy is dropped when the run's code ends: nothing to undo
            self._entered = context, run
        except Exception:
            swallow_internal_error("_EnteringRun.__enter__")
        return context

    def __exit__(self, kind: Any, error: BaseException | None, traceback: TracebackType | None) -> Any:
        entered = self._entered
        # The usual exit (no error) told first, without the run's lookup and the isinstance call (~0.2k machine
        # instructions a node)
        if error is None or entered is None or not entered[1].in_graph \
                or not isinstance(error, CircuitBreakerException):
            return self._inner.__exit__(kind, error, traceback)
        # Before the inner exit: it resets the task's config in the context, and a pause's interrupt() reads it there.
        stop = _stop(*entered, error)
        suppressed = self._inner.__exit__(kind, error, traceback)
        if suppressed or stop is error:
            return suppressed
        raise stop.with_traceback(traceback) from None


def _make_current(run: Run) -> None:
    """In the context the run's code runs in (one ``Context.run`` for all of it): the run's span current, its agent
    scopes (those this context lacks) and its run budgets pushed, so that an LLM call made there without LangChain (the
    openai SDK used directly) is recorded under the run and counted against its agents and its thread's budget; a
    node's attributes for the LLM calls made there (LangChain's own calls in a node carry them, from its metadata; the
    SDK's get them here); and the run as the one whose blocks pause the graph."""
    # Entered here, not by a helper of its own: a frame fewer for every node (~0.45k machine instructions).
    span = run.span
    attach(span)
    if run.scopes:  # the context's own scopes are read only when there is one to push
        pushed = {id(scope.monitor) for scope in get_current_agent_scopes()}
        for scope in run.scopes:
            if id(scope.monitor) not in pushed:  # a scope the context has already (``with agentwatch.agent``)
                pushed.add(id(scope.monitor))
                attach(agent=scope)
    for budget in run.budgets:
        attach_run_budget(budget)
    if span.kind != "tool":
        attributes = span.attributes
        node = {}
        for key in _CALL_ATTRIBUTES:  # a loop, not a comprehension: that is a function call of its own in 3.11
            if key in attributes:
                node[key] = attributes[key]
        if node:
            attach_call_attributes(node)
    if run.pauses and run.in_graph:
        PAUSING_RUN.set(run)


def take_answer_before_block(event: BlockEvent) -> bool:
    """``agentwatch_before_block``: a call about to be blocked in a graph that pauses for a human takes the answer to
    that pause, if the graph is being resumed with one, where the pause was raised; the call is then checked again. A
    LangChain model call takes it at its start already (the handler): this is for a call made without LangChain (the
    openai SDK used directly), which would otherwise be blocked again on every resume. True if an answer was taken."""
    run = PAUSING_RUN.get()
    if run is None or _TAKING.get():
        return False
    token = _TAKING.set(True)  # the check inside take_answer may block: not asked again from there
    try:
        return take_answer((event.monitor,), functools.partial(_check, run))
    finally:
        _TAKING.reset(token)


def _check(run: Run) -> None:
    agentwatch.check_limits(scopes=run.scopes, trace_id=run.span.trace_id)


def _stop(context: Context, run: Run, error: CircuitBreakerException) -> BaseException:
    """``graph_stop`` for the run, in its task's context; an internal error of ours is logged and the block raised."""
    try:
        return graph_stop(error, run.pauses, context.run)
    except Exception:
        swallow_internal_error("langchain: a block leaving a graph node")
        return graph_block(error)
