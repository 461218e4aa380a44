"""A model call traced twice, by the program's own OpenTelemetry instrumentation (sent to ``/v1/traces``) and by
AgentWatch (``/api/ingest``), counts once on every store, whichever copy arrives first (``server/_llm_copies.py``).

Found 2027-01 (probe p8/p6): a Pydantic AI agent with its instrumentation exporting to the collector and AgentWatch's
default exporter: 4 calls, 6000 tokens and twice the cost for 2 real calls; OpenInference and
opentelemetry-instrumentation-openai-v2: 8 calls for 4."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agentwatch.server import start_background
from tests.server.aw_helpers import SpanFactory, new_span_id, new_trace_id

ROOT = Path(__file__).resolve().parents[2]


def _kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def _otlp(trace_id: str, spans: list[tuple[str, str | None, str, int, dict[str, Any]]]) -> bytes:
    """(span id, parent id, name, start, attributes) spans of one trace from an instrumentation."""
    return json.dumps({"resourceSpans": [{"resource": {"attributes": [_kv("service.name", "app")]}, "scopeSpans": [{
        "scope": {"name": "openinference.instrumentation.openai"},
        "spans": [{"traceId": trace_id, "spanId": span_id, "name": name, "kind": 3,
                   "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 50_000_000),
                   "attributes": [_kv(key, value) for key, value in attributes.items()],
                   **({"parentSpanId": parent} if parent else {})}
                  for span_id, parent, name, start, attributes in spans]}]}]}).encode()


_CALL = {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-2024-08-06", "llm.provider": "openai",
         "llm.token_count.prompt": 1000, "llm.token_count.completion": 100}


@pytest.mark.parametrize("first", ["agentwatch", "instrumentation"])
@pytest.mark.parametrize("named", ["the call's span", "the span the call ran under"])
def test_a_call_traced_by_an_instrumentation_too_counts_once(client: TestClient, make_span: SpanFactory,
                                                             first: str, named: str) -> None:
    start = time.time_ns() - 60_000_000_000
    otel_trace, request_span, call_span = new_trace_id(), new_span_id(), new_span_id()
    # The instrumentation's LLM span runs under the program's request span; AgentWatch's call named either (its hook
    # inside the instrumentation's, or around it: then the other call started during AgentWatch's).
    named_span = call_span if named == "the call's span" else request_span
    own = make_span(name="openai.chat.completions", model="gpt-4o", input_tokens=1000, output_tokens=100,
                    cost_usd=0.0035, start=start, duration_ms=200.0,
                    attributes={"otel.current_span": f"{otel_trace}-{named_span}"})
    theirs = _otlp(otel_trace, [(request_span, None, "handle_request", start - 1_000_000, {}),
                                (call_span, request_span, "ChatCompletion", start + 1_000_000, _CALL)])
    sends = [lambda: client.post("/api/ingest", json=[own]),
             lambda: client.post("/v1/traces", content=theirs, headers={"Content-Type": "application/json"})]
    for send in sends if first == "agentwatch" else reversed(sends):
        assert send().status_code in (200, 202)

    metrics = client.get("/api/metrics").json()
    assert (metrics["llm_calls"], metrics["input_tokens"], metrics["output_tokens"]) == (1, 1000, 100)
    models = client.get("/api/cost/by-model").json()["models"]
    assert sum(row["llm_calls"] for row in models) == 1
    assert sum(row["cost_usd"] for row in models) == pytest.approx(metrics["cost_usd"])
    agents = client.get("/api/cost/by-agent").json()["agents"]
    assert sum(row["llm_calls"] for row in agents) == 1
    traces = {trace["trace_id"]: trace for trace in client.get("/api/traces").json()["traces"]}
    assert sum(trace["llm_calls"] for trace in traces.values()) == 1
    # Both spans stay in their trees; one of them is marked the copy of the other.
    spans = [*client.get(f"/api/traces/{own['trace_id']}/spans").json()["spans"],
             *client.get(f"/api/traces/{otel_trace}/spans").json()["spans"]]
    kinds = sorted(span["kind"] for span in spans if span["name"] != "handle_request")
    assert kinds == ["llm", "llm_copy"]
    copy = next(span for span in spans if span["kind"] == "llm_copy")
    assert copy["attributes"]["copy_uncounted"]["input_tokens"] == 1000
    if first == "agentwatch" or client.app.state.agentwatch.store.__class__.__name__ == "SQLiteStore":
        # The instrumentation's span is the copy (on ClickHouse, whose spans are never changed, only when it came
        # second: the one that came first was counted already).
        assert copy["span_id"] == call_span
        assert metrics["cost_usd"] == pytest.approx(0.0035)


def test_an_llm_span_under_the_named_span_that_started_outside_the_call_is_counted(client: TestClient,
                                                                                   make_span: SpanFactory) -> None:
    """Another call of the same request span, made before AgentWatch's call: not a copy of it."""
    start = time.time_ns() - 60_000_000_000
    otel_trace, request_span = new_trace_id(), new_span_id()
    own = make_span(start=start, duration_ms=200.0, attributes={"otel.current_span": f"{otel_trace}-{request_span}"})
    theirs = _otlp(otel_trace, [(request_span, None, "handle_request", start - 10_000_000_000, {}),
                                (new_span_id(), request_span, "ChatCompletion", start - 5_000_000_000, _CALL)])
    client.post("/api/ingest", json=[own])
    client.post("/v1/traces", content=theirs, headers={"Content-Type": "application/json"})
    assert client.get("/api/metrics").json()["llm_calls"] == 2


