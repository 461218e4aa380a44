"""The SDK's traces as AgentWatch spans: a tracing processor (``agents.add_trace_processor``).

Agent runs, function tools, handoffs, guardrails and custom spans become spans of ours under the same
parents. The SDK's task and turn spans are transparent (their children hang from the agent), and its
response/generation spans are the model call ``_turns`` opened (one span per request, whatever the
tracing). Exceptions raised here are swallowed by the SDK, so nothing here can block: limits are checked
around the model call itself (``_patch``), which also works with the SDK's tracing disabled.
"""

from __future__ import annotations

import sys
import threading
from contextvars import ContextVar
from typing import Any

from agentwatch.instrumentation import (
    CircuitBreakerException,
    Span,
    capturing,
    end_span,
    get_client,
    get_current_llm_call,
    get_current_span,
    stop_on_exception,
)

from ._tool_blocks import tool_block

__all__ = ["AgentWatchProcessor", "current_parent", "mark_blocked", "PROCESSOR", "STREAMED_RESULT"]

_TRANSPARENT = frozenset({"task", "turn"})
_MODEL_SPANS = frozenset({"response", "generation"})
_KINDS = {"agent": "agent", "function": "tool", "handoff": "handoff", "guardrail": "guardrail",
          "mcp_tools": "tool"}
#: SDK spans that end in the ``finally``/``with`` their exception leaves by (see ``_ended_by``).
_ENDED_BY_EXCEPTION = frozenset({"agent", "function"})
_MAX_OPEN = 100_000  # SDK spans never ended must not grow the maps forever


