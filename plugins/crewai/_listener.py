"""CrewAI events → AgentWatch spans; CrewAI's before-LLM-call hook → limit checks and the LLM span.

Two CrewAI mechanisms, because neither does both jobs:

- The before-LLM-call hook runs synchronously in the thread and context that then sends the request,
  and it is the only place where an exception stops a call (if it subclasses ``HookAborted``). It runs
  ``agentwatch.start_llm_call`` there and activates the call, so an HTTP-level tap in the same context
  sees ``current_llm_call()`` and does not count the request twice.
- Event-bus handlers run later on CrewAI's thread pool, in a copy of the emitting context, in no
  guaranteed order. They name and close the crew/task/agent/tool spans.
- The LLM call's own events (started, completed) are handled inline by the bus's ``emit`` (``_inline_emit``),
  in the emitting thread and context, as CrewAI handles stream chunks. A bus handler for them would cost
  every LLM call two thread-pool hand-offs (~+450 us per call measured), while the bus skips events nobody
  listens to. ``LLMCallStartedEvent`` comes before the hook: it is kept until the hook (or, for a call no
  hook saw, its end) claims it. ``LLMCallFailedEvent`` (rare) stays on the pool.
- A registered hook makes CrewAI emit a ``HookDispatchedEvent`` after each dispatch, which it does not emit
  without hooks: for a dispatch of our hook alone that let the call through, it is not emitted, and one with
  the user's hooks too counts only theirs (``_quiet_telemetry``), so other listeners see the events they see
  without AgentWatch, and the call pays no event model and pool hand-off for it (measured with callgrind: ~35%
  of what AgentWatch added to a ``crewai.LLM.call``).

A block is also recorded on the kickoff it happens in (``_runs``): CrewAI turns errors raised inside a
tool, the delegation tool included, into text, so the hook refuses the run's later calls and the
kickoff raises.

Spans are keyed by CrewAI's event ids. Every handler (and the hook) sees CrewAI's scope stack of the
emitting context, so whichever runs first creates the missing ancestors and the tree comes out the same
whatever order the pool runs the handlers in.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from types import FrameType
from typing import Any

from crewai.events import (
    AgentExecutionCompletedEvent,
    AgentExecutionErrorEvent,
    AgentExecutionStartedEvent,
    BaseEventListener,
    CrewKickoffCompletedEvent,
    CrewKickoffFailedEvent,
    CrewKickoffStartedEvent,
    LiteAgentExecutionCompletedEvent,
    LiteAgentExecutionErrorEvent,
    LiteAgentExecutionStartedEvent,
    LLMCallCompletedEvent,
    LLMCallFailedEvent,
    LLMCallStartedEvent,
    LLMStreamChunkEvent,
    TaskCompletedEvent,
    TaskFailedEvent,
    TaskStartedEvent,
    ToolUsageErrorEvent,
    ToolUsageFinishedEvent,
    ToolUsageStartedEvent,
    crewai_event_bus,
)
from crewai.events.event_context import _event_id_stack
from crewai.hooks import (
    get_before_llm_call_hooks,
    register_before_llm_call_hook,
    unregister_before_llm_call_hook,
)
from crewai.llms.base_llm import _current_call_id

import agentwatch
from agentwatch import CircuitBreakerException, LLMCall, Span
from agentwatch.instrumentation import (
    KEEP,
    AgentScope,
    attach,
    capturing,
    clip,
    detach,
    get_current_agent_scopes,
    get_current_span,
    stop_on_exception,
)
from agentwatch.plugins.http._patching import Patcher

from . import _cut_off, _guardrails, _hook_registration, _steps
from ._errors import CrewAICircuitBreakerException
from ._roles import original_role, without_placeholders
from ._roles import role_name as _role
from ._runs import Run, blocked_in, current_run, patch, unpatch

__all__ = ["AgentWatchListener", "install", "uninstall"]

Stack = Sequence[tuple[str, str]]

#: CrewAI scope-starting event types that become spans (others, such as the executor's internal
#: ``flow_started``, are skipped: their children attach to the nearest mapped ancestor). A lone
#: ``Agent.kickoff()`` announces its agent with the lite-agent events, a crew's agent with the others.
_AGENT_STARTS = ("agent_execution_started", "lite_agent_execution_started")
_SPAN_KINDS = {"crew_kickoff_started": "chain", "task_started": "task", "agent_execution_started": "agent",
               "lite_agent_execution_started": "agent", "tool_usage_started": "tool"}
_PLACEHOLDER = {"crew_kickoff_started": "crew", "task_started": "task", "agent_execution_started": "agent",
                "lite_agent_execution_started": "agent", "tool_usage_started": "tool"}
_STARTED_BY_ENDING = {
    "crew_kickoff_completed": "crew_kickoff_started", "crew_kickoff_failed": "crew_kickoff_started",
    "task_completed": "task_started", "task_failed": "task_started",
    "agent_execution_completed": "agent_execution_started", "agent_execution_error": "agent_execution_started",
    "lite_agent_execution_completed": "lite_agent_execution_started",
    "lite_agent_execution_error": "lite_agent_execution_started",
    "tool_usage_finished": "tool_usage_started", "tool_usage_error": "tool_usage_started",
}
_RECENT_LIMIT = 4096

#: The LLM call this plugin activated in the current context (to undo it in that same context).
_ACTIVATED: ContextVar[LLMCall | None] = ContextVar("agentwatch_crewai_activated", default=None)


def _nanos(timestamp: Any) -> int | None:
    try:
        return int(timestamp.timestamp() * 1e9)
    except Exception:  # a missing or odd timestamp just keeps the span's own start time
        return None


def _task_name(task: Any, capture_text: bool) -> str:
    # A task's description is prompt text: it names the span only where the user allowed capturing text.
    agent = getattr(task, "agent", None)
    name = getattr(task, "name", None) or (capture_text and getattr(task, "description", None)) or \
        getattr(agent, "role", None) or "task"
    return str(name).strip().splitlines()[0][:80] or "task"


def _crew_name(crew: Any, fallback: str | None = None) -> str:
    return str(getattr(crew, "name", None) or fallback or "crew")


def agent_scope(client: Any, agent: Any) -> AgentScope | None:
    """The agent scope of a CrewAI agent: named after its role as written (``_scope_name``), id from
    ``init(agents=...)`` or the role.

    The id deliberately is not CrewAI's per-instance UUID: a stable id keeps rolling windows (and a
    shared limits store) for "Researcher" across runs and processes.
    """
    name = _scope_name(client, agent)
    return client.agent_scope(name) if name else None


@stop_on_exception
def _scope_of(agent: Any) -> AgentScope | None:
    """The agent scope of a CrewAI agent while AgentWatch runs (``agent_scope``), else None."""
    client = agentwatch.get_client()
    return agent_scope(client, agent) if client is not None else None


#: CrewAI agent id → scope name, for the agents whose role a kickoff's inputs changed (a tool's events name the
#: agent by its interpolated role and id only).
_TEMPLATED: OrderedDict[str, str] = OrderedDict()


def _scope_name(client: Any, agent: Any) -> str | None:
    """The role an agent was given, before a kickoff's inputs filled its placeholders: the template's
    ``role: "{topic} Senior Data Researcher"`` is one agent whatever the topic, so its limits hold across kickoffs
    (``kickoff_for_each`` included). Its limits may be configured under that role, or under the role without its
    placeholders ("Senior Data Researcher")."""
    role = getattr(agent, "role", None)
    original = original_role(agent) or role
    name = _role(original)
    if not name or original == role:
        return name
    if "{" in name and name not in client.config.agents:
        plain = without_placeholders(name)
        if plain and plain in client.config.agents:
            name = plain
    agent_id = str(getattr(agent, "id", ""))
    if agent_id and _TEMPLATED.get(agent_id) != name:
        _TEMPLATED[agent_id] = name
        while len(_TEMPLATED) > _RECENT_LIMIT:
            _TEMPLATED.popitem(last=False)
    return name


Description = tuple[str, dict[str, Any], "AgentScope | None"]


class _Objects:
    """The CrewAI objects a handler or the hook knows of, used to name spans it has to create (made by ``_objects``)."""

    __slots__ = ("crew", "task", "agent", "event", "created_id", "described")

    crew: Any
    task: Any
    agent: Any
    event: Any
    #: The CrewAI event id of the span last created from these objects (``_Tree.ensure``), and its description
    #: (``_describe``): a start handler that created its own span does not describe it a second time.
    created_id: str | None
    described: Description | None


def _objects(crew: Any = None, task: Any = None, agent: Any = None, event: Any = None) -> _Objects:
    # Built field by field, not by calling the class: a class called with keywords goes through ``type.__call__``, a
    # dict of the keywords and an ``__init__`` frame (half the time again); the hook and every scope event make one.
    objects = _new_object(_Objects)
    objects.crew = crew
    objects.task = task
    objects.agent = agent
    objects.event = event
    objects.created_id = None
    objects.described = None
    return objects


_new_object = object.__new__


class _Tree:
    """CrewAI event id → open span; recently ended ones are kept so late children still find them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, tuple[Span, str]] = {}
        self._recent: OrderedDict[str, Span] = OrderedDict()
        #: Scopes CrewAI left on its stack after an exception (its pops then close the wrong entry);
        #: they are closed here and must not parent a later kickoff in the same context.
        self._abandoned: OrderedDict[str, None] = OrderedDict()
        #: LLM call_id → the call opened by the hook (matched by LLMCallStarted, ended by Completed).
        self.calls: dict[str, LLMCall] = {}
        self.finished_calls: OrderedDict[str, None] = OrderedDict()
        #: call_id → its LLMCallStartedEvent, until the hook or the call's end claims it.
        self._starts: OrderedDict[str, Any] = OrderedDict()

    def clear(self) -> None:
        with self._lock:
            self._open.clear()
            self._recent.clear()
            self.calls.clear()
            self.finished_calls.clear()
            self._starts.clear()

    def keep_start(self, event: Any) -> None:
        with self._lock:
            self._starts[event.call_id] = event
            while len(self._starts) > _RECENT_LIMIT:
                self._starts.popitem(last=False)

    def claim_start(self, call_id: str) -> Any:
        with self._lock:
            return self._starts.pop(call_id, None)

    def _find(self, event_id: str) -> Span | None:
        entry = self._open.get(event_id)
        return entry[0] if entry is not None else self._recent.get(event_id)

    def ensure(self, client: Any, stack: Stack, objects: _Objects) -> Span | None:
        """The spans of every mapped scope on ``stack`` (outermost first), created if missing; the innermost."""
        parent: Span | None = None
        with self._lock:
            for event_id, event_type in self._live_scopes(stack):
                entry = self._open.get(event_id)  # _find inlined: each scope around the hook and every scope event
                span = entry[0] if entry is not None else self._recent.get(event_id)
                if span is None:
                    span = self._create(client, event_id, event_type, _SPAN_KINDS[event_type], parent, objects)
                    self._open[event_id] = (span, event_type)
                parent = span
        return parent

    def mark_blocked(self, stack: Stack) -> None:
        """A call on ``stack`` was blocked: so were its agent and every tool around it.

        CrewAI ends neither as failed when a tool (the delegation tool) turns the block into its result.
        """
        with self._lock:
            scopes = self._live_scopes(stack)
            for index, (event_id, event_type) in enumerate(scopes):
                span = self._find(event_id)
                if span is not None and not span.ended and (
                        event_type == "tool_usage_started" or index == len(scopes) - 1):
                    span.status = "blocked"

    def _live_scopes(self, stack: Stack) -> list[tuple[str, str]]:
        # One pass, keeping CrewAI's own entries: a list comprehension (a frame of its own, a new tuple per scope)
        # and a second pass backwards for stale crews cost ~60 more bytecodes a call, 3+ calls per LLM call.
        abandoned = self._abandoned
        scopes: list[tuple[str, str]] = []
        for entry in stack:
            event_id, event_type = entry
            if event_type in _SPAN_KINDS and event_id not in abandoned:
                if event_type == "crew_kickoff_started" and scopes and scopes[-1][1] == event_type:
                    # A crew directly inside a crew is a stale entry CrewAI left in the caller's context when an
                    # earlier kickoff raised (its pops are off by one then), not a nesting: start from the newest.
                    scopes = [entry]
                else:
                    scopes.append(entry)
        return scopes

    def _create(self, client: Any, event_id: str, event_type: str, kind: str, parent: Span | None,
                objects: _Objects) -> Span:
        described = _describe(client, event_type, objects)
        objects.created_id, objects.described = event_id, described
        name, attributes, scope = described
        # No parent on CrewAI's stack: the crew hangs under the caller's current span (or starts a trace).
        return client.start_span(name, kind, parent=parent, attributes=attributes, agent=scope)

    def end(self, event_id: str | None, expected_type: str, stack: Stack) -> list[Span]:
        """Pop the spans an ending event closes: its own, and any CrewAI popped in its place.

        After an exception CrewAI's pops are off by one (``task_failed`` pops the agent's entry); the
        span of the expected type is then the innermost such entry still on the stack.
        """
        ended: list[Span] = []
        with self._lock:
            entry = self._open.get(event_id) if event_id is not None else None
            if entry is None or entry[1] != expected_type:
                if entry is not None:
                    ended.append(self._pop(event_id))  # type: ignore[arg-type]
                event_id = next((eid for eid, etype in reversed(stack)
                                 if etype == expected_type and eid in self._open), None)
                if event_id is not None:
                    self._abandoned[event_id] = None
                    while len(self._abandoned) > _RECENT_LIMIT:
                        self._abandoned.popitem(last=False)
            if event_id is not None and event_id in self._open:
                ended.append(self._pop(event_id))
        return ended

    def _pop(self, event_id: str) -> Span:
        span = self._open.pop(event_id)[0]
        self._recent[event_id] = span
        while len(self._recent) > _RECENT_LIMIT:
            self._recent.popitem(last=False)
        return span

    def known(self, event_id: str) -> bool:
        with self._lock:
            return event_id in self._open or event_id in self._recent

    def call_done(self, call_id: str) -> None:
        with self._lock:
            self.calls.pop(call_id, None)
            self.finished_calls[call_id] = None
            while len(self.finished_calls) > _RECENT_LIMIT:
                self.finished_calls.popitem(last=False)


