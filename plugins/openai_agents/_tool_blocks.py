"""A block raised inside a function tool reaches the caller of the run, not the calling agent's model.

The SDK runs a function tool (an agent used as a tool via ``as_tool()`` included) inside ``except Exception`` and hands
the error to the tool's failure function, by default a text the model reads ("An error occurred while running the
tool..."): a block there (the inner agent over its budget, the tool's own LLM call refused) was lost to the program,
and the calling agent went on paying for requests around it. The failure function is skipped for a block, so the SDK
raises it as it does any error of a tool without one: as ``UserError("Error running tool …")`` caused by the block.
Each run the block passes out of raises the block itself in its place (``_runs``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents.exceptions import UserError

from agentwatch.instrumentation import CircuitBreakerException

__all__ = ["FAILURE_HANDLER", "skipping_blocks", "tool_block"]

#: The SDK's helper that asks a function tool's failure function for the text of an error (``None``: no text, the
#: error is raised): a global of ``agents.tool`` and of ``agents.run_internal.tool_execution``, which imports it.
FAILURE_HANDLER = "maybe_invoke_function_tool_failure_error_function"


def skipping_blocks(original: Callable[..., Any]) -> Callable[..., Any]:
    async def maybe_invoke_function_tool_failure_error_function(*args: Any, **kwargs: Any) -> Any:
        if isinstance(kwargs.get("error"), CircuitBreakerException):
            return None
        return await original(*args, **kwargs)

    return maybe_invoke_function_tool_failure_error_function


def tool_block(error: BaseException | None) -> CircuitBreakerException | None:
    """The block a tool raised, if ``error`` is the SDK's ``UserError`` made of it."""
    if not isinstance(error, UserError):
        return None
    cause = error.__cause__
    return cause if isinstance(cause, CircuitBreakerException) else None