class AgentWatchProcessor:
    """Implements the SDK's ``TracingProcessor`` interface (duck-typed: the SDK only calls these)."""

    def __init__(self) -> None:
        self.active = False
        self._lock = threading.Lock()
        #: SDK span id → our span (a transparent span maps to its nearest mapped ancestor, or None).
        self._spans: dict[str, Span | None] = {}
        #: SDK span ids whose span is ours to end.
        self._owned: set[str] = set()
        self._traces: dict[str, Span] = {}
        #: SDK trace and agent span ids that started while an exception was being handled (the caller ran the agent
        #: inside an ``except``): that exception's identity (``_identity``), which is not the one a run ends with.
        self._handling: dict[str, _Identity] = {}

    # ---- traces -----------------------------------------------------------------------------------

    @stop_on_exception
    def on_trace_start(self, trace: Any) -> None:
        client = get_client()
        if not self.active or client is None:
            return
        attributes = {"framework": "openai-agents", "openai_agents.trace_id": trace.trace_id}
        group = getattr(trace, "group_id", None)
        if group:
            attributes["openai_agents.group_id"] = group
        parent = get_current_span()
        span = client.start_span(str(trace.name or "Agent workflow"), "chain" if parent else "trace",
                                 attributes=attributes)
        handling = _identity(sys.exc_info()[1])
        with self._lock:
            if len(self._traces) < _MAX_OPEN:
                self._traces[trace.trace_id] = span
                if handling is not None:
                    self._handling[trace.trace_id] = handling

    @stop_on_exception
    def on_trace_end(self, trace: Any) -> None:
        with self._lock:
            span = self._traces.pop(trace.trace_id, None)
            handling = self._handling.pop(trace.trace_id, None)
        client = get_client()
        if span is not None and client is not None:
            # The workflow the SDK traced ended by an error, a block or a cancellation: so does its span.
            end_span(span, _ended_by(handling) or _stored_max_turns(trace))

    # ---- spans ------------------------------------------------------------------------------------

    def parent_of(self, sdk_span: Any) -> Span | None:
        parent_id = getattr(sdk_span, "parent_id", None)
        if parent_id is not None and parent_id in self._spans:
            return self._spans[parent_id]
        return self._traces.get(getattr(sdk_span, "trace_id", ""))

    @stop_on_exception
    def on_span_start(self, sdk_span: Any) -> None:
        client = get_client()
        if not self.active or client is None:
            return
        data = sdk_span.span_data
        kind = data.type
        parent = self.parent_of(sdk_span)
        ours: Span | None
        owned = False
        if kind in _TRANSPARENT:
            ours = parent
        elif kind in _MODEL_SPANS:
            call = get_current_llm_call()  # the model call _turns opened around the request
            ours = call.span if call is not None else parent
        else:
            ours = self._open(client, kind, data, parent)
            owned = True
        handling = _identity(sys.exc_info()[1]) if kind in _ENDED_BY_EXCEPTION else None
        with self._lock:
            if len(self._spans) < _MAX_OPEN:
                self._spans[sdk_span.span_id] = ours
                if owned:
                    self._owned.add(sdk_span.span_id)
                if handling is not None:
                    self._handling[sdk_span.span_id] = handling

    def _open(self, client: Any, kind: str, data: Any, parent: Span | None) -> Span:
        attributes: dict[str, Any] = {"framework": "openai-agents", "openai_agents.span_type": kind}
        agent = None
        if kind == "agent":
            name = str(data.name)
            agent = client.agent_scope(name)
            if data.handoffs:
                attributes["openai_agents.handoffs"] = list(data.handoffs)
            if data.tools:
                attributes["openai_agents.tools"] = list(data.tools)
            if data.output_type:
                attributes["openai_agents.output_type"] = str(data.output_type)
        elif kind == "handoff":
            name = f"handoff {data.from_agent or '?'} -> {data.to_agent or '?'}"
        else:
            name = str(getattr(data, "name", None) or getattr(data, "server", None) or kind)
        if agent is None and parent is not None and parent.agent_name:
            # The parent's agent, named outright: inside an agent used as a tool, the context's innermost agent is
            # the one that called the tool.
            agent = client.agent_scope(parent.agent_name)
        return client.start_span(name, _KINDS.get(kind, "span"), parent=parent, attributes=attributes, agent=agent)

    @stop_on_exception
    def on_span_end(self, sdk_span: Any) -> None:
        with self._lock:
            span = self._spans.pop(sdk_span.span_id, None)
            owned = sdk_span.span_id in self._owned
            self._owned.discard(sdk_span.span_id)
            handling = self._handling.pop(sdk_span.span_id, None)
        client = get_client()
        if span is None or not owned or client is None:
            return
        data = sdk_span.span_data
        kind = data.type
        capture = capturing(client)
        if kind == "function":
            if capture:
                span.input, span.output = data.input, data.output
        elif kind == "handoff":
            span.attributes["openai_agents.to_agent"] = data.to_agent
            span.name = f"handoff {data.from_agent or '?'} -> {data.to_agent or '?'}"
        elif kind == "guardrail":
            span.attributes["guardrail.triggered"] = bool(data.triggered)
            if data.triggered:
                _tripped(self.parent_of(sdk_span))
        ended_by = _ended_by(handling) if kind in _ENDED_BY_EXCEPTION else None
        if isinstance(ended_by, CircuitBreakerException):
            # A block out of a tool: the SDK marks the tool and its calling agent with its own error ("Error running
            # tool", "Error in agent run"), but the run was blocked, as its workflow span says.
            end_span(span, ended_by)
            return
        error = sdk_span.error
        if error and span.status not in ("blocked", "error"):  # "error": its guardrail tripped (same message)
            span.record_error(str(error.get("message") if isinstance(error, dict) else error))
        elif kind == "agent" and span.status == "ok":
            # The SDK marks an agent whose run failed, but not one cancelled (it holds that no failure of the agent's)
            # or stopped by Ctrl-C: its span ends as an error of that kind, as every plugin's cancelled span does.
            if ended_by is not None and not isinstance(ended_by, Exception):
                span.record_error(ended_by)
        client.end_span(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


PROCESSOR = AgentWatchProcessor()


#: An exception told apart without keeping it (and its traceback's frames) alive: its id and type.
_Identity = tuple[int, type[BaseException]]


def _identity(error: BaseException | None) -> _Identity | None:
    return None if error is None else (id(error), type(error))


def _ended_by(handling: _Identity | None) -> BaseException | None:
    """The exception an SDK span or trace ends by: the SDK ends them in the ``finally`` (or ``with``) its run leaves
    by, where that exception is the one being handled; one handled already when the span started is the caller's."""
    error = sys.exc_info()[1]
    if error is None or _identity(error) == handling:
        return None
    return tool_block(error) or error  # a block out of a tool leaves as the SDK's UserError: the run was blocked

#: The ``RunResultStreaming`` of the streamed run whose task this context is (set around ``start_streaming``).
STREAMED_RESULT: ContextVar[Any] = ContextVar("agentwatch_openai_agents_streamed_result", default=None)


def _stored_max_turns(trace: Any) -> BaseException | None:
    """The ``MaxTurnsExceeded`` a streamed run whose workflow is ``trace`` ends by. Its task does not raise it: it
    stops and ``stream_events()`` raises it to the consumer later (``RunResultStreaming._check_errors``), past the
    trace's end, so nothing is being handled when the trace ends (``Runner.run`` raises it through the trace)."""
    result = STREAMED_RESULT.get()
    if result is None or getattr(result, "trace", None) is not trace:
        return None
    max_turns = getattr(result, "max_turns", None)
    current = getattr(result, "current_turn", 0)
    if max_turns is None or not isinstance(current, int) or current <= max_turns:
        return None
    if getattr(result, "_max_turns_handled", False):  # the run's max_turns error handler gave a final output
        return None
    from agents.exceptions import MaxTurnsExceeded

    return MaxTurnsExceeded(f"Max turns ({max_turns}) exceeded")


#: What the SDK puts on an agent span whose guardrail tripped (when it puts anything there).
_TRIPPED = "Guardrail tripwire triggered"


def _tripped(agent: Span | None) -> None:
    """A tripped input or output guardrail ends its agent's run (``…GuardrailTripwireTriggered`` is raised): the
    agent's span ends as an error. The SDK itself marks it only in some paths (a streamed run, an output
    guardrail) and not when an input guardrail trips in ``Runner.run``/``run_sync``, which ended it "ok"."""
    if agent is not None and agent.kind == "agent" and agent.status not in ("blocked", "error"):
        agent.record_error(_TRIPPED)


def current_parent() -> Span | None:
    """Our span for the SDK's current span (the agent, through its turn), or None without tracing."""
    if not PROCESSOR.active:
        return None
    from agents.tracing import get_current_span as sdk_current_span

    sdk_span = sdk_current_span()
    if sdk_span is None:
        return None
    span_id = getattr(sdk_span, "span_id", None)
    if span_id in PROCESSOR._spans:
        return PROCESSOR._spans[span_id]
    return None


def mark_blocked(span: Span, blocked: CircuitBreakerException) -> None:
    """The agent whose model call was refused ends ``blocked``, not with an error."""
    span.status = "blocked"
    span.attributes["breaker.reason"] = blocked.reason
