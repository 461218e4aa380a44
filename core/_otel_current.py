"""The OpenTelemetry span current in the program when an LLM call starts, named on the call's span.

A program may trace its model calls with OpenTelemetry too (Pydantic AI's own instrumentation, OpenInference,
opentelemetry-instrumentation-openai-v2) and send those spans to the same collector. The instrumentation wraps the
client's request method, so its LLM span is the current OpenTelemetry span when AgentWatch's call starts under it:
naming it lets the collector count the call once (``server/_llm_copies.py``), whichever copy arrives first and
whichever exporter AgentWatch uses.
"""

from __future__ import annotations

import sys
from typing import Final

__all__ = ["OTEL_SPAN_KEY", "current_otel_span"]

#: LLM-span attribute: ``"<trace id>-<span id>"`` (hex) of the OpenTelemetry span current when the call started.
OTEL_SPAN_KEY: Final = "otel.current_span"


def current_otel_span() -> str | None:
    """The current OpenTelemetry span's ids, or None: no valid span, or OpenTelemetry not imported by the program
    (looked up, never imported here: an import on the LLM-call path costs milliseconds)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    get_current_span = getattr(trace, "get_current_span", None)
    if get_current_span is None:  # a partly imported module (another thread is importing it)
        return None
    try:
        context = get_current_span().get_span_context()
        if not context.is_valid:
            return None
    except Exception:  # a program's own tracer provider that misbehaves: the call goes on without the name
        return None
    return f"{context.trace_id:032x}-{context.span_id:016x}"
