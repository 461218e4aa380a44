"""LangGraph specifics: the block exception LangGraph neither retries nor swallows, control flow."""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agentwatch import CircuitBreakerException
from agentwatch.instrumentation import add_pass_through

if TYPE_CHECKING:
    from agentwatch import Monitor

__all__ = ["graph_block", "graph_stop", "is_control_flow", "allow_graph_control_flow", "interrupt_for_budget",
           "take_answer"]

_CONTROL_FLOW_NAMES = frozenset({"GraphInterrupt", "GraphBubbleUp", "GraphDrained", "ParentCommand", "NodeInterrupt"})


def _graph_bubble_up() -> type[BaseException] | None:
    """LangGraph's ``GraphBubbleUp``, or None while ``langgraph.errors`` cannot be imported. Asked again each time
    until it can: a handler may be made while LangGraph is half imported (``from langgraph.types import Command``
    imports langchain-core, whose configure hook makes our handler, before ``langgraph.errors`` can be)."""
    try:
        from langgraph.errors import GraphBubbleUp
    except ImportError:
        return None
    return GraphBubbleUp


_block_class: type[CircuitBreakerException] | None = None


def _graph_block_class() -> type[CircuitBreakerException] | None:
    global _block_class
    if _block_class is None:
        bubble_up = _graph_bubble_up()
        if bubble_up is None:
            return None

        class GraphCircuitBreakerException(CircuitBreakerException, bubble_up):  # type: ignore[valid-type,misc]
            """A block inside a graph. As a GraphBubbleUp, a node's RetryPolicy does not retry it and an
            ``error_handler`` does not swallow it; the checkpoint keeps every finished node. Catch it as
            ``CircuitBreakerException``."""

        # Named where pickle looks it up (the package's __getattr__): a block raised in a node run by a process pool's
        # worker crosses back to the caller as itself.
        GraphCircuitBreakerException.__module__ = "agentwatch.plugins.langchain"
        GraphCircuitBreakerException.__qualname__ = "GraphCircuitBreakerException"
        _block_class = GraphCircuitBreakerException
    return _block_class


def graph_block(error: CircuitBreakerException) -> CircuitBreakerException:
    """The same block as an exception LangGraph lets through untouched: every field of ``error`` kept, ``what`` too
    (an embedding call blocked in a node is named so in the message, not as an LLM call)."""
    kind = _graph_block_class()
    if kind is None or isinstance(error, kind):
        return error
    return kind(error.reason, error.threshold, error.current, scope=error.scope, scope_id=error.scope_id,
                trace_id=error.trace_id, state=error.state, monitor=error.monitor, reserved=error.reserved,
                remaining=error.remaining, what=error.what)


def graph_stop(error: CircuitBreakerException, pause: bool, run_in_task: Callable[..., Any]) -> BaseException:
    """What a block leaving a node's code (or a tool's, in a graph) becomes, whichever layer raised it: a pause for a
    human (``pause``: ``on_budget="interrupt"``), else the block as LangGraph lets it through. A block that already is
    the graph's (the handler's own, or an inner node's) stays as it is. ``run_in_task`` calls a function in the task's
    context, where ``interrupt()`` finds the task's config."""
    kind = _graph_block_class()
    if kind is not None and isinstance(error, kind):
        return error
    if pause:
        try:
            run_in_task(interrupt_for_budget, error)
        except BaseException as paused:
            if not is_control_flow(paused):
                raise
            return paused
        # interrupt() returned: an answer of ours was pending at this place (the node took none at its start, a pause
        # after the node's own interrupt()); it is applied now, too late for this run, so the block stops the graph.
    return graph_block(error)


def is_control_flow(error: BaseException) -> bool:
    """LangGraph's interrupts, drains and parent commands travel as exceptions; they are not errors."""
    return any(kind.__name__ in _CONTROL_FLOW_NAMES and kind.__module__.startswith("langgraph")
               for kind in type(error).__mro__)