TREE = _Tree()


def _describe(client: Any, event_type: str, objects: _Objects) -> Description:
    """Name, attributes and agent scope of a span for a CrewAI scope, from what is known of it."""
    attributes: dict[str, Any] = {"framework": "crewai"}
    if event_type == "crew_kickoff_started":
        crew = objects.crew
        if crew is not None and getattr(crew, "id", None) is not None:
            attributes["crewai.crew_id"] = str(crew.id)
        return f"crew:{_crew_name(crew)}", attributes, None
    if event_type == "task_started":
        task = objects.task
        if task is None:
            return "task", attributes, None
        if getattr(task, "id", None) is not None:
            attributes["crewai.task_id"] = str(task.id)
        return f"task:{_task_name(task, capturing(client))}", attributes, None
    if event_type in _AGENT_STARTS:
        agent = objects.agent
        if agent is None:
            return "agent", attributes, None
        if getattr(agent, "id", None) is not None:
            attributes["crewai.agent_id"] = str(agent.id)
        return f"agent:{_role(agent.role) or 'agent'}", attributes, agent_scope(client, agent)
    event = objects.event
    if isinstance(event, ToolUsageStartedEvent):
        attributes["tool.name"] = event.tool_name
        if capturing(client):
            attributes["tool.input"] = clip(event.tool_args)
        # The agent using the tool, named outright: inside delegated work the context's innermost agent is the
        # delegator's (its delegation tool pushed it).
        return f"tool:{event.tool_name}", attributes, _tool_agent(client, objects)
    return _PLACEHOLDER.get(event_type, "crewai"), attributes, None


