"""Runs in flight, keyed by LangChain run id (its ``int``) and shared by every handler instance.

Sharing makes an explicit handler and the zero-config one record each run once, and lets a run whose
parent was seen by another handler instance still hang under the right span.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from agentwatch import LLMCall, Span
from agentwatch.instrumentation import (
    AgentScope,
    Monitor,
    get_current_llm_call,
)

from ._messages import estimate_cut_off

__all__ = ["Run", "RUNS", "new_run", "key_of", "parent_key_of", "end_model_run", "end_model_run_left_open"]


class Run:
    """A run in flight. Built by ``new_run`` on the callbacks' paths: a field added here is set there too. (A plain
    class, not a dataclass: making one at import compiles its methods from generated source, ~0.8 ms of ``init()``.)"""

    __slots__ = ("span", "scopes", "call", "in_graph", "request", "pauses", "budgets", "parent")

    span: Span
    scopes: tuple[AgentScope, ...]
    call: LLMCall | None
    in_graph: bool
    #: A model call's messages (or prompts): what it cost, if it is cut off before any usage comes.
    request: Any
    #: Opened by a handler with ``on_budget="interrupt"``: a block in a graph pauses for a human instead of raising.
    pauses: bool
    #: The per-run budgets (a LangGraph thread's) the run's code spends from, whichever layer makes its calls.
    budgets: tuple[Monitor, ...]
    #: A model call's parent span as given to ``start_llm_call`` (None: the context's current span), for ``_adopt``.
    parent: Span | None

    def __repr__(self) -> str:
        return f"Run(span={self.span!r}, call={self.call!r})"


_new_object = object.__new__


def new_run(span: Span, scopes: tuple[AgentScope, ...], call: LLMCall | None, in_graph: bool, request: Any,
            pauses: bool, budgets: tuple[Monitor, ...], parent: Span | None) -> Run:
    """A ``Run`` with every field given, built with ``object.__new__`` and its slots set: not through a class call
    (``type.__call__``, then an ``__init__`` in a frame of its own), ~0.3k machine instructions fewer a run (callgrind
    micro loop 2.7k -> 2.4k; every model call and chain run opens one)."""
    run: Run = _new_object(Run)
    run.span = span
    run.scopes = scopes
    run.call = call
    run.in_graph = in_graph
    run.request = request
    run.pauses = pauses
    run.budgets = budgets
    run.parent = parent
    return run


#: Keyed by the run id's ``int``: ``UUID.__hash__`` is a Python function (~1.2k machine instructions a lookup, ~0.3k
#: by the int), and a chat call looks its run up ~3 times, a graph step ~10. Whatever hands a run id back to LangChain
#: keeps the UUID. dict operations are atomic under the GIL; callbacks of one run never race with each other. The
#: callbacks of every chat call and chain run read a UUID's key in place (``run_id.int if run_id.__class__ is UUID``)
#: and call ``key_of`` only for another kind of id: four calls of it cost a chat call ~1.5k of the ~3k saved.
RUNS: dict[int, Run] = {}


def key_of(run_id: Any) -> int:
    """The key of ``run_id`` in ``RUNS``. LangChain hands its handlers the run id the program gave in
    ``config={"run_id": ...}`` as it was given, and a UUID's text is accepted there (LangChain's own tracers parse it):
    such a run, and every run under it (whose ``parent_run_id`` is that text), is keyed by the UUID it names."""
    try:
        return run_id.int  # type: ignore[no-any-return]
    except AttributeError:
        return _text_key(run_id)


def parent_key_of(parent_run_id: Any) -> int | None:
    """``key_of`` of a parent run id; None for a run without a parent."""
    return None if parent_run_id is None else key_of(parent_run_id)


def _text_key(run_id: Any) -> int:
    try:
        return UUID(str(run_id)).int
    except ValueError:  # not a UUID at all (LangChain's own tracers refuse it): still one key per id
        return hash(run_id)


def end_model_run(run_key: int, error: BaseException, response: Any = None) -> None:
    """End the model run of ``run_key`` (its run id's ``int``) with ``error`` (``on_llm_error``); a run ended already is
    left alone."""
    run = RUNS.pop(run_key, None)
    if run is None or run.call is None:
        return
    call = run.call
    call.deactivate()
    if not isinstance(error, Exception) and not (call.span.input_tokens or call.span.output_tokens):
        # Cut off by the caller (a stream left by break, a cancelled task) before any usage came: the request was
        # sent, and the provider's own stream may end after this (an async one when the loop closes it).
        estimate_cut_off(call, run.request, response)
    call.end(error=error)


def end_model_run_left_open(before: LLMCall | None, error: BaseException, opened: LLMCall | None = None) -> None:
    """A model's entry point is left by ``error``, a SystemExit or KeyboardInterrupt that another handler raised in
    one of the run's callbacks (LangChain stops dispatching an event at a handler that raises one, and sends the run
    no end). If ours never heard the end, the call it made current is still current here (``before`` is the one that
    was; a stream, whose steps give the caller's context back, passes the call its first step ``opened``); it is
    ended with ``error`` rather than left open for good (its span never sent, its spend never charged, a hard
    budget's reservation held). Runs only on that path."""
    call = opened if opened is not None else get_current_llm_call()
    if call is None or call is before or call.ended:
        return
    for run_key, run in list(RUNS.items()):
        if run.call is call:
            end_model_run(run_key, error)
