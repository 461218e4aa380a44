"""A Flow's steps: one span per step execution, and a block that leaves a step stops the Flow's run.

Every step of a Flow (``@start``, ``@listen``, ``@router`` methods) runs through ``Flow._execute_method``, in the
Flow's context (each parallel listener in a task of its own, a sync step in a thread that copies that context). Its
span ("node", named after the method) is current while the step runs, so the crews it kicks off and the LLM calls it
makes hang under it; a router's outcome is its attribute ``crewai.router_outcome``.

A block that leaves a step uncaught fails the step; CrewAI fails the Flow with it, except where it tolerates a failed
step (racing ``or_`` listeners, the other listeners run beside them), and it lets parallel branches already started
run on, after ``kickoff_async()`` raised too. So the block is recorded on the Flow's run (``Run.stop``): no later step
of that run starts, and no later LLM call in it is sent, while the limit that blocked still holds; ``kickoff*``
raises the block if the Flow would otherwise return.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Coroutine
from typing import Any

from crewai.agents.agent_builder.base_agent_executor import BaseAgentExecutor
from crewai.flow.runtime import Flow

import agentwatch
from agentwatch import CircuitBreakerException, Span
from agentwatch.instrumentation import attach, detach, end_span, stop_on_exception
from agentwatch.plugins.http._patching import Patcher

from ._errors import CrewAICircuitBreakerException
from ._runs import Run, current_run, is_run

__all__ = ["patch", "unpatch"]

_PATCHER = Patcher()


def _flow_run(flow: Any) -> Run | None:
    """The run of this Flow's kickoff the step belongs to (an agent's executor, a Flow too, has none)."""
    if not is_run(flow):
        return None
    run = current_run()
    while run is not None and run.owner is not flow:
        run = run.parent
    return run


@stop_on_exception
def _open_step(flow: Any, method_name: Any) -> tuple[Span, tuple[Any, ...]] | None:
    client = agentwatch.get_client()
    if client is None:
        return None
    attributes: dict[str, Any] = {"framework": "crewai"}
    if _is_router(flow, method_name):
        attributes["crewai.router"] = True
    span = client.start_span(str(method_name), "node", attributes=attributes)
    return span, attach(span)


def _is_router(flow: Any, method_name: Any) -> bool:
    try:
        return bool(flow._is_router(method_name))
    except Exception:  # another CrewAI layout: the outcome is still recorded if the step returned one
        return False


@stop_on_exception
def _close_step(span: Span, token: tuple[Any, ...], error: BaseException | None, outcome: Any = None) -> None:
    detach(token)
    if error is None and span.attributes.get("crewai.router") and outcome is not None:
        span.attributes["crewai.router_outcome"] = str(outcome.value if isinstance(outcome, enum.Enum) else outcome)
    if error is not None and type(error).__name__ == "HumanFeedbackPending":
        span.attributes["crewai.paused"] = True  # waiting for a human's feedback, not a failure
        error = None
    end_span(span, error)


@stop_on_exception
def _refuse_step(flow: Any, method_name: Any, blocked: CircuitBreakerException) -> None:
    """The span of a step that did not start: an earlier step's block stopped its run."""
    client = agentwatch.get_client()
    if client is None:
        return
    span = client.start_span(str(method_name), "node", attributes={"framework": "crewai",
                                                                    "crewai.refused_after_block": True})
    end_span(span, blocked)


def _step_boundary(original: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _execute_method(self: Any, method_name: Any, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        # Not a coroutine function itself: CrewAI awaits what it returns. An agent's executor (a Flow too, never a run
        # of its own: ``is_run``) runs its steps here, ~9 per LLM call in a crew; they get CrewAI's own coroutine, with
        # no coroutine of ours around it to pass every suspension through (~170 fewer bytecodes and ~19 fewer
        # coroutine resumptions per LLM call in a crew).
        if isinstance(self, BaseAgentExecutor):  # not is_run(self), inlined: ~9 calls per LLM call in a crew
            return original(self, method_name, *args, **kwargs)
        return _run_step(original, self, method_name, args, kwargs)

    return _execute_method


async def _run_step(original: Callable[..., Coroutine[Any, Any, Any]], flow: Any, method_name: Any,
                    args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    run = _flow_run(flow)
    if run is None:
        return await original(flow, method_name, *args, **kwargs)
    earlier = run.stopped_by()
    if earlier is not None:
        _refuse_step(flow, method_name, earlier)
        raise CrewAICircuitBreakerException(earlier)
    opened = _open_step(flow, method_name)
    try:
        outcome = await original(flow, method_name, *args, **kwargs)
    except BaseException as error:
        if isinstance(error, CircuitBreakerException):
            run.stop(error)
        if opened is not None:
            _close_step(*opened, error)
        raise
    if opened is not None:
        result = outcome[0] if isinstance(outcome, tuple) and outcome else None
        _close_step(*opened, None, result)
    return outcome


def patch() -> None:
    _PATCHER.replace(Flow, "_execute_method", _step_boundary)


def unpatch() -> None:
    _PATCHER.restore()