def _tool_agent(client: Any, objects: _Objects) -> AgentScope | None:
    """The scope of the agent using a tool (``agent_scope``; a tool event keeps only the role and the agent's id)."""
    if objects.agent is not None:
        return agent_scope(client, objects.agent)
    event = objects.event
    role = _TEMPLATED.get(str(getattr(event, "agent_id", None))) or _role(getattr(event, "agent_role", None))
    return client.agent_scope(role) if role else None


def _refine(client: Any, span: Span, event_type: str, objects: _Objects) -> None:
    """A span created early (as an ancestor, by the hook) gets its real name once its own event arrives."""
    if span.ended:
        return
    _apply(span, _describe(client, event_type, objects), objects.event)


def _apply(span: Span, described: Description, event: Any) -> None:
    """A scope's description (``_describe``) and its event's time, on its span."""
    name, attributes, scope = described
    span.name = name
    if attributes is not span.attributes:  # it is the span's own dict when the span was made from this description
        for key, value in attributes.items():
            span.attributes.setdefault(key, value)
    if scope is not None and span.agent_id is None:
        span.agent_id, span.agent_name, span.agent_role = scope.agent_id, scope.name, scope.role
    start = _nanos(getattr(event, "timestamp", None))
    if start is not None and start < span.start_time_unix_nano:
        span.start_time_unix_nano = start


