"""A block raised inside an agent's tool reaches the caller of the agent's run (or its team's), the run ending there.

AgentChat makes every error of a tool the tool's result: ``StaticWorkbench.call_tool`` / ``call_tool_stream`` catch
``Exception``, and ``AssistantAgent`` gives the text to the model (``FunctionExecutionResult(is_error=True)``, with
``reflect_on_tool_use`` or its next tool iteration) or answers with it (``ToolCallSummaryMessage``, which the next
speaker of a team sends to its model). A block (an agent used as a tool, out of its own budget; the tool's own LLM
call) would become text that later paid requests carry, and the caller would never hear of it.

The tool's wrapper (``run_json``, ``run_json_stream``) notes a block leaving the tool on the run of the agent that
called it (``AgentRun``: a context variable the tool's task inherits from the agent's step). The agent's stream
raises it once the calls' results are in (after ``ToolCallExecutionEvent``; its other tool calls of that turn have
finished), in place of its next step: nothing more is sent. AgentChat has added the results to the agent's model
context by then, so the conversation stays one a provider accepts: a continued run sends it, the blocked call's
result being the block's text, and the model may call the tool again.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from agentwatch import CircuitBreakerException

from ._blocked import raise_blocked

__all__ = ["AgentRun", "AGENT_RUN", "note_tool_block", "raising_tool_blocks", "returning_or_raising"]


class AgentRun:
    """One run of an agent (its ``on_messages`` or ``on_messages_stream``): the first block met by one of its tools."""

    __slots__ = ("blocked",)

    def __init__(self) -> None:
        self.blocked: CircuitBreakerException | None = None


AGENT_RUN: ContextVar[AgentRun | None] = ContextVar("agentwatch_autogen_agent_run", default=None)


def note_tool_block(run: AgentRun | None, blocked: CircuitBreakerException) -> None:
    if run is not None and run.blocked is None:
        run.blocked = blocked


def _results_in(item: Any) -> bool:
    from autogen_agentchat.messages import ToolCallExecutionEvent  # loaded: an agent of AgentChat yielded it

    return isinstance(item, ToolCallExecutionEvent)


def _final(item: Any) -> bool:
    from autogen_agentchat.base import Response

    return isinstance(item, Response)


async def raising_tool_blocks(inner: AsyncGenerator[Any, None], run: AgentRun) -> AsyncGenerator[Any, None]:
    """``inner``'s items (an agent's ``on_messages_stream``) until a block met by one of its tools: raised after the
    item that gives the calls' results, or in place of the agent's final ``Response``."""
    try:
        async for item in inner:
            if run.blocked is not None and _final(item):
                await raise_blocked(run.blocked)
            yield item
            if run.blocked is not None and _results_in(item):
                await raise_blocked(run.blocked)
    finally:
        await inner.aclose()


def returning_or_raising(function: Callable[..., Awaitable[Any]], run: AgentRun) -> Callable[..., Awaitable[Any]]:
    """``function`` (an agent's own ``on_messages``), raising the block one of its tools met instead of its answer."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        result = await function(*args, **kwargs)
        if run.blocked is not None:
            await raise_blocked(run.blocked)
        return result

    return call
