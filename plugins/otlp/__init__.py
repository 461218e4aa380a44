"""OpenTelemetry export: ``agentwatch.init(exporters=["otlp"])`` sends spans over OTLP/HTTP (protobuf).

Spans follow the OpenTelemetry GenAI semantic conventions (``gen_ai.*``) plus AgentWatch's cost and
breaker attributes (``agentwatch.*``). Configured with the standard ``OTEL_EXPORTER_OTLP_*`` variables.
"""

from __future__ import annotations

from ._exporter import OtlpExporter
from ._mapping import to_otlp_request

__all__ = ["OtlpExporter", "to_otlp_request"]