def _stack() -> Stack:
    return _event_id_stack.get()


#: The event classes of each scope, as tuples built once: ``A | B | C`` in the isinstance calls below built two union
#: objects a check, up to eight per scope event.
_CREW_EVENTS = (CrewKickoffStartedEvent, CrewKickoffCompletedEvent, CrewKickoffFailedEvent)
_TASK_EVENTS = (TaskStartedEvent, TaskCompletedEvent, TaskFailedEvent)
_AGENT_EVENTS = (AgentExecutionStartedEvent, AgentExecutionCompletedEvent, AgentExecutionErrorEvent)
_LITE_AGENT_EVENTS = (LiteAgentExecutionStartedEvent, LiteAgentExecutionCompletedEvent, LiteAgentExecutionErrorEvent)


def _objects_of(event: Any, source: Any) -> _Objects:
    if isinstance(event, _CREW_EVENTS):
        return _objects(crew=event.crew or source, event=event)
    if isinstance(event, _TASK_EVENTS):
        task = event.task or source
        agent = getattr(task, "agent", None)
        return _objects(crew=getattr(agent, "crew", None), task=task, agent=agent, event=event)
    if isinstance(event, _AGENT_EVENTS):
        return _objects(crew=getattr(event.agent, "crew", None), task=event.task, agent=event.agent, event=event)
    if isinstance(event, _LITE_AGENT_EVENTS):
        return _objects(agent=source, event=event)  # emitted by the agent itself (its role is in agent_info too)
    agent = getattr(event, "agent", None) or getattr(event, "from_agent", None)
    return _objects(crew=getattr(agent, "crew", None), task=getattr(event, "from_task", None), agent=agent,
                    event=event)


# ---- scope handlers (crew, task, agent, tool) ---------------------------------------------------


def _started(client: Any, source: Any, event: Any) -> tuple[Span | None, _Objects]:
    """The span of a scope-starting event (created with any missing ancestors), and what is known of it."""
    objects = _objects_of(event, source)
    stack = _event_id_stack.get()  # _stack() inlined: every scope's start
    if not stack or stack[-1][0] != event.event_id:
        stack = (*stack, (event.event_id, event.type))
    return TREE.ensure(client, stack, objects), objects


@stop_on_exception
def _on_scope_started(source: Any, event: Any) -> None:
    client = agentwatch.get_client()
    if client is None:
        return
    span, objects = _started(client, source, event)
    if span is None:
        return
    if objects.created_id == event.event_id and objects.described is not None:
        # This handler created its own span a moment ago, described from these same objects: that description is
        # applied again as _refine would make it, not made twice (an agent's scope, ids as text, the task's name).
        if not span.ended:
            _apply(span, objects.described, event)
        return
    _refine(client, span, event.type, objects)


_BLOCK_MESSAGE = "AgentWatch blocked the "  # "LLM call", "embedding call"


def _is_block(event: Any) -> bool:
    error_type = getattr(event, "error_type", None)
    if isinstance(error_type, type) and issubclass(error_type, CircuitBreakerException):
        return True
    return _BLOCK_MESSAGE in str(getattr(event, "error", "") or "")


@stop_on_exception
def _on_scope_ended(source: Any, event: Any) -> None:
    client = agentwatch.get_client()
    if client is None:
        return
    started = event.started_event_id
    start_type = _STARTED_BY_ENDING.get(event.type, "")
    stack = _event_id_stack.get()  # _stack() inlined: every scope's end
    if started is not None and not TREE.known(started):
        # The end handler ran before the start handler (CrewAI's pool keeps no order): open it now.
        TREE.ensure(client, (*stack, (started, start_type)), _objects_of(event, source))
    spans = TREE.end(started, start_type, stack)
    error = None if event.__class__ in _ERRORLESS else getattr(event, "error", None)
    for span in spans:
        if span.ended:
            continue
        if error is not None:
            if _is_block(event):
                span.status = "blocked"
            else:
                span.record_error(error if isinstance(error, BaseException) else clip(error))
        if isinstance(event, ToolUsageFinishedEvent) and span.kind == "tool":
            if capturing(client):
                span.output = clip(event.output)
            span.attributes["tool.from_cache"] = bool(event.from_cache)
            if event.failure is not None:
                span.record_error(clip(getattr(event.failure, "message", event.failure)))
        elif isinstance(event, CrewKickoffCompletedEvent) and span.kind == "chain":
            span.attributes["crewai.total_tokens"] = event.total_tokens
        client.end_span(span)


# ---- a tool's body ------------------------------------------------------------------------------

#: The tools running in this context, innermost last: (the start event's id, what ``_enter_tool`` attached).
_IN_TOOLS: ContextVar[tuple[tuple[str, tuple[Any, ...]], ...]] = ContextVar("agentwatch_crewai_tools", default=())


@stop_on_exception
def _enter_tool(source: Any, event: Any) -> None:
    """Inline, where CrewAI is about to run the tool: its span current and its agent's scope pushed until the tool's
    end event, so an LLM call the tool makes itself (the openai SDK, another framework) is recorded under the tool
    and counts against the agent. CrewAI emits a tool's start and end around the call, in the tool's thread."""
    client = agentwatch.get_client()
    if client is None:
        return
    span, objects = _started(client, source, event)
    scope = _tool_agent(client, objects)
    if scope is not None and any(pushed.monitor is scope.monitor for pushed in get_current_agent_scopes()):
        scope = None  # a delegating agent's tool inside the same agent, or ``with agentwatch.agent`` around it
    if span is None and scope is None:
        return
    _IN_TOOLS.set((*_IN_TOOLS.get(), (event.event_id, attach(span if span is not None else KEEP, agent=scope))))


