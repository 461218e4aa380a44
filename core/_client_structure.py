"""The structure API on the client ``init()`` returns, as the SDK spec writes it: ``ap = agentwatch.init()``, then
``with ap.session("daily")``, ``@ap.agent(name=...)``, ``ap.event(...)``. Each is the module-level function of the
same name (``agentwatch.session`` ...), which works whether or not the program kept the client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._api import AgentContext, CronContext, SessionContext, SpanScope, TraceContext

__all__ = ["StructureAPI"]


class StructureAPI:
    """``agentwatch.trace``, ``span``, ``agent``, ``agent_fn``, ``task``, ``session``, ``cron``, ``event``, ``metric``,
    ``alert`` and ``set_metadata`` as methods (``_api`` imports the client, so it is imported on use)."""

    def trace(self, name: str, **kwargs: Any) -> TraceContext:
        from ._api import trace
        return trace(name, **kwargs)

    def span(self, name: str, kind: str = "span", **attributes: Any) -> SpanScope:
        from ._api import span
        return span(name, kind, **attributes)

    def agent(self, name: str, *args: Any, **kwargs: Any) -> AgentContext:
        from ._api import agent
        return agent(name, *args, **kwargs)

    agent_fn = agent

    def task(self, name: str, **attributes: Any) -> SpanScope:
        from ._api import task
        return task(name, **attributes)

    def session(self, name: str | None = None, *, session_id: str | None = None) -> SessionContext:
        from ._api import session
        return session(name, session_id=session_id)

    def cron(self, name: str, schedule: str | None = None, grace_seconds: float | None = None) -> CronContext:
        from ._api import cron
        return cron(name, schedule, grace_seconds)

    def event(self, name: str, data: Any = None) -> None:
        from ._api import event
        event(name, data)

    def metric(self, name: str, value: float, **attributes: Any) -> None:
        from ._api import metric
        metric(name, value, **attributes)

    def alert(self, message: str, severity: str = "warning", **details: Any) -> None:
        from ._api import alert
        alert(message, severity, **details)

    def set_metadata(self, **values: Any) -> None:
        from ._api import set_metadata
        set_metadata(**values)