class _ExpectedRaises(logging.Filter):
    """LangChain logs a warning for every exception a callback raises, even a deliberate one; a block or
    an interrupt from our handler is the intended outcome, reported to the caller, not a callback bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Error in AgentWatchHandler.")
                    and ("CircuitBreakerException" in message or "GraphInterrupt" in message))


_control_flow_allowed = False


def allow_graph_control_flow() -> None:
    """Let LangGraph's control-flow exceptions (e.g. ``interrupt()``) pass the SDK's never-raise guard,
    and keep LangChain from logging our deliberate raises as callback errors. Done once LangGraph can be imported
    (asked again before each pause: the handler may have been made while it could not)."""
    global _control_flow_allowed
    if _control_flow_allowed:
        return
    _quiet_expected_raises()
    bubble_up = _graph_bubble_up()
    if bubble_up is not None:
        add_pass_through(bubble_up)
        _control_flow_allowed = True


@functools.cache
def _quiet_expected_raises() -> None:
    logging.getLogger("langchain_core.callbacks.manager").addFilter(_ExpectedRaises())


def interrupt_for_budget(error: CircuitBreakerException) -> None:
    """Pause the graph for a human; resume with ``Command(resume={"increase_budget": 5.0})``.

    Raises GraphInterrupt. On resume the node re-runs and ``take_answer`` hands the human's answer over
    before the model call is checked, so the pause is not blocked (and recorded) a second time.
    """
    from langgraph.types import interrupt

    allow_graph_control_flow()
    answer = interrupt(_request(error))
    _apply(error.monitor, answer)  # only if an answer was pending that take_answer did not recognise


def take_answer(monitors: Sequence[Monitor], check: Callable[[], None]) -> bool:
    """On resume after a pause of ours, in whichever process resumes: apply the human's answer now.

    LangGraph matches resume values to ``interrupt()`` calls by their order in the node, so the answer
    is taken with ``interrupt()`` at the same point where the pause was raised: the model call's start.
    ``check`` raises the block this process would raise now; its monitor gets the answer, otherwise the
    innermost of ``monitors`` with a budget (the process that paused may not be this one). True if an answer was
    pending (taken, and applied unless it was already).
    """
    from langgraph.types import interrupt

    pending = _pending_answer()
    if pending is None:
        return False
    key, answer, step, run = pending
    allow_graph_control_flow()
    interrupt(None)  # returns the pending answer: consumes the index the pause had
    _remember_taken(run, answer)
    if key in _applied:  # a node re-run for a later pause replays earlier answers: apply each once
        return True
    with _answering:  # siblings answered at once run in parallel: one looks and applies at a time
        blocked = False
        try:
            check()
            target = next((m for m in monitors if m.budget_per_hour is not None), monitors[-1] if monitors else None)
        except CircuitBreakerException as error:
            target, blocked = error.monitor, True
        answered = (step, id(target))
        # Parallel branches (a Send fan-out) blocked by one limit pause each and are answered each: the first answer
        # of the step lifts the block, a sibling's is not added on top of it (three top-ups of $1 are not $3).
        if not blocked and answered in _answered_steps:
            return True
        if len(_applied) > 4096:
            _applied.clear()
            _answered_steps.clear()
        _applied.add(key)
        _answered_steps.add(answered)
        _apply(target, answer)
    return True


_answering = threading.Lock()


#: Answers applied in this process, by LangGraph interrupt position (task checkpoint namespace, index).
_applied: set[tuple[str, int]] = set()

#: (thread, graph namespace, step) and monitor of the answers applied in this process.
_answered_steps: set[tuple[tuple[str, str, int], int]] = set()

#: Answers taken by a pause's ``interrupt(None)``, per run (thread, root checkpoint) and by identity (the object kept,
#: so its id is not reused). A resume without an interrupt id (``Command(resume=...)``) is one value for the whole
#: step: each task's scratchpad still shows it after one task consumed it, so a later task (a Functional API
#: ``@task``) must not take it again. Per run: a program answering every pause with one constant dict is answered
#: in each run.
_taken: dict[tuple[str, str, int], Any] = {}


def _run_of(configurable: Mapping[str, Any]) -> tuple[str, str]:
    """(thread id, root checkpoint id) of a task's graph run: the step an answer was given for."""
    roots = configurable.get("checkpoint_map") or {}
    return str(configurable.get("thread_id", "")), str(roots.get("", "") if isinstance(roots, dict) else "")


def _remember_taken(run: tuple[str, str], answer: Any) -> None:
    if len(_taken) > 4096:
        _taken.clear()
    _taken[(*run, id(answer))] = answer


def _pending_answer() -> tuple[tuple[str, int], dict[str, Any], tuple[str, str, int], tuple[str, str]] | None:
    """The resume value the node's next ``interrupt()`` would return, if it is an answer to our pause: with its
    interrupt position, the (thread, graph, step) it belongs to and its run (``_run_of``)."""
    try:
        from langgraph._internal._constants import CONFIG_KEY_SCRATCHPAD
        from langgraph.config import get_config

        configurable = get_config()["configurable"]
        scratchpad = configurable[CONFIG_KEY_SCRATCHPAD]
    except (ImportError, RuntimeError, KeyError):
        return None
    index = _next_interrupt_index(scratchpad.interrupt_counter)
    if index is None:  # unknown LangGraph internals: only a fresh answer is recognised
        index = len(scratchpad.resume)
    resumed = scratchpad.resume
    run = _run_of(configurable)
    if index < len(resumed):
        value = resumed[index]
    elif index == len(resumed):
        value = scratchpad.get_null_resume(False)
        if resumed and value is resumed[-1] or _taken.get((*run, id(value))) is value:  # taken in this run
            value = None
    else:
        value = None
    if not (isinstance(value, dict) and _ANSWER_KEYS & value.keys()):
        return None
    namespace = str(configurable.get("checkpoint_ns", ""))
    graph = namespace.rpartition("|")[0]  # the task's own segment off: its siblings share the rest
    return (namespace, index), value, (run[0], graph, int(scratchpad.step)), run


def _next_interrupt_index(counter: Any) -> int | None:
    """Peek LangGraph's per-task interrupt counter (a lazily made ``itertools.count``) without advancing it."""
    inner = getattr(counter, "_counter", False)
    if inner is None:
        return 0
    source = getattr(inner, "__self__", None)
    if isinstance(source, itertools.count):
        shown = repr(source)  # "count(2)": the value the next call returns
        if shown.startswith("count(") and shown[6:-1].isdigit():
            return int(shown[6:-1])
    return None


_ANSWER_KEYS = frozenset({"increase_budget", "reset", "pause"})


def _request(error: CircuitBreakerException) -> dict[str, Any]:
    """The pause's value, as a human's tool shows it: what was blocked (an LLM call, an embedding call), why, and the
    block's own sentence."""
    return {
        "type": "agentwatch.circuit_breaker", "reason": error.reason, "scope": error.scope,
        "scope_id": error.scope_id, "threshold": error.threshold, "current": error.current,
        "what": error.what, "message": str(error),
        "hint": 'resume with Command(resume={"increase_budget": <usd>}) or {"reset": True}',
    }


def _apply(monitor: Monitor | None, answer: Any) -> None:
    if monitor is None or not isinstance(answer, dict):
        return
    if answer.get("increase_budget"):
        monitor.increase_budget(float(answer["increase_budget"]))
    if answer.get("reset"):
        monitor.reset_windows()
    if answer.get("pause") is not None:
        monitor.pause(float(answer["pause"]))
