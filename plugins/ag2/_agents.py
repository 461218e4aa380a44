"""Structure for classic AG2: chats, agents' replies (each agent's name is its agent scope) and tools.

- ``ConversableAgent.initiate_chat`` / ``a_initiate_chat``: a ``chain`` span for the chat.
- ``ConversableAgent.generate_reply`` / ``a_generate_reply``: an ``agent`` span; the agent's scope is
  pushed, so per-agent limits apply to the LLM calls of its reply.
- ``ConversableAgent.execute_function`` / ``a_execute_function``: a ``tool`` span, current while the function runs,
  with the asking agent's scope; ``_run_async_in_thread`` (an ``async def`` tool in a synchronous chat) carries
  the context over to its thread. A block raised in the tool is raised, not made its ``"Error: ..."`` reply; in an
  async reply it is raised once the reply's other tool calls (run together by ``asyncio.gather``) have finished.
- AG2's own threads (``run`` / ``run_iter`` / ``sequential_run`` and the group-chat ``run_group_chat`` variants run the
  chat on a ``threading.Thread`` they start): each starts with AgentWatch's values of the code that made it
  (``carry``: its span, agent scopes, per-run budgets), so a ``trace(..., budget=...)`` or an agent scope around
  ``agent.run(...)`` holds for the chat. Only the name ``threading`` in those AG2 modules is replaced (``Thread``
  carries, everything else is the standard module); a thread started anywhere else starts empty, as in Python.
- ``ConversableAgent._reflection_with_llm_as_summary`` / ``_reflection_with_llm``: a block of a chat's
  ``reflection_with_llm`` summary reaches the caller of the chat instead of AG2's empty summary, and the summary's
  LLM call is charged to the agent whose client answers it (``charged_agent``).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import threading
import types
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from agentwatch import CircuitBreakerException
from agentwatch.instrumentation import (
    BlockCarrier,
    BlocksMet,
    Carried,
    Frame,
    Span,
    call_in_frame,
    capturing,
    carry,
    finish_frame,
    get_client,
    get_current_agent_scopes,
    open_frame,
    stop_on_exception,
)

__all__ = ["wrap_generate_reply", "wrap_a_generate_reply", "wrap_initiate_chat", "wrap_a_initiate_chat",
           "wrap_execute_function", "wrap_a_execute_function", "wrap_run_async_in_thread", "wrap_reflection_with_llm",
           "wrap_reflection_with_llm_as_summary", "charged_agent", "open_span_of", "forget_open_spans",
           "carry_into_ag2_threads", "restore_ag2_threads"]

_CURRENT_AGENT: ContextVar[Any] = ContextVar("agentwatch_ag2_agent", default=None)
#: The name of the agent whose message the current reply answers: the one that asked for the tool calls it runs.
_REPLYING_TO: ContextVar[Any] = ContextVar("agentwatch_ag2_replying_to", default=None)


class _ToolCalls:
    """The tool calls of one async reply, which AG2 runs together (``asyncio.gather``: each call's task copies the
    reply's context, so all of them see this reply's object). ``running``: those neither finished nor blocked;
    ``settled``: made by the first block, done when ``running`` is empty."""

    __slots__ = ("running", "settled")

    def __init__(self) -> None:
        self.running: set[asyncio.Task[Any]] = set()
        self.settled: asyncio.Future[None] | None = None

    def leave(self, task: asyncio.Task[Any]) -> None:
        self.running.discard(task)
        if not self.running and self.settled is not None and not self.settled.done():
            self.settled.set_result(None)

    async def others_finished(self, task: asyncio.Task[Any]) -> None:
        """Wait for the reply's other tool calls before a block leaves this one. ``asyncio.gather`` would hand the
        block to the caller at once and leave them running unseen: still spending, their spans closed after the
        chat's, their work racing the caller's recovery. Every blocked call waits for the same moment (the last
        running call's end), so none waits on another blocked one and all have raised before gather reports."""
        self.leave(task)
        await asyncio.sleep(0)  # gather made every task before any ran: each has started and joined by now
        if not self.running:
            return
        if self.settled is None or self.settled.done():  # done: an earlier batch of this reply's calls
            self.settled = asyncio.get_running_loop().create_future()
        await asyncio.wait((self.settled,))  # not the future itself: a cancelled waiter must not cancel the others'


_TOOL_CALLS: ContextVar[_ToolCalls | None] = ContextVar("agentwatch_ag2_tool_calls", default=None)

# The open reply span of each agent, for calls AG2 makes off the agent's context (executor threads).
_open_spans: dict[int, Span] = {}


def open_span_of(agent: Any) -> Span | None:
    return _open_spans.get(id(agent))


# ---- tools --------------------------------------------------------------------------------------------
# AG2 runs a tool inside ``except Exception`` and replies ``"Error: <message>"``: a block raised in it (an agent used
# as a tool out of its budget, the tool's own LLM call) would go to the asking agent's model as text in its next, paid,
# request and the chat would go on. The block whose text the reply is is raised instead, by the executing agent's
# reply, before the tool's response is sent: after ``increase_budget`` that turn (``generate_reply`` of the executor)
# runs the tool again. A block the tool handles itself stays handled.

_ERROR_PREFIX = "Error: "  # execute_function's reply for an exception: f"Error: {e}"


@stop_on_exception(default=None)
def _tool_frame(executor: Any, func_call: Any) -> Frame | None:
    """The tool's span, current while the function runs, with the scope of the agent that asked for the call (the
    author of the message being answered, ``_asker``) pushed inside the executor's: what the tool spends itself (the
    openai SDK used directly) counts against both, and is the asking agent's."""
    client = get_client()
    if client is None:
        return None
    name = str(func_call.get("name") or "tool") if isinstance(func_call, dict) else "tool"
    asking = _REPLYING_TO.get()
    scope = None
    if asking is not None and asking != getattr(executor, "name", None):
        scope = client.agent_scope(asking)  # made already when the asking agent replied (with its role)
        if any(pushed.monitor is scope.monitor for pushed in get_current_agent_scopes()):
            scope = None
    frame = open_frame(name, "tool", scope=scope, attributes={"framework": "ag2", "tool.name": name})
    if frame is not None:
        if capturing(client):
            frame.span.input = func_call.get("arguments")
        frame.on_result = _tool_result
    return frame


def _tool_result(span: Span, result: Any) -> None:
    """``execute_function``'s ``(success, {"name", "role", "content"})``: AG2 catches what a tool raises and returns it
    as the reply (``"Error: ..."``) with ``success`` False, so the span's status comes from there."""
    success, reply = result if isinstance(result, tuple) and len(result) == 2 else (True, result)
    content = reply.get("content") if isinstance(reply, dict) else reply
    if success is False:
        span.record_error(str(content))
    if capturing():
        span.output = content


def _block_made_text(result: Any, met: BlocksMet) -> CircuitBreakerException | None:
    """The block a tool raised that ``execute_function`` made its reply (``(False, {"content": "Error: <block>"})``)."""
    success, reply = result if isinstance(result, tuple) and len(result) == 2 else (True, None)
    content = reply.get("content") if isinstance(reply, dict) else None
    if success is not False or not isinstance(content, str) or not content.startswith(_ERROR_PREFIX):
        return None
    return met.named_by(content[len(_ERROR_PREFIX):])


def _raising_blocks(function: Callable[..., Any]) -> Callable[..., Any]:
    """``execute_function``: a block that left the tool is raised, not made the tool's ``"Error: ..."`` reply."""

    def execute_function(*args: Any, **kwargs: Any) -> Any:
        with BlocksMet() as met:
            result = function(*args, **kwargs)
        blocked = _block_made_text(result, met)
        if blocked is not None:
            raise blocked
        return result

    return execute_function


def _a_raising_blocks(function: Callable[..., Any]) -> Callable[..., Any]:
    async def a_execute_function(*args: Any, **kwargs: Any) -> Any:
        with BlocksMet() as met:
            result = await function(*args, **kwargs)
        blocked = _block_made_text(result, met)
        if blocked is not None:
            raise blocked
        return result

    return a_execute_function


def wrap_execute_function(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def execute_function(self: Any, func_call: Any, *args: Any, **kwargs: Any) -> Any:
        frame = _tool_frame(self, func_call)
        if frame is None:
            return original(self, func_call, *args, **kwargs)
        tokens = frame.enter()
        try:
            result = _raising_blocks(original)(self, func_call, *args, **kwargs)
        except BaseException as error:
            frame.exit(tokens)
            frame.close(error)
            raise
        frame.exit(tokens)
        finish_frame(frame, result)
        return result

    return execute_function


def wrap_a_execute_function(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def a_execute_function(self: Any, func_call: Any, *args: Any, **kwargs: Any) -> Any:
        frame = _tool_frame(self, func_call)
        if frame is None:
            return await original(self, func_call, *args, **kwargs)
        calls, task = _TOOL_CALLS.get(), asyncio.current_task()
        if calls is None or task is None:
            return await call_in_frame(frame, _a_raising_blocks(original), self, func_call, *args, **kwargs)
        calls.running.add(task)
        try:
            return await call_in_frame(frame, _a_raising_blocks(original), self, func_call, *args, **kwargs)
        except CircuitBreakerException:
            await calls.others_finished(task)
            raise
        finally:
            calls.leave(task)

    return a_execute_function


def wrap_run_async_in_thread(original: Callable[..., Any]) -> Callable[..., Any]:
    """A synchronous chat runs an ``async def`` tool on a new thread with its own loop; the thread starts with an
    empty context. The coroutine runs there with this context's AgentWatch values (and this plugin's) only, and a
    block it raises (``a_execute_function`` raises the tool's) is raised here: AG2 would lose it with the thread."""

    @functools.wraps(original)
    def _run_async_in_thread(self: Any, coro: Any) -> Any:
        if get_client() is None or not inspect.iscoroutine(coro):
            return original(self, coro)
        outcome = _Outcome(carry(_CURRENT_AGENT, _REPLYING_TO))
        result = original(self, _awaited_with(coro, outcome))
        if outcome.blocked is not None:
            raise outcome.blocked
        return result

    return _run_async_in_thread


class _Outcome:
    __slots__ = ("values", "blocked")

    def __init__(self, values: Carried | None) -> None:
        self.values = values
        self.blocked: CircuitBreakerException | None = None


async def _awaited_with(coro: Any, outcome: _Outcome) -> Any:
    try:
        if outcome.values is None:
            return await coro
        return await asyncio.create_task(coro, context=outcome.values.context())  # in AG2's thread: its own and ours
    except CircuitBreakerException as blocked:
        outcome.blocked = blocked
        return None


class _CarryingThread(threading.Thread):
    """A ``threading.Thread`` made by AG2 that runs with AgentWatch's values of the code that made it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._agentwatch_values = carry(_CURRENT_AGENT, _REPLYING_TO) if get_client() is not None else None

    def run(self) -> None:
        values, self._agentwatch_values = self._agentwatch_values, None
        if values is None:
            super().run()
        else:
            values.run(super().run)


class _Threading(types.ModuleType):
    """The ``threading`` module as AG2's modules see it: ``Thread`` carries, the rest is the standard module's."""

    Thread = _CarryingThread

    def __getattr__(self, name: str) -> Any:
        return getattr(threading, name)


_THREADING = _Threading("threading")
#: AG2 modules that run a chat on a thread of their own.
_THREAD_MODULES = ("autogen.agentchat.conversable_agent", "autogen.agentchat.group.multi_agent_chat")
_replaced_threading: list[types.ModuleType] = []


def carry_into_ag2_threads() -> None:
    for name in _THREAD_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # another AG2 layout: its threads start empty
            continue
        if module.__dict__.get("threading") is threading:
            module.threading = _THREADING  # type: ignore[attr-defined]
            _replaced_threading.append(module)


def restore_ag2_threads() -> None:
    while _replaced_threading:
        module = _replaced_threading.pop()
        if module.__dict__.get("threading") is _THREADING:  # someone who replaced it after us keeps theirs
            module.threading = threading  # type: ignore[attr-defined]


def forget_open_spans() -> None:
    _open_spans.clear()


# ---- agents' replies ----------------------------------------------------------------------------------


@stop_on_exception
def _agent_frame(agent: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *,
                 runs_async: bool = False) -> Frame | None:
    client = get_client()
    if client is None or _CURRENT_AGENT.get() is agent:
        return None
    name = str(getattr(agent, "name", None) or type(agent).__name__)
    scope = client.agent_scope(name, role=type(agent).__name__)
    extra: tuple[tuple[ContextVar[Any], Any], ...] = ((_CURRENT_AGENT, agent),
                                                      (_REPLYING_TO, _asker(agent, args, kwargs)))
    if runs_async:
        extra += ((_TOOL_CALLS, _ToolCalls()),)
    frame = open_frame(name, "agent", scope=scope,
                       attributes={"framework": "ag2", "ag2.agent_type": type(agent).__name__}, extra=extra)
    if frame is not None:
        _open_spans[id(agent)] = frame.span
    return frame


def _asker(agent: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Who wrote the message a reply answers (``generate_reply(messages, sender)``): its ``name``, which a group
    chat's manager passes on from the speaker, else the sender's."""
    sender = kwargs.get("sender", args[1] if len(args) > 1 else None)
    messages = kwargs.get("messages", args[0] if args else None)
    if messages is None and sender is not None:  # AG2's own default: the conversation with the sender
        messages = getattr(agent, "_oai_messages", {}).get(sender)
    last = messages[-1] if isinstance(messages, list) and messages else None
    asked = isinstance(last, dict) and (last.get("tool_calls") or last.get("function_call"))
    name = (last.get("name") if asked else None) or getattr(sender, "name", None)  # type: ignore[union-attr]
    return str(name) if name else None


def _close_agent(agent: Any, frame: Frame, error: BaseException | None) -> None:
    if _open_spans.get(id(agent)) is frame.span:
        del _open_spans[id(agent)]
    frame.close(error)


def wrap_generate_reply(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def generate_reply(self: Any, *args: Any, **kwargs: Any) -> Any:
        frame = _agent_frame(self, args, kwargs) if get_client() is not None else None
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
        frame = _agent_frame(self, args, kwargs, runs_async=True) if get_client() is not None else None
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


# ---- reflection summaries -----------------------------------------------------------------------------
# ``_reflection_with_llm_as_summary`` (a chat's ``summary_method="reflection_with_llm"``, and a nested chat's
# carryover) catches every ``Exception`` of its LLM call (``_reflection_with_llm``) and makes the summary "" with a
# ``UserWarning``: a block there would be lost, the chat would return as if summarised and ``initiate_chats`` would
# start the next chat on an empty carryover. A block is carried past that ``except`` and raised again outside it, as
# a block of any other call of the chat reaches its caller; anything else the call raises stays AG2's to handle.

_IN_SUMMARY: ContextVar[bool] = ContextVar("agentwatch_ag2_in_summary", default=False)


#: While a summary's LLM call is made: (the agent AG2 names as the caller, the agent whose client answers).
_SUMMARY_FOR: ContextVar[tuple[Any, Any] | None] = ContextVar("agentwatch_ag2_summary_for", default=None)


def charged_agent(agent: Any) -> Any:
    """The agent an LLM call AG2 makes for ``agent`` is charged to (its scope, its limits).

    A summary (``sender._reflection_with_llm(..., llm_agent=recipient)``) is asked of the recipient's LLM client, and
    AG2 counts its cost there (the recipient's ``client.total_usage_summary``), but passes the sender, often an
    LLM-less user proxy, as the calling agent: the call is the answering agent's."""
    summary_for = _SUMMARY_FOR.get()
    if summary_for is not None and summary_for[0] is agent:
        return summary_for[1]
    return agent


def _answering_agent(agent: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Whose client ``agent._reflection_with_llm(prompt, messages, llm_agent=...)`` asks: AG2's own choice."""
    llm_agent = kwargs.get("llm_agent", args[2] if len(args) > 2 else None)
    return llm_agent if llm_agent is not None and getattr(llm_agent, "client", None) is not None else agent


def wrap_reflection_with_llm(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _reflection_with_llm(self: Any, *args: Any, **kwargs: Any) -> Any:
        if get_client() is None:
            return original(self, *args, **kwargs)
        token = _SUMMARY_FOR.set((self, _answering_agent(self, args, kwargs)))
        try:
            return original(self, *args, **kwargs)
        except CircuitBreakerException as blocked:
            if _IN_SUMMARY.get():  # only where our summary wrapper is there to turn it back into the block
                raise BlockCarrier(blocked) from None
            raise
        finally:
            _SUMMARY_FOR.reset(token)

    return _reflection_with_llm


def wrap_reflection_with_llm_as_summary(original: Any) -> Any:
    """``original`` is the ``staticmethod`` in ``ConversableAgent``'s ``__dict__``: the wrapper is one too."""
    function = original.__func__ if isinstance(original, staticmethod) else original

    @functools.wraps(function)
    def _reflection_with_llm_as_summary(*args: Any, **kwargs: Any) -> Any:
        if get_client() is None:
            return function(*args, **kwargs)
        token = _IN_SUMMARY.set(True)
        try:
            return function(*args, **kwargs)
        except BlockCarrier as passing:
            raise passing.blocked from None
        finally:
            _IN_SUMMARY.reset(token)

    return staticmethod(_reflection_with_llm_as_summary) if isinstance(original, staticmethod) else \
        _reflection_with_llm_as_summary
