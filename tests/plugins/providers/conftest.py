"""Fixtures for the provider plugins: a running AgentWatch with an in-memory exporter, and its LLM spans."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import agentwatch

SpansOf = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def watch(memory: agentwatch.InMemoryExporter) -> Iterator[Callable[..., agentwatch.Client]]:
    """``watch(**config)`` starts AgentWatch exporting to ``memory``."""

    def start(**config: Any) -> agentwatch.Client:
        return agentwatch.init(exporters=[memory], **config)

    yield start


@pytest.fixture
def llm_spans(memory: agentwatch.InMemoryExporter) -> SpansOf:
    """Flush, then the exported LLM and embedding spans (blocked ones included), in end order."""

    def collect() -> list[dict[str, Any]]:
        agentwatch.flush()
        return [span for span in memory.spans if span["kind"] in ("llm", "embedding")]

    return collect


def calls_counted(client: agentwatch.Client) -> int:
    """Calls the global monitor admitted in the last minute: one per charge."""
    return int(client.monitor.snapshot()["calls_last_minute"])
