"""Structure: agent spans (each agent's name is its agent scope), team runs and tool calls.

- ``BaseChatAgent.on_messages`` / ``on_messages_stream``: an ``agent`` span; the agent's scope is
  pushed, so per-agent limits (``init(agents={"writer": {...}})``) apply to its model calls.
- ``BaseGroupChat.run_stream`` (``run`` goes through it): a ``chain`` span for the team run. Its
  runtime is started inside that span, so agents run in the runtime's tasks nest under it; a block
  inside reaches the caller as ``CircuitBreakerException`` again (see ``_blocked``).
- ``BaseTool.run_json``: a ``tool`` span; ``BaseStreamTool.run_json_stream`` (what an agent calls for a stream tool:
  ``AgentTool``, ``TeamTool``) too, current while the tool's stream runs, with its final value as output. A block
  leaving a tool the agent called reaches the caller of the agent's run instead of the model (see ``_tool_blocks``).
"""

from __future__ import annotations

import asyncio
import copy
import functools
from collections.abc import AsyncGenerator, Callable
from contextvars import ContextVar
from typing import Any

from agentwatch import CircuitBreakerException
from agentwatch.instrumentation import (
    Frame,
    call_in_frame,
    capturing,
    carry,
    get_client,
    open_frame,
    stepped,
    stop_on_exception,
)

from ._blocked import TEAM_RUN, TeamRun, unwrap_blocked
from ._tool_blocks import AGENT_RUN, AgentRun, note_tool_block, raising_tool_blocks, returning_or_raising

__all__ = ["wrap_on_messages", "wrap_on_messages_stream", "wrap_run_stream", "wrap_run_json", "wrap_run_json_stream",
           "wrap_function_tool_run"]

# The agent (or tool) whose frame is open here: AssistantAgent.on_messages calls its own
# on_messages_stream, which must not open a second span for the same agent.
_CURRENT_AGENT: ContextVar[Any] = ContextVar("agentwatch_autogen_agent", default=None)
_CURRENT_TOOL: ContextVar[Any] = ContextVar("agentwatch_autogen_tool", default=None)


# ---- agents -------------------------------------------------------------------------------------------


@stop_on_exception
def _agent_frame(agent: Any, run: AgentRun) -> Frame | None:
    """The agent's frame; no tool is open in it (one its code calls is a tool of its ``run``)."""
    client = get_client()
    if client is None:
        return None
    name = str(getattr(agent, "name", None) or type(agent).__name__)
    scope = client.agent_scope(name, role=type(agent).__name__)
    return open_frame(name, "agent", scope=scope, attributes={"framework": "autogen",
                                                              "autogen.agent_type": type(agent).__name__},
                      extra=((_CURRENT_AGENT, agent), (AGENT_RUN, run), (_CURRENT_TOOL, None)))


def _skip_agent(agent: Any) -> bool:
    return get_client() is None or _CURRENT_AGENT.get() is agent


