"""A Flow's steps: a block that leaves a step stops the Flow's run.

Every step of a Flow (``@start``, ``@listen``, ``@router`` methods) runs through ``Flow._execute_method``, in the
Flow's context (each parallel listener in a task of its own, a sync step in a thread that copies that context).

A block that leaves a step uncaught fails the step; CrewAI fails the Flow with it, except where it tolerates a failed
step (racing ``or_`` listeners, the other listeners run beside them), and it lets parallel branches already started
run on, after ``kickoff_async()`` raised too. So the block is recorded on the Flow's run (``Run.stop``): no later step
of that run starts, and no later LLM call in it is sent, while the limit that blocked still holds; ``kickoff*``
raises the block if the Flow would otherwise return.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

from crewai.flow.runtime import Flow

from agentwatch import CircuitBreakerException
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


def _step_boundary(original: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def _execute_method(self: Any, method_name: Any, *args: Any, **kwargs: Any) -> Any:
        run = _flow_run(self)
        if run is None:
            return await original(self, method_name, *args, **kwargs)
        earlier = run.stopped_by()
        if earlier is not None:
            raise CrewAICircuitBreakerException(earlier)
        try:
            return await original(self, method_name, *args, **kwargs)
        except CircuitBreakerException as blocked:
            run.stop(blocked)
            raise

    return _execute_method


def patch() -> None:
    _PATCHER.replace(Flow, "_execute_method", _step_boundary)


def unpatch() -> None:
    _PATCHER.restore()
