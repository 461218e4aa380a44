"""A LangGraph node (or ``@task``) cut off by its ``timeout=`` ends its span with the error the program sees.

LangGraph runs a timed node in a task of its own; when the timeout fires it cancels that task and raises
``NodeTimeoutError`` to the graph (``langgraph.pregel._retry._arun_with_timeout``), which retries it under the node's
``RetryPolicy`` or raises it to the caller. The node's own run hears only the cancellation (``CancelledError``), and
later: the node's span is ended here, as the timeout fires, with the ``NodeTimeoutError`` itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

from agentwatch.instrumentation import end_span, stop_on_exception

from ._runs import RUNS

__all__ = ["MODULE", "ORIGINAL", "wrap_timed_run"]

#: Where LangGraph runs a timed node, and the function that does.
MODULE, ORIGINAL = "langgraph.pregel._retry", "_arun_with_timeout"


def wrap_timed_run(original: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Coroutine[Any, Any, Any]]:
    from langgraph.errors import NodeTimeoutError

    @functools.wraps(original)
    async def run_with_timeout(task: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await original(task, *args, **kwargs)
        except NodeTimeoutError as error:
            _end_timed_out(task, error)
            raise

    return run_with_timeout


@stop_on_exception
def _end_timed_out(task: Any, error: BaseException) -> None:
    """End the span of the task's node run (found by its checkpoint namespace, which names the task) with ``error``;
    the cancellation that reaches the run after this finds nothing left to end."""
    namespace = task.config["configurable"]["checkpoint_ns"]
    for run_key, run in list(RUNS.items()):
        span = run.span
        if span.kind in ("node", "task") and span.attributes.get("checkpoint_ns") == namespace:
            if RUNS.pop(run_key, None) is not None:
                end_span(span, error)
