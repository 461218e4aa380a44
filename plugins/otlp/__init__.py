"""OpenTelemetry export: ``agentwatch.init(exporters=["otlp"])`` sends spans over OTLP/HTTP (protobuf).

Spans follow the OpenTelemetry GenAI semantic conventions (``gen_ai.*``) plus AgentWatch's cost and
breaker attributes (``agentwatch.*``). Configured with the standard ``OTEL_EXPORTER_OTLP_*`` variables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._exporter import OtlpExporter
    from ._mapping import to_otlp_request

__all__ = ["OtlpExporter", "to_otlp_request"]


def __getattr__(name: str) -> Any:
    # Lazily: init() loads this package's entry point, and opentelemetry-proto costs ~150 ms to import.
    if name == "OtlpExporter":
        from ._exporter import OtlpExporter

        return OtlpExporter
    if name == "to_otlp_request":
        from ._mapping import to_otlp_request

        return to_otlp_request
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