@stop_on_exception
def _leave_tool(source: Any, event: Any) -> None:
    error = None if event.__class__ in _ERRORLESS else getattr(event, "error", None)
    if isinstance(error, CircuitBreakerException) and not isinstance(error, CrewAICircuitBreakerException):
        # Raised inside the tool below CrewAI's hook (the openai SDK's own call, a scope the tool opened): CrewAI
        # hands it to the model as the tool's result, so the run keeps it. The hook's blocks are kept already.
        run = current_run()
        if run is not None:
            run.record(error, ())
    entered = _IN_TOOLS.get()
    for index in range(len(entered) - 1, -1, -1):
        if entered[index][0] == event.started_event_id:
            for _, tokens in reversed(entered[index:]):  # and any inner tool whose end never came
                detach(tokens)
            _IN_TOOLS.set(entered[:index])
            return


# ---- LLM calls ----------------------------------------------------------------------------------


def _model_of(llm: Any) -> tuple[str | None, str | None]:
    if llm is None:
        return None, None
    if isinstance(llm, str):
        model: str | None = llm
        provider = None
    else:
        model = getattr(llm, "model", None)
        provider = getattr(llm, "provider", None)
    if model and "/" in model:
        # LiteLLM's "openai/gpt-4o-mini" (a string, or an ``LLM(is_litellm=True)``, whose provider is that prefix) is
        # the model the native provider class calls "gpt-4o-mini": one model, one name.
        prefix, _, rest = model.partition("/")
        if not provider or prefix == provider:
            provider, model = prefix, rest
    return (str(model) if model else None), (str(provider) if provider else None)


def _drop_stale() -> None:
    """Undo an activation its completed event did not end (a failure, or an event emitted elsewhere)."""
    stale = _ACTIVATED.get()
    if stale is not None:
        stale.deactivate()
        _ACTIVATED.set(None)


@stop_on_exception
def before_llm_call(context: Any) -> None:
    """CrewAI's before-LLM-call hook: check every limit, open and activate the LLM span; block by raising."""
    _DISPATCH.ran = True  # see _quiet_telemetry
    client = agentwatch.get_client()
    if client is None:
        return None
    if _ACTIVATED.get() is not None:  # the usual call has nothing stale: no _drop_stale frame for it
        _drop_stale()
    agent = getattr(context, "agent", None)
    scope = agent_scope(client, agent) if agent is not None else None
    stack = _event_id_stack.get()  # _stack() inlined: the hook runs for every LLM call
    parent: Span | None = None
    # In a direct ``LLM.call`` (no crew, task, agent or tool around it) CrewAI's stack holds the call's own start at
    # most: no scope span to find or create, so neither the objects that would name one nor the tree's lock.
    if len(stack) > 1 or (stack and stack[0][1] in _SPAN_KINDS):
        objects = _objects(crew=getattr(context, "crew", None), task=getattr(context, "task", None), agent=agent)
        parent = TREE.ensure(client, stack, objects)
    llm = getattr(context, "llm", None)
    model, provider = _model_of(llm)
    attributes: dict[str, Any] = {"framework": "crewai", "crewai.iteration": getattr(context, "iterations", 0)}
    messages = getattr(context, "messages", None)
    scopes = (scope,) if scope is not None else ()
    name = type(llm).__name__ if llm is not None and not isinstance(llm, str) else "llm"
    captured = list(messages) if messages and capturing(client) else None
    run = current_run()
    # The breaker's own spans (breaker.triggered, alert.*) go under the current span: make it the call's parent, or
    # they are traces of their own (CrewAI's spans are parents by id, never current in its threads).
    token = attach(parent) if parent is not None and get_current_span() is not parent else None
    try:
        earlier = blocked_in(run) if run is not None else None  # no kickoff (a direct LLM.call): no run to ask
        if earlier is not None:
            # A block earlier in this kickoff that CrewAI turned into a tool result: no request either.
            _record_refusal(name, model, provider, parent, scopes, captured, attributes, earlier)
            TREE.mark_blocked(stack)
            _blocked_here()
            raise CrewAICircuitBreakerException(earlier) from None
        call = agentwatch.start_llm_call(name, model=model, provider=provider, parent=parent, scopes=scopes,
                                         input=captured, attributes=attributes)
    except CrewAICircuitBreakerException:
        raise
    except CircuitBreakerException as blocked:
        if run is not None:
            run.record(blocked, scopes)
        TREE.mark_blocked(stack)
        _blocked_here()
        # Only a HookAborted gets through CrewAI; the blocked span is already recorded by the core.
        raise CrewAICircuitBreakerException(blocked) from None
    finally:
        if token is not None:
            detach(token)
    if call.hard_budget:  # only a hard budget's top-up refuses a call below the hook
        call.raise_refusal_as(_refused_below(call, run, scopes, stack))
    call.activate()
    _ACTIVATED.set(call)
    _DISPATCH.admitted = call  # withdrawn if a hook after ours denies the call (_quiet_telemetry)
    call_id = _current_call_id.get()
    if call_id is not None:
        TREE.calls[call_id] = call
        call.span.attributes["crewai.call_id"] = call_id  # call.set_attribute inlined: every LLM call sets it
        started = TREE.claim_start(call_id)
        if started is not None and started.stream:
            call.set_attribute("stream", True)
    return None


def _blocked_here() -> None:
    """The hook blocked the call: its blocked span is the call's one record.

    Inside ``LLM.call``/``acall`` (a direct call, not an agent's executor) CrewAI answers the block with an
    ``LLMCallFailedEvent`` ("LLM call denied by agentwatch: ..."), handled later on the pool: it must find the call
    finished, not open an unchecked call of its own (a second, failed span counted as an error)."""
    call_id = _current_call_id.get()  # None when an executor ran the hooks: CrewAI then reports no failure
    if call_id is not None:
        TREE.claim_start(call_id)
        TREE.call_done(call_id)


