"""A blocked run ends every trace and span the SDK started, for every trace processor beside ours."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import add_trace_processor
from agents.tracing import TracingProcessor

import agentwatch
from agentwatch import CircuitBreakerException

from .conftest import HANDOFF_RUN, Team
from .test_blocking import BUDGET, EXPENSIVE_TOOL_CALL, _run


class Recorder(TracingProcessor):
    """A third-party processor (as Langfuse's or Logfire's): what it was told started and ended."""

    def __init__(self) -> None:
        self.open: dict[str, str] = {}
        self.ended: list[tuple[str, Any]] = []

    def on_trace_start(self, trace: Any) -> None:
        self.open[trace.trace_id] = "trace"

    def on_trace_end(self, trace: Any) -> None:
        self.open.pop(trace.trace_id)

    def on_span_start(self, span: Any) -> None:
        self.open[span.span_id] = type(span.span_data).__name__

    def on_span_end(self, span: Any) -> None:
        self.open.pop(span.span_id)
        self.ended.append((type(span.span_data).__name__, span.error))

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


@pytest.mark.parametrize("api", ["responses", "chat"])
@pytest.mark.parametrize("how", ["run_sync", "run", "run_streamed"])
def test_a_blocked_turn_leaves_nothing_open_for_another_processor(stub_provider: Any, memory: Any, how: str,
                                                                   api: str) -> None:
    # stream_usage: the stub is not OpenAI's host, and its streamed chat completions bring usage only when asked.
    agentwatch.init(exporters=[memory], agents={"Billing": {"budget_per_hour": BUDGET, "block_on_threshold": True}},
                    stream_usage="always")
    recorder = Recorder()
    add_trace_processor(recorder)
    team = Team(stub_provider, api)
    stub_provider.queue(HANDOFF_RUN[0], EXPENSIVE_TOOL_CALL)
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(CircuitBreakerException):
            _run(how, team.triage, "what is 1 + 2?", loop)
    finally:
        loop.close()
    assert stub_provider.count() == 2
    assert recorder.open == {}