def wrap_on_messages(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def on_messages(self: Any, *args: Any, **kwargs: Any) -> Any:
        run = AgentRun(self)
        frame = None if _skip_agent(self) else _agent_frame(self, run)
        if frame is None:
            return await original(self, *args, **kwargs)
        return await call_in_frame(frame, returning_or_raising(original, run), self, *args, **kwargs)

    return on_messages


def wrap_on_messages_stream(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def on_messages_stream(self: Any, *args: Any, **kwargs: Any) -> Any:
        inner = original(self, *args, **kwargs)
        if get_client() is None:
            return inner
        if _CURRENT_AGENT.get() is self:  # its own on_messages, whose frame is open: its run is current
            run = AGENT_RUN.get()
            return inner if run is None else raising_tool_blocks(inner, run)
        run = AgentRun(self)
        frame = _agent_frame(self, run)
        return inner if frame is None else stepped(raising_tool_blocks(inner, run), frame)

    return on_messages_stream


# ---- teams --------------------------------------------------------------------------------------------


def _translator(run: TeamRun) -> Callable[[BaseException], BaseException]:
    def translate(error: BaseException) -> BaseException:
        if isinstance(error, RuntimeError):
            return unwrap_blocked(error, run) or error
        return error

    return translate


@stop_on_exception
def _team_frame(team: Any) -> Frame | None:
    if get_client() is None:
        return None
    run = TeamRun(TEAM_RUN.get())
    team_type = type(team).__name__
    name = str(getattr(team, "name", None) or team_type)
    frame = open_frame(name, "chain", attributes={"framework": "autogen", "autogen.team_type": team_type},
                       extra=((TEAM_RUN, run),))
    if frame is not None:
        frame.translate = _translator(run)
    return frame


def wrap_run_stream(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def run_stream(self: Any, *args: Any, **kwargs: Any) -> Any:
        inner = original(self, *args, **kwargs)
        frame = _team_frame(self)
        return inner if frame is None else stepped(inner, frame)

    return run_stream


# ---- tools --------------------------------------------------------------------------------------------


@stop_on_exception
def _tool_frame(tool: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Frame | None:
    client = get_client()
    if client is None:
        return None
    name = str(getattr(tool, "name", None) or type(tool).__name__)
    attributes: dict[str, Any] = {"framework": "autogen", "tool.name": name}
    call_id = kwargs.get("call_id") or (args[2] if len(args) > 2 else None)
    if call_id:
        attributes["tool.call_id"] = str(call_id)
    frame = open_frame(name, "tool", attributes=attributes, extra=((_CURRENT_TOOL, tool),))
    if frame is not None and capturing(client):
        if args:
            frame.span.input = dict(args[0]) if hasattr(args[0], "keys") else args[0]
        frame.on_result = functools.partial(_tool_output, tool)
    return frame


def _calling_run() -> AgentRun | None:
    """The run of the agent that called this tool itself (a tool called by another tool's code is that tool's
    business: a block it raises reaches the agent only if it leaves the outer tool)."""
    return AGENT_RUN.get() if _CURRENT_TOOL.get() is None else None


def wrap_run_json(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def run_json(self: Any, *args: Any, **kwargs: Any) -> Any:
        skip = get_client() is None or _CURRENT_TOOL.get() is self
        frame = None if skip else _tool_frame(self, args, kwargs)
        if frame is None:
            return await original(self, *args, **kwargs)
        run = _calling_run()
        try:
            return await call_in_frame(frame, original, self, *args, **kwargs)
        except CircuitBreakerException as blocked:
            note_tool_block(run, blocked)
            raise

    return run_json


def wrap_run_json_stream(original: Callable[..., Any]) -> Callable[..., Any]:
    """A stream tool's run (an agent run by ``AgentTool``, a team by ``TeamTool``): its span opens when the stream is
    first read, in the reader's context, and the tool's steps run inside it (the inner agent's span and calls nest
    under it)."""

    @functools.wraps(original)
    async def run_json_stream(self: Any, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        inner = original(self, *args, **kwargs)
        skip = get_client() is None or _CURRENT_TOOL.get() is self
        frame = None if skip else _tool_frame(self, args, kwargs)
        stream = inner if frame is None else stepped(_ending_with_output(inner, frame), frame)
        run = None if frame is None else _calling_run()
        try:
            async for item in stream:
                yield item
        except CircuitBreakerException as blocked:
            note_tool_block(run, blocked)
            raise
        finally:
            await stream.aclose()

    return run_json_stream


async def _ending_with_output(inner: AsyncGenerator[Any, None], frame: Frame) -> AsyncGenerator[Any, None]:
    """``inner``'s items; its last (the tool's return value) is the span's output."""
    last: Any = None
    try:
        async for item in inner:
            last = item
            yield item
    finally:
        await inner.aclose()
    if frame.on_result is not None and last is not None:
        stop_on_exception(frame.on_result)(frame.span, last)


def wrap_function_tool_run(original: Callable[..., Any]) -> Callable[..., Any]:
    """A plain ``def`` tool runs in the loop's default executor, which does not carry the context over: the tool's
    frame (its span, its agent's scope) would be missing there, and an LLM call the tool makes itself would count
    against no agent. It runs with this context's AgentWatch values (``carry``) instead, as an ``async def``
    tool does. Only ``FunctionTool``'s own ``run`` is changed: a subclass's ``run`` is its own business."""
    if getattr(original, "__qualname__", "") != "FunctionTool.run":
        return original

    @functools.wraps(original)
    async def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        carried = _carrying_context(self) if get_client() is not None else None
        return await original(carried if carried is not None else self, *args, **kwargs)

    return run


@stop_on_exception(default=None)
def _carrying_context(tool: Any) -> Any:
    """For the body of ``FunctionTool.run`` only (which reads ``_func``, ``_signature`` and
    ``_has_cancellation_support`` from it): a shallow copy of ``tool`` whose function runs with this context's
    AgentWatch values. None for a coroutine function (awaited in this context already)."""
    func = tool.__dict__.get("_func")
    if func is None or asyncio.iscoroutinefunction(func):
        return None
    values = carry()
    if values is None:
        return None
    carrying = copy.copy(tool)
    carrying._func = functools.partial(values.run, func)
    return carrying


def _tool_output(tool: Any, span: Any, result: Any) -> None:
    as_text = getattr(tool, "return_value_as_string", None)
    span.output = as_text(result) if callable(as_text) else str(result)