_PYDANTIC_AI_PROGRAM = '''
import sys
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
import agentwatch
from pydantic_ai import Agent
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from tests.stubs.provider_server import Reply, StubProvider
agentwatch.init(spool_dir="")  # the default exporter: this collector's /api/ingest
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[1] + "/v1/traces")))
with StubProvider() as stub:
    model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(base_url=stub.openai_base_url, api_key="k"))
    support = Agent(model, name="Support")
    support.instrument = InstrumentationSettings(tracer_provider=provider)
    @support.tool_plain
    def add(a: int, b: int) -> int:
        return a + b
    stub.queue(Reply(content="", tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 2}}], input_tokens=1000,
                     output_tokens=100), Reply(content="the sum is 3", input_tokens=2000, output_tokens=10))
    support.run_sync("what is 1 + 2?")
provider.force_flush()
agentwatch.shutdown()
'''


def test_a_pydantic_ai_run_with_its_own_instrumentation_sent_too_counts_each_call_once(settings: Any) -> None:
    """README: Pydantic AI's instrumentation sent to ``/v1/traces`` shows the run with tokens and cost; with AgentWatch
    active as well, its default exporter sends the same calls to ``/api/ingest``."""
    handle = start_background("127.0.0.1", 0, settings=settings)
    try:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AGENTWATCH_", "OTEL_"))}
        env.update(PYTHONPATH=str(ROOT), AGENTWATCH_URL=f"{handle.url}/api/ingest")
        result = subprocess.run([sys.executable, "-c", _PYDANTIC_AI_PROGRAM, handle.url], env=env, cwd=str(ROOT),
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        metrics = _get(handle, "/api/metrics")
        # gpt-4o-mini: $0.15 in, $0.60 out per million tokens.
        expected = (3000 * 0.15 + 110 * 0.60) / 1e6
        assert (metrics["llm_calls"], metrics["input_tokens"]) == (2, 3000)
        assert metrics["cost_usd"] == pytest.approx(expected)
        agents = [row for row in _get(handle, "/api/cost/by-agent")["agents"] if row["agent_id"]]
        assert [(row["agent_id"], row["agent_name"], row["llm_calls"]) for row in agents] == [("support", "Support", 2)]
    finally:
        handle.stop()


def _get(handle: Any, path: str) -> Any:
    with urllib.request.urlopen(f"{handle.url}{path}", timeout=10) as response:
        return json.loads(response.read())