def _refused_below(call: LLMCall, run: Run | None, scopes: tuple[AgentScope, ...],
                   stack: Stack) -> Callable[[CircuitBreakerException], CircuitBreakerException]:
    """How a hard budget's refusal below the hook reaches CrewAI: as the hook's own block.

    The HTTP tap inside the provider SDK reserves the request body's worst case and may be refused there, after
    the hook let the call through. A plain ``CircuitBreakerException`` from that depth is, to CrewAI, a provider
    error: its executor retries the task and the call would end as failed (counted toward ``max_error_rate``,
    though nothing was sent). A ``HookAborted`` is what CrewAI passes through unretried, as from the hook."""

    def refuse(blocked: CircuitBreakerException) -> CircuitBreakerException:
        # Raised in the hook's context (the SDK call runs in it): end the call and its activation here, before
        # CrewAI reports the failure on its pool, so the reservation is released before kickoff() raises.
        call.end(error=blocked)
        _ended_here(call)
        if run is not None:
            run.record(blocked, scopes)
        TREE.mark_blocked(stack)
        return CrewAICircuitBreakerException(blocked)

    return refuse


def _ended_here(call: LLMCall) -> None:
    """A call ended in the hook's context before its request (refused below the hook, or denied by a later
    hook): its activation goes (a dead call must not stay current for the caller's next SDK call) and CrewAI's
    failure events for it, handled later on the pool, find nothing more to record."""
    if _ACTIVATED.get() is call:
        _drop_stale()
    call_id = _current_call_id.get()  # None when an executor ran the hooks, before LLM.call assigns it
    if call_id is not None:
        TREE.call_done(call_id)


def _cut_off_here(error: BaseException) -> None:
    """The LLM call in this context was cut off by its program (``_cut_off``): the call the hook opened for it ends
    with that error, charged what the HTTP layer estimated of the request it sent."""
    call = _ACTIVATED.get()
    if call is None or call.ended:
        return
    known_as = call.span.attributes.get("crewai.call_id")
    if known_as is not None and known_as != _current_call_id.get():
        return  # an earlier call's activation, whose failure CrewAI reports on its pool
    call.end(error=error)
    _ended_here(call)


def _record_refusal(name: str, model: str | None, provider: str | None, parent: Span | None,
                    scopes: tuple[AgentScope, ...], captured: Any, attributes: dict[str, Any],
                    blocked: CircuitBreakerException) -> None:
    """The blocked span of a call refused for an earlier block of its run (the core checked nothing)."""
    call = agentwatch.start_llm_call(name, model=model, provider=provider, parent=parent, scopes=scopes,
                                     input=captured, attributes=attributes, check=False)
    span = call.span
    span.status = "blocked"
    span.attributes.update({"breaker.reason": blocked.reason, "breaker.scope": blocked.scope,
                            "breaker.scope_id": blocked.scope_id, "breaker.threshold": blocked.threshold,
                            "breaker.current": blocked.current, "crewai.refused_after_block": True})
    client = agentwatch.get_client()
    if client is not None:
        client.end_span(span)


def _call_for(event: Any) -> LLMCall | None:
    """The hook's call for this event: by ``call_id``, else the call active in the emitting context."""
    call = TREE.calls.get(event.call_id)
    if call is None:
        current = agentwatch.current_llm_call()
        if current is not None and current is _ACTIVATED.get():
            call = current
            TREE.calls[event.call_id] = call
    return call


def _unchecked_call(client: Any, event: Any) -> LLMCall | None:
    """An LLM call that no hook saw (hooks snapshotted by an executor made before init()): record it."""
    if event.call_id in TREE.finished_calls:
        return None
    model, provider = _model_of(event.model)
    agent = event.from_agent
    scope = agent_scope(client, agent) if agent is not None else None
    objects = _objects(crew=getattr(agent, "crew", None), task=event.from_task, agent=agent, event=event)
    parent = TREE.ensure(client, _stack()[:-1], objects)
    call = agentwatch.start_llm_call("llm", model=model, provider=provider, parent=parent,
                                     scopes=(scope,) if scope is not None else (), check=False,
                                     attributes={"framework": "crewai", "agentwatch.unchecked": True})
    started = TREE.claim_start(event.call_id)
    if started is not None:  # the call began when it was announced, not when it is recorded
        call.span.start_time_unix_nano = _nanos(started.timestamp) or call.span.start_time_unix_nano
        if started.stream:
            call.set_attribute("stream", True)
    call.set_attribute("crewai.call_id", event.call_id)
    TREE.calls[event.call_id] = call
    return call


@stop_on_exception
def _on_llm_started(source: Any, event: LLMCallStartedEvent) -> None:
    # Inline. Inside ``LLM.call`` it comes before the hook: the hook (or the call's end, for a call no hook saw)
    # claims it. An agent's executor runs the hook first, before the call has its id: the start is that call's.
    if agentwatch.get_client() is None:
        return
    _hook_registration.put_back()  # a direct LLM.call dispatches the global hooks just after this event
    activated = _ACTIVATED.get()
    if activated is not None and "crewai.call_id" not in activated.span.attributes and \
            activated is agentwatch.current_llm_call():
        TREE.calls[event.call_id] = activated
        activated.set_attribute("crewai.call_id", event.call_id)
        if event.stream:
            activated.set_attribute("stream", True)
        return
    TREE.keep_start(event)


