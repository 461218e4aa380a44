"""LangGraph specifics: the block exception LangGraph neither retries nor swallows, control flow."""

from __future__ import annotations

import functools
import logging
from typing import Any

from agentwatch import CircuitBreakerException
from agentwatch._safe import PASS_THROUGH

__all__ = ["graph_block", "is_control_flow", "allow_graph_control_flow", "interrupt_for_budget"]

_CONTROL_FLOW_NAMES = frozenset({"GraphInterrupt", "GraphBubbleUp", "GraphDrained", "ParentCommand", "NodeInterrupt"})


@functools.cache
def _graph_block_class() -> type[CircuitBreakerException] | None:
    try:
        from langgraph.errors import GraphBubbleUp
    except ImportError:
        return None

    class GraphCircuitBreakerException(CircuitBreakerException, GraphBubbleUp):
        """A block inside a graph. As a GraphBubbleUp, a node's RetryPolicy does not retry it and an
        ``error_handler`` does not swallow it; the checkpoint keeps every finished node. Catch it as
        ``CircuitBreakerException``."""

    GraphCircuitBreakerException.__module__ = "agentwatch.plugins.langchain"
    return GraphCircuitBreakerException


def graph_block(error: CircuitBreakerException) -> CircuitBreakerException:
    """The same block as an exception LangGraph lets through untouched."""
    kind = _graph_block_class()
    if kind is None or isinstance(error, kind):
        return error
    converted = kind(error.reason, error.threshold, error.current, scope=error.scope, scope_id=error.scope_id,
                     trace_id=error.trace_id, state=error.state, monitor=error.monitor)
    return converted


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


@functools.cache
def allow_graph_control_flow() -> None:
    """Let LangGraph's control-flow exceptions (e.g. ``interrupt()``) pass the SDK's never-raise guard,
    and keep LangChain from logging our deliberate raises as callback errors."""
    logging.getLogger("langchain_core.callbacks.manager").addFilter(_ExpectedRaises())
    try:
        from langgraph.errors import GraphBubbleUp
    except ImportError:
        return
    PASS_THROUGH.append(GraphBubbleUp)


def interrupt_for_budget(error: CircuitBreakerException) -> None:
    """Pause the graph for a human; resume with ``Command(resume={"increase_budget": 5.0})``.

    Raises GraphInterrupt the first time; on resume the node re-runs, ``interrupt()`` returns the
    resume value, and the top-up (or ``{"reset": True}`` / ``{"pause": seconds}``) is applied here.
    """
    from langgraph.types import interrupt

    answer = interrupt({
        "type": "agentwatch.circuit_breaker", "reason": error.reason, "scope": error.scope,
        "scope_id": error.scope_id, "threshold": error.threshold, "current": error.current,
        "hint": 'resume with Command(resume={"increase_budget": <usd>}) or {"reset": True}',
    })
    _apply_resume(error, answer)


def _apply_resume(error: CircuitBreakerException, answer: Any) -> None:
    monitor = error.monitor
    if monitor is None or not isinstance(answer, dict):
        return
    if answer.get("increase_budget"):
        monitor.increase_budget(float(answer["increase_budget"]))
    if answer.get("reset"):
        monitor.reset_windows()
    if answer.get("pause") is not None:
        monitor.pause(float(answer["pause"]))
