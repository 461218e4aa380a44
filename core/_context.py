"""Trace context carried in contextvars, so it follows asyncio tasks and copied contexts of threads."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._span import Span

if TYPE_CHECKING:
    from ._breaker import Monitor

__all__ = ["AgentScope", "current_span", "current_trace_id", "current_agent_scopes", "current_metadata",
           "current_session_id", "SESSION_KEY"]


@dataclass(frozen=True, slots=True)
class AgentScope:
    """An agent's identity and its monitor; one per agent name, shared by every ``with agent(...)``."""

    name: str
    agent_id: str
    role: str
    monitor: Monitor


CURRENT_SPAN: ContextVar[Span | None] = ContextVar("agentwatch_span", default=None)
AGENT_SCOPES: ContextVar[tuple[AgentScope, ...]] = ContextVar("agentwatch_agent_scopes", default=())
METADATA: ContextVar[dict[str, Any] | None] = ContextVar("agentwatch_metadata", default=None)
#: The session (``agentwatch.session()``) that spans started in this context belong to. Spans also inherit it from
#: their parent, so a framework that names the session on a root span (LangGraph's ``thread_id``) needs no context.
SESSION_ID: ContextVar[str | None] = ContextVar("agentwatch_session_id", default=None)
#: The span attribute holding the session id (OpenInference's name; exported to OTLP as it is).
SESSION_KEY = "session.id"


def current_span() -> Span | None:
    """The innermost open span of this context, or None."""
    return CURRENT_SPAN.get()


def current_trace_id() -> str | None:
    span = CURRENT_SPAN.get()
    return span.trace_id if span is not None else None


def current_agent_scopes() -> tuple[AgentScope, ...]:
    """Enclosing agent scopes, outermost first."""
    return AGENT_SCOPES.get()


def current_metadata() -> dict[str, Any]:
    return dict(METADATA.get() or {})


def current_session_id() -> str | None:
    """The id of the enclosing ``agentwatch.session()``, or None."""
    return SESSION_ID.get()