@stop_on_exception
def _on_llm_stream_chunk(source: Any, event: LLMStreamChunkEvent) -> None:
    # Stream chunks are the one event CrewAI delivers synchronously, in the request's own context.
    activated = _ACTIVATED.get()
    if activated is not None and activated is agentwatch.current_llm_call():
        activated.mark_first_token()


@stop_on_exception
def _on_llm_completed(source: Any, event: LLMCallCompletedEvent) -> None:
    client = agentwatch.get_client()
    if client is None:
        return
    call = _call_for(event) or _unchecked_call(client, event)
    if call is None:
        return
    usage = event.usage or {}
    if usage:
        # By position (input, output, cached input): keywords cost every LLM call their matching to the parameters.
        call.set_usage(usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("cached_prompt_tokens"))
    if event.model and not call.span.model:
        call.set_model(*_model_of(event.model))
    if event.response is not None:
        call.set_output(event.response if isinstance(event.response, str) else clip(event.response))
    attributes = call.span.attributes  # call.set_attribute inlined (a frame each, on every LLM call)
    if event.response_id:
        attributes["response_id"] = event.response_id
    attributes["crewai.call_id"] = event.call_id
    call.end(finish_reason=event.finish_reason)
    TREE.call_done(event.call_id)
    if _ACTIVATED.get() is call:
        # Emitted in the hook's context (inline): the activation ends with the call. No after-hook for this:
        # each registered hook makes CrewAI emit a HookDispatchedEvent, one more thread-pool hand-off per call.
        _drop_stale()


@stop_on_exception
def _on_llm_failed(source: Any, event: LLMCallFailedEvent) -> None:
    client = agentwatch.get_client()
    if client is None:
        return
    call = _call_for(event) or _unchecked_call(client, event)
    if call is None:
        return
    call.set_attribute("crewai.call_id", event.call_id)
    if _answered(call):
        # CrewAI failed on an answer the provider gave in full (an ``output_pydantic`` it could not parse, then
        # retried): billed, and no sign of a failing provider, so not counted toward max_error_rate.
        call.set_attribute("crewai.answer_rejected", clip(event.error))
        call.end()
    else:
        call.end(error=clip(event.error))
    TREE.call_done(event.call_id)


def _answered(call: LLMCall) -> bool:
    """The HTTP layer saw the provider answer the call in full: a success status and the answer's finish reason
    (a stream cut off midway has the status, not the finish reason)."""
    attributes = call.span.attributes
    status = attributes.get("http.status_code")
    return isinstance(status, int) and 200 <= status < 300 and bool(attributes.get("finish_reason"))


# ---- installation -------------------------------------------------------------------------------

_HANDLERS: tuple[tuple[type[Any], Callable[[Any, Any], None]], ...] = (
    (CrewKickoffStartedEvent, _on_scope_started),
    (CrewKickoffCompletedEvent, _on_scope_ended),
    (CrewKickoffFailedEvent, _on_scope_ended),
    (TaskStartedEvent, _on_scope_started),
    (TaskCompletedEvent, _on_scope_ended),
    (TaskFailedEvent, _on_scope_ended),
    (AgentExecutionStartedEvent, _on_scope_started),
    (AgentExecutionCompletedEvent, _on_scope_ended),
    (AgentExecutionErrorEvent, _on_scope_ended),
    (LiteAgentExecutionStartedEvent, _on_scope_started),
    (LiteAgentExecutionCompletedEvent, _on_scope_ended),
    (LiteAgentExecutionErrorEvent, _on_scope_ended),
    (ToolUsageStartedEvent, _on_scope_started),
    (ToolUsageFinishedEvent, _on_scope_ended),
    (ToolUsageErrorEvent, _on_scope_ended),
    (LLMCallFailedEvent, _on_llm_failed),
    (LLMStreamChunkEvent, _on_llm_stream_chunk),
)
#: Handled in the emitting thread by the bus's ``emit`` (see the module docstring).
_INLINE: dict[type[Any], Callable[[Any, Any], None]] = {LLMCallStartedEvent: _on_llm_started,
                                                        LLMCallCompletedEvent: _on_llm_completed,
                                                        ToolUsageStartedEvent: _enter_tool,
                                                        ToolUsageFinishedEvent: _leave_tool,
                                                        ToolUsageErrorEvent: _leave_tool}
_install_lock = threading.Lock()


def _without_error(event_type: type[Any]) -> bool:
    """Whether ``getattr(event, "error", None)`` is None for every event of this exact class: no such field, class
    attribute or extra field. Pydantic finds such an attribute missing only after its ``__getattr__`` (and its
    metaclass's) raised inside: ~21k instructions (callgrind) a read, one per completed crew, task, agent and tool."""
    fields = getattr(event_type, "model_fields", None)
    config = getattr(event_type, "model_config", None)
    return isinstance(fields, dict) and "error" not in fields and not hasattr(event_type, "error") and \
        isinstance(config, dict) and config.get("extra") != "allow"


#: The event classes we handle whose events carry no ``error`` (the bus and ``inline_emit`` pick handlers by exact
#: class, so an event reaching our ending handlers is of one of these classes or of a failure's).
_ERRORLESS = frozenset(event_type for event_type in (*(handled for handled, _ in _HANDLERS), *_INLINE)
                       if _without_error(event_type))


