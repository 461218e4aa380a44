"""Entry point: offers the ``otlp`` exporter name; imports opentelemetry-proto only when asked for."""

from __future__ import annotations

from typing import Any

from agentwatch import hookimpl
from agentwatch.instrumentation import Config

__all__ = ["AGENTWATCH_REQUIRES", "agentwatch_make_exporter"]

# Needs no framework: registered at every init(); opentelemetry-proto is imported only when "otlp" is asked for.
AGENTWATCH_REQUIRES: tuple[str, ...] = ()


@hookimpl
def agentwatch_make_exporter(name: str, config: Config) -> Any:
    if name != "otlp":
        return None
    from ._exporter import OtlpExporter

    return OtlpExporter.from_environment(config=config)
