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
context by then; every tool call keeps its result, so the conversation stays one a provider accepts. A blocked call's
result there is rewritten (through the context's own ``save_state`` / ``load_state``) from the block's text to a
neutral one saying the call did not finish because of a spending limit: a run continued after the recovery does not
show the model our message as if the tool had answered, and the model may call the tool again. The
``ToolCallExecutionEvent`` the program got keeps the block's text.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any, NoReturn

from agentwatch import CircuitBreakerException
from agentwatch.instrumentation import stop_on_exception

from ._blocked import raise_blocked

__all__ = ["AgentRun", "AGENT_RUN", "NOT_FINISHED", "note_tool_block", "raising_tool_blocks", "returning_or_raising"]


class AgentRun:
    """One run of an agent (its ``on_messages`` or ``on_messages_stream``): the blocks met by its tools, the first
    raised."""

    __slots__ = ("agent", "blocked", "blocks")

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.blocked: CircuitBreakerException | None = None
        self.blocks: list[CircuitBreakerException] = []


AGENT_RUN: ContextVar[AgentRun | None] = ContextVar("agentwatch_autogen_agent_run", default=None)

#: What the model reads as a blocked call's result in a continued run.
NOT_FINISHED = ("The tool call did not finish: it was stopped by a spending limit. Call the tool again if you still "
                "need its result.")


def note_tool_block(run: AgentRun | None, blocked: CircuitBreakerException) -> None:
    if run is not None:
        if run.blocked is None:
            run.blocked = blocked
        run.blocks.append(blocked)


async def _raise_tool_block(run: AgentRun, blocked: CircuitBreakerException) -> NoReturn:
    await _neutral_results(run)
    await raise_blocked(blocked)


@stop_on_exception
async def _neutral_results(run: AgentRun) -> None:
    """In the agent's model context, the results of its last tool calls that are a block's text say instead that the
    call did not finish. An agent without a model context (not an ``AssistantAgent``) has nothing to rewrite."""
    context = getattr(run.agent, "model_context", None)
    if context is None or not run.blocks:
        return
    texts = {str(blocked).strip() for blocked in run.blocks}
    state = await context.save_state()
    messages = state.get("messages") if isinstance(state, dict) else None
    for message in reversed(messages or ()):
        if message.get("type") == "FunctionExecutionResultMessage":
            changed = False
            for result in message.get("content") or ():
                if result.get("is_error") and str(result.get("content", "")).strip() in texts:
                    result["content"] = NOT_FINISHED
                    changed = True
            if changed:
                await context.load_state(state)
            return


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
                await _raise_tool_block(run, run.blocked)
            yield item
            if run.blocked is not None and _results_in(item):
                await _raise_tool_block(run, run.blocked)
    finally:
        await inner.aclose()


def returning_or_raising(function: Callable[..., Awaitable[Any]], run: AgentRun) -> Callable[..., Awaitable[Any]]:
    """``function`` (an agent's own ``on_messages``), raising the block one of its tools met instead of its answer."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        result = await function(*args, **kwargs)
        if run.blocked is not None:
            await _raise_tool_block(run, run.blocked)
        return result

    return call
