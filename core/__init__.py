"""AgentWatch: watch LLM agents and stop runaway ones.

``agentwatch.init()`` and every LLM call made through an instrumented framework or client is traced,
priced and checked against your limits before the request leaves the process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _start_up

# Our imports' allocations must not set off the full collection a program with its frameworks imported is due
# (see _start_up): held until here, and init() freezes what is alive before letting collections run.
_held = _start_up.collections_held()
try:
    from ._api import (
        AgentContext,
        SpanScope,
        agent,
        agent_fn,
        alert,
        cron,
        event,
        metric,
        session,
        set_metadata,
        span,
        task,
        trace,
    )
    from ._breaker import BlockEvent, CircuitBreakerException, Monitor
    from ._client import Client, get_client, get_state, init, shutdown
    from ._context import current_span, current_trace_id
    from ._export import Exporter
    from ._exporters import ConsoleExporter, HttpExporter, InMemoryExporter, JsonLinesExporter
    from ._llm import LLMCall, check_limits, current_llm_call, llm_call, start_llm_call
    from ._span import Span
    from ._version import __version__
finally:
    _start_up.release_collections(_held)
    del _held

if TYPE_CHECKING:
    from .hookspecs import hookimpl


def __getattr__(name: str) -> Any:
    # ``hookimpl`` on first use (a plugin module, loaded by init()): it imports pluggy, ~2 ms that a program
    # which only imports agentwatch need not pay.
    if name == "hookimpl":
        from .hookspecs import hookimpl

        globals()["hookimpl"] = hookimpl
        return hookimpl
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def flush(timeout: float | None = 5.0) -> bool:
    """Export everything queued now; True if it finished within ``timeout`` seconds and reached the exporters'
    destinations (False while the collector is known down: the spans went to the spool, for later; False too if it
    refused a batch since the last flush, e.g. for a wrong ``api_key``: those spans were dropped). None is the default
    wait; a timeout that is no number raises TypeError even before ``init()``."""
    client = get_client()
    if client is not None:
        return client.flush(timeout)  # which reads the timeout
    from ._config import timeout_seconds  # not at import: ``import agentwatch`` leaves _config to init()

    timeout_seconds("flush()", timeout)  # the same error for a bad timeout as with a client
    return True


def verify() -> bool:
    """Send a test span to the collector at ``proxy_url``; True if it was accepted."""
    client = get_client()
    if client is None:
        client = init()
    return client.verify()


__all__ = [
    "__version__",
    # life cycle
    "init",
    "shutdown",
    "flush",
    "verify",
    "get_state",
    "get_client",
    "Client",
    # structure
    "trace",
    "span",
    "agent",
    "agent_fn",
    "task",
    "session",
    "cron",
    "event",
    "metric",
    "alert",
    "set_metadata",
    "current_span",
    "current_trace_id",
    "SpanScope",
    "AgentContext",
    # LLM calls and the breaker
    "llm_call",
    "start_llm_call",
    "check_limits",
    "current_llm_call",
    "LLMCall",
    "CircuitBreakerException",
    "BlockEvent",
    "Monitor",
    # spans and export
    "Span",
    "Exporter",
    "InMemoryExporter",
    "HttpExporter",
    "JsonLinesExporter",
    "ConsoleExporter",
    # plugins
    "hookimpl",
]
