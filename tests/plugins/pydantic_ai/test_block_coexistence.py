"""A blocked request leaves no span of Pydantic AI's own OpenTelemetry instrumentation open: every span it
started is ended, the agent run's with the block as its error."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic_ai.models.instrumented import InstrumentationSettings

import agentwatch
from agentwatch import CircuitBreakerException

from .conftest import DELEGATION_RUN, Team
from .test_blocking import BUDGET, EXPENSIVE_TOOL_CALL
from .test_runs import HOWS, run


class Started(SpanProcessor):
    """The ids of the spans started and not yet ended."""

    def __init__(self) -> None:
        self.open: dict[int, str] = {}

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.open[span.context.span_id] = span.name

    def on_end(self, span: ReadableSpan) -> None:
        self.open.pop(span.context.span_id)  # type: ignore[union-attr]


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("how", HOWS)
def test_a_blocked_request_leaves_no_otel_span_open(stub_provider: Any, memory: Any, how: str, api: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The CrewAI tests in the same worker switch the OpenTelemetry SDK off process-wide (OTEL_SDK_DISABLED): a
    # provider made then records nothing, and nothing would be left open.
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    agentwatch.init(exporters=[memory], agents={"Billing": {"budget_per_hour": BUDGET, "block_on_threshold": True}})
    provider = TracerProvider()
    started, exported = Started(), InMemorySpanExporter()
    provider.add_span_processor(started)
    provider.add_span_processor(SimpleSpanProcessor(exported))
    team = Team(stub_provider, api)
    for agent in (team.support, team.billing):
        agent.instrument = InstrumentationSettings(tracer_provider=provider)
    stub_provider.queue(DELEGATION_RUN[0], EXPENSIVE_TOOL_CALL)
    with pytest.raises(CircuitBreakerException):
        run(how, team)
    assert stub_provider.count() == 2
    assert started.open == {}
    spans = exported.get_finished_spans()
    assert spans, "Pydantic AI recorded nothing"
    # The agent run's span ("invoke_agent Billing", or "agent run" under older instrumentation versions).
    billing_runs = [span for span in spans if (span.attributes or {}).get("agent_name") == "Billing"]
    assert billing_runs and all(span.status.is_ok is False for span in billing_runs)
    assert any("AgentWatch blocked" in (event.attributes or {}).get("exception.message", "")
               for span in billing_runs for event in span.events)
