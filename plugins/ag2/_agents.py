"""Structure for classic AG2: chats, agents' replies (each agent's name is its agent scope) and tools.

- ``ConversableAgent.initiate_chat`` / ``a_initiate_chat``: a ``chain`` span for the chat.
- ``ConversableAgent.generate_reply`` / ``a_generate_reply``: an ``agent`` span; the agent's scope is
  pushed, so per-agent limits apply to the LLM calls of its reply.
- Tool calls through AG2's own hooks (``register_hook("safeguard_tool_inputs" / "safeguard_tool_outputs")``),
  registered on each agent the first time it replies and removed at ``shutdown()``.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from agentwatch.instrumentation import Span, capturing, get_client, stop_on_exception
from agentwatch.plugins.autogen._frames import Frame, call_in_frame, open_frame

__all__ = ["wrap_generate_reply", "wrap_a_generate_reply", "wrap_initiate_chat", "wrap_a_initiate_chat",
           "open_span_of", "remove_hooks"]

_CURRENT_AGENT: ContextVar[Any] = ContextVar("agentwatch_ag2_agent", default=None)
_TOOL_INPUTS, _TOOL_OUTPUTS = "safeguard_tool_inputs", "safeguard_tool_outputs"

# The open reply span of each agent, for calls AG2 makes off the agent's context (executor threads).
_open_spans: dict[int, Span] = {}
# Agents carrying our hooks, and the hooks (bound to the agent) to take out again.
_Hooks = tuple[Callable[..., Any], Callable[..., Any]]
_hooked: weakref.WeakKeyDictionary[Any, _Hooks] = weakref.WeakKeyDictionary()
_hooked_lock = threading.Lock()


def open_span_of(agent: Any) -> Span | None:
    return _open_spans.get(id(agent))


# ---- tools, through AG2's hooks -----------------------------------------------------------------------


class _ToolHooks:
    """The two hooks of one agent; tool calls of one reply run one after the other, so a stack pairs them."""

    def __init__(self) -> None:
        self._open: list[Span] = []

    @stop_on_exception
    def _start(self, tool_input: Any) -> None:
        client = get_client()
        if client is None or not isinstance(tool_input, dict):
            return
        name = str(tool_input.get("name") or "tool")
        span = client.start_span(name, "tool", attributes={"framework": "ag2", "tool.name": name})
        if capturing(client):
            span.input = tool_input.get("arguments")
        self._open.append(span)

    @stop_on_exception
    def _end(self, tool_output: Any) -> None:
        client = get_client()
        if not self._open:
            return
        span = self._open.pop()
        content = tool_output.get("content") if isinstance(tool_output, dict) else tool_output
        if capturing(client):
            span.output = content
        if client is not None:
            client.end_span(span)
        else:
            span.finish()

    def inputs(self, tool_input: Any) -> Any:
        self._start(tool_input)
        return tool_input

    def outputs(self, tool_output: Any) -> Any:
        self._end(tool_output)
        return tool_output


@stop_on_exception
def _ensure_hooks(agent: Any) -> None:
    if agent in _hooked:  # every reply after an agent's first: no lock (a lookup is safe while another thread adds)
        return
    hook_lists = getattr(agent, "hook_lists", None)
    if not isinstance(hook_lists, dict) or _TOOL_INPUTS not in hook_lists or _TOOL_OUTPUTS not in hook_lists:
        return
    with _hooked_lock:
        if agent in _hooked:
            return
        hooks = _ToolHooks()
        agent.register_hook(_TOOL_INPUTS, hooks.inputs)
        agent.register_hook(_TOOL_OUTPUTS, hooks.outputs)
        _hooked[agent] = (hooks.inputs, hooks.outputs)


def remove_hooks() -> None:
    with _hooked_lock:
        hooked = list(_hooked.items())
        _hooked.clear()
    for agent, (inputs, outputs) in hooked:
        for name, hook in ((_TOOL_INPUTS, inputs), (_TOOL_OUTPUTS, outputs)):
            hooks = agent.hook_lists.get(name, [])
            if hook in hooks:
                hooks.remove(hook)
    _open_spans.clear()


# ---- agents' replies ----------------------------------------------------------------------------------


@stop_on_exception
def _agent_frame(agent: Any) -> Frame | None:
    client = get_client()
    if client is None or _CURRENT_AGENT.get() is agent:
        return None
    _ensure_hooks(agent)
    name = str(getattr(agent, "name", None) or type(agent).__name__)
    scope = client.agent_scope(name, role=type(agent).__name__)
    frame = open_frame(name, "agent", scope=scope,
                       attributes={"framework": "ag2", "ag2.agent_type": type(agent).__name__},
                       extra=((_CURRENT_AGENT, agent),))
    if frame is not None:
        _open_spans[id(agent)] = frame.span
    return frame


def _close_agent(agent: Any, frame: Frame, error: BaseException | None) -> None:
    if _open_spans.get(id(agent)) is frame.span:
        del _open_spans[id(agent)]
    frame.close(error)


def wrap_generate_reply(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def generate_reply(self: Any, *args: Any, **kwargs: Any) -> Any:
        frame = _agent_frame(self) if get_client() is not None else None
        if frame is None:
            return original(self, *args, **kwargs)
        tokens = frame.enter()
        try:
            reply = original(self, *args, **kwargs)
        except BaseException as error:
            frame.exit(tokens)
            _close_agent(self, frame, error)
            raise
        frame.exit(tokens)
        _close_agent(self, frame, None)
        return reply

    return generate_reply


def wrap_a_generate_reply(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def a_generate_reply(self: Any, *args: Any, **kwargs: Any) -> Any:
        frame = _agent_frame(self) if get_client() is not None else None
        if frame is None:
            return await original(self, *args, **kwargs)
        try:
            return await call_in_frame(frame, original, self, *args, **kwargs)
        finally:
            if _open_spans.get(id(self)) is frame.span:
                del _open_spans[id(self)]

    return a_generate_reply


# ---- chats --------------------------------------------------------------------------------------------


@stop_on_exception
def _chat_frame(initiator: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Frame | None:
    recipient = args[0] if args else kwargs.get("recipient")
    sender_name = str(getattr(initiator, "name", "agent"))
    recipient_name = str(getattr(recipient, "name", "agent"))
    return open_frame(f"chat {sender_name} -> {recipient_name}", "chain",
                      attributes={"framework": "ag2", "ag2.initiator": sender_name,
                                  "ag2.recipient": recipient_name})


def wrap_initiate_chat(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def initiate_chat(self: Any, *args: Any, **kwargs: Any) -> Any:
        frame = _chat_frame(self, args, kwargs) if get_client() is not None else None
        if frame is None:
            return original(self, *args, **kwargs)
        tokens = frame.enter()
        try:
            result = original(self, *args, **kwargs)
        except BaseException as error:
            frame.exit(tokens)
            frame.close(error)
            raise
        frame.exit(tokens)
        frame.close(None)
        return result

    return initiate_chat


def wrap_a_initiate_chat(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def a_initiate_chat(self: Any, *args: Any, **kwargs: Any) -> Any:
        frame = _chat_frame(self, args, kwargs) if get_client() is not None else None
        if frame is None:
            return await original(self, *args, **kwargs)
        return await call_in_frame(frame, original, self, *args, **kwargs)

    return a_initiate_chat