def _inline_emit(emit: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def inline_emit(source: Any, event: Any) -> Any:
        future = emit(source, event)  # first: CrewAI prepares the event (ids, scope) and runs other handlers
        handler = _INLINE.get(event.__class__)
        if handler is not None:
            handler(source, event)
        return future

    inline_emit.agentwatch_original = emit  # type: ignore[attr-defined]
    return inline_emit


#: Set by the hook, read by the telemetry filter just after it in the same thread (``run_hooks``' ``finally``).
_DISPATCH = threading.local()
#: The module (``crewai.hooks.dispatch`` the attribute is a function of the same name).
hook_dispatch = importlib.import_module("crewai.hooks.dispatch")
_PRE_MODEL_CALL = hook_dispatch.InterceptionPoint.PRE_MODEL_CALL
_TELEMETRY = Patcher()


def _ours_was_listed(dispatching: FrameType) -> bool:
    """Whether our hook was in the list of the dispatch a hook aborted before reaching ours.

    Not always: the program may have cleared CrewAI's hooks (``crewai.hooks.dispatch.clear_all()``) and run its
    own, and an executor runs the copy of the hooks it took. The list is ``run_hooks``' own (it emits the telemetry
    itself, in its ``finally``); the hooks registered now stand in for it where that frame is not CrewAI's."""
    listed = dispatching.f_locals.get("hooks") if dispatching.f_code.co_name == "run_hooks" else None
    if not isinstance(listed, list):
        listed = [*hook_dispatch.get_hooks(_PRE_MODEL_CALL), *hook_dispatch.get_scoped_hooks(_PRE_MODEL_CALL)]
    return any(hook is before_llm_call for hook in listed)


def _quiet_telemetry(emit_telemetry: Callable[..., None]) -> Callable[..., None]:
    """The ``HookDispatchedEvent`` of a dispatch as it would be without our hook, until our hook blocks.

    CrewAI emits that event only when some hook is registered, so without AgentWatch there is none: emitting it
    for our hook would show AgentWatch to other listeners (CrewAI's telemetry among them) and cost every LLM call
    an event model and a thread-pool hand-off. So a dispatch that ran our hook alone emits nothing, and one that
    ran the user's hooks too reports their count, not ours; a dispatch our hook aborted (a block) emits as is.
    A dispatch that a later hook aborted after ours admitted the call withdraws that call (``_denied``).
    """

    def emit(point: Any, outcome: str, hook_count: int, *args: Any, **kwargs: Any) -> None:
        state = _DISPATCH.__dict__
        ran = state.pop("ran", False)
        admitted = state.pop("admitted", None)
        # Ours counts in hook_count if it ran, or if it was in the list and a hook before it aborted the dispatch.
        if point is _PRE_MODEL_CALL and (ran or (outcome == "aborted" and _ours_was_listed(sys._getframe(1)))):
            ours_blocked = False
            if outcome == "aborted":  # the reason and source only then: every LLM call's dispatch passes here
                reason = args[1] if len(args) > 1 else kwargs.get("abort_reason")
                source = args[2] if len(args) > 2 else kwargs.get("abort_source")
                if admitted is not None:
                    _denied(admitted, reason, source)
                ours_blocked = admitted is None and source == "agentwatch"
            if not ours_blocked:
                if hook_count <= 1:
                    return None
                hook_count -= 1
        return emit_telemetry(point, outcome, hook_count, *args, **kwargs)

    return emit


@stop_on_exception
def _denied(call: LLMCall, reason: str | None = None, source: str | None = None) -> None:
    """A hook after ours denied the call ours admitted (raised ``HookAborted`` or returned False): nothing is sent.

    CrewAI tells no hook of a later hook's verdict; its dispatch's telemetry, emitted in the dispatch's ``finally``
    in the hook's thread and context, is the one place that sees it. Withdrawn, the call is no call of the
    monitors (max_calls_per_minute) and its span is ended."""
    call.withdraw(f"denied by a before_llm_call hook ({source or 'hook'}): {reason or ''}".rstrip(": "))
    _ended_here(call)


def install(bus: Any = None) -> None:
    """Register the handlers and both hooks once, whoever asks (zero-config, explicit listener, both)."""
    bus = bus if bus is not None else crewai_event_bus
    with _install_lock:
        # The bus keeps handlers in sets: the same module-level functions registered twice are one.
        for event_type, handler in _HANDLERS:
            bus.on(event_type)(handler)
        if not hasattr(bus.emit, "agentwatch_original"):
            bus.emit = _inline_emit(bus.emit)
        if before_llm_call not in get_before_llm_call_hooks():
            register_before_llm_call_hook(before_llm_call)
        _hook_registration.keep(before_llm_call)
        if hasattr(hook_dispatch, "_emit_telemetry"):  # private in CrewAI: without it, the events just stay
            _TELEMETRY.replace(hook_dispatch, "_emit_telemetry", _quiet_telemetry)
        patch(before_llm_call)
        _steps.patch()
        _cut_off.patch(_cut_off_here)
        _guardrails.patch(_scope_of)


def uninstall(bus: Any = None) -> None:
    """Remove the handlers and hooks and forget every open span, so a later ``init()`` starts clean."""
    bus = bus if bus is not None else crewai_event_bus
    with _install_lock:
        for event_type, handler in _HANDLERS:
            bus.off(event_type, handler)
        original = getattr(vars(bus).get("emit"), "agentwatch_original", None)
        if original is not None:  # ours is the outermost wrapper (another one on top stays, and so does ours)
            bus.emit = original
        _hook_registration.let_go()
        while before_llm_call in get_before_llm_call_hooks():
            unregister_before_llm_call_hook(before_llm_call)
        _TELEMETRY.restore()
        unpatch()
        _steps.unpatch()
        _cut_off.unpatch()
        _guardrails.unpatch()
        TREE.clear()


class AgentWatchListener(BaseEventListener):
    """CrewAI's own convention: ``listener = AgentWatchListener()`` at module level.

    Equivalent to what ``agentwatch.init()`` installs on its own (using both records everything once).
    Spans are recorded while a client is running; ``agentwatch.shutdown()`` removes the handlers and
    hooks, and the next ``init()`` puts them back.
    """

    def setup_listeners(self, crewai_event_bus: Any) -> None:
        install(crewai_event_bus)
