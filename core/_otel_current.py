"""The OpenTelemetry span current in the program when an LLM call starts, named on the call's span; and AgentWatch's
scope spans made current in OpenTelemetry's context, so the program's own spans nest under them.

A program may trace its model calls with OpenTelemetry too (Pydantic AI's own instrumentation, OpenInference,
opentelemetry-instrumentation-openai-v2) and send those spans to the same collector. The instrumentation wraps the
client's request method, so its LLM span is the current OpenTelemetry span when AgentWatch's call starts under it:
naming it lets the collector count the call once (``server/_llm_copies.py``), whichever copy arrives first and
whichever exporter AgentWatch uses.

With an exporter to the program's OpenTelemetry backend (``otlp``), a ``trace()``, ``agent()`` or ``span()`` scope is
also the current OpenTelemetry span while it runs (``make_current``): a span the program opens inside it (its
tracer provider's, an OpenTelemetry instrumentation's) is that scope's child in the backend, with the trace and span
ids the exporter sends for it. Only through OpenTelemetry's public API (a ``NonRecordingSpan``: nothing is recorded
twice), only for scopes (a few per run, ~4 us each), never for an LLM call.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ._safe import logger

if TYPE_CHECKING:
    from ._span import Span

__all__ = ["OTEL_SPAN_KEY", "current_otel_span", "make_current", "restore"]

#: LLM-span attribute: ``"<trace id>-<span id>"`` (hex) of the OpenTelemetry span current when the call started.
OTEL_SPAN_KEY: Final = "otel.current_span"

_OTEL_TRACE: Final = "opentelemetry.trace"

#: The OpenTelemetry context of the running code, read straight from its context variable (``_context_reader``),
#: once ``opentelemetry.trace`` is imported. Set at most once: OpenTelemetry makes its runtime context at import.
_read_context: list[Callable[[], Any]] = []


def current_otel_span() -> str | None:
    """The current OpenTelemetry span's ids, or None: no valid span, or OpenTelemetry not imported by the program
    (looked up, never imported here: an import on the LLM-call path costs milliseconds)."""
    if _read_context:
        # An empty context holds no span (OpenTelemetry's own answer would be its invalid span): the usual call, in a
        # program that imports OpenTelemetry (a dependency of many) without tracing with it, costs one read.
        if not _read_context[0]():
            return None
    elif _OTEL_TRACE not in sys.modules or not _found_context_reader():  # no lookup's call per LLM call without it
        return None
    trace = sys.modules[_OTEL_TRACE]
    try:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
    except Exception:  # a program's own tracer provider that misbehaves: the call goes on without the name
        return None
    return f"{context.trace_id:032x}-{context.span_id:016x}"


def make_current(span: Span) -> tuple[Any, Any] | None:
    """Make ``span`` the current OpenTelemetry span of this context until ``restore`` of what this returns; None if
    OpenTelemetry's API is not imported (the ``otlp`` exporter imports it) or refused it."""
    trace = sys.modules.get("opentelemetry.trace")
    context = sys.modules.get("opentelemetry.context")
    if trace is None or context is None or not hasattr(trace, "NonRecordingSpan") or not hasattr(context, "attach"):
        return None  # not imported, or partly (another thread is importing it)
    try:
        ids = trace.SpanContext(trace_id=int(span.trace_id, 16), span_id=int(span.span_id, 16), is_remote=False,
                                trace_flags=_sampled(trace))  # every span is exported
        current = trace.set_span_in_context(trace.NonRecordingSpan(ids))
        return current, context.attach(current)
    except Exception:  # the scope goes on; the program's spans in it are then roots, as without this
        logger.debug("agentwatch: could not make a span current in OpenTelemetry's context", exc_info=True)
        return None


_SAMPLED: Any = None


def _sampled(trace: Any) -> Any:
    global _SAMPLED
    if _SAMPLED is None:
        _SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
    return _SAMPLED


def restore(made: tuple[Any, Any]) -> None:
    """Undo ``make_current``: only where it is still what it made current (not from another context, where
    OpenTelemetry would log an error, nor over a span the program left current inside)."""
    context = sys.modules.get("opentelemetry.context")
    if context is None:
        return
    current, token = made
    try:
        if context.get_current() is current:
            context.detach(token)
    except Exception:
        logger.debug("agentwatch: could not restore OpenTelemetry's context", exc_info=True)


def _found_context_reader() -> bool:
    """Whether ``opentelemetry.trace`` is imported (fully); keeps the reader of its context (``_context_reader``)."""
    trace = sys.modules.get(_OTEL_TRACE)
    if trace is None or getattr(trace, "get_current_span", None) is None:  # not imported, or partly (another thread)
        return False
    _read_context.append(_context_reader() or _public_api_only)
    return True


def _public_api_only() -> bool:
    """The reader for a runtime context other than the default: never empty, so every call asks the public API."""
    return True


def _context_reader() -> Callable[[], Any] | None:
    """The ``get`` of the context variable holding OpenTelemetry's current context, if it is the default runtime
    context (a ``ContextVarsRuntimeContext``; ``OTEL_PYTHON_CONTEXT`` may name another); else None."""
    context_module = sys.modules.get("opentelemetry.context")
    implementation = sys.modules.get("opentelemetry.context.contextvars_context")
    runtime = getattr(context_module, "_RUNTIME_CONTEXT", None)
    if implementation is None or type(runtime) is not getattr(implementation, "ContextVarsRuntimeContext", None):
        return None
    variable = getattr(runtime, "_current_context", None)
    return getattr(variable, "get", None)
