"""Pydantic AI's own OpenTelemetry instrumentation (``InstrumentationSettings``, no Logfire) exporting OTLP to a
running collector, with AgentWatch's plugin active in the same program: the collector's API shows the agent
run, its requests and tool call as the right tree, kinds, tokens and cost.

Expected costs are written from published gpt-4o-mini rates ($0.15 input, $0.60 output per million tokens).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentwatch.server import ServerHandle, Settings, start_background

ROOT = Path(__file__).resolve().parents[3]

PROGRAM = textwrap.dedent("""
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

    agentwatch.init(exporters=[], budget_per_hour=10.0, block_on_threshold=True)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[1] + "/v1/traces")))
    with StubProvider() as stub:
        model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(base_url=stub.openai_base_url, api_key="k"))
        support = Agent(model, name="Support")
        support.instrument = InstrumentationSettings(tracer_provider=provider)

        @support.tool_plain
        def add(a: int, b: int) -> int:
            return a + b

        stub.queue(Reply(content="", tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 2}}],
                         input_tokens=1000, output_tokens=100),
                   Reply(content="the sum is 3", input_tokens=2000, output_tokens=10))
        print(support.run_sync("what is 1 + 2?").output)
    provider.force_flush()
""")


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[ServerHandle]:
    handle = start_background("127.0.0.1", 0, settings=Settings(db_path=tmp_path / "agentwatch.db",
                                                                 signing_key_path=tmp_path / "key.pem"))
    yield handle
    handle.stop()


def _get(handle: ServerHandle, path: str) -> Any:
    with urllib.request.urlopen(f"{handle.url}{path}", timeout=10) as response:
        return json.loads(response.read())


def test_pydantic_ai_instrument_shows_tree_kinds_tokens_and_cost(collector: ServerHandle) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AGENTWATCH_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", PROGRAM, collector.url], capture_output=True, text=True,
                          timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "the sum is 3"
    traces = _get(collector, "/api/traces")["traces"]
    assert len(traces) == 1
    spans = _get(collector, f"/api/traces/{traces[0]['trace_id']}/spans")["spans"]
    by_id = {span["span_id"]: span for span in spans}
    agent = next(span for span in spans if span["kind"] == "agent")
    assert agent["parent_span_id"] is None and agent["agent_name"] == "Support"
    llms = sorted((span for span in spans if span["kind"] == "llm"), key=lambda span: span["start_time_unix_nano"])
    assert [(span["model"], span["input_tokens"], span["output_tokens"]) for span in llms] == [
        ("gpt-4o-mini", 1000, 100), ("gpt-4o-mini", 2000, 10)]
    assert [span["cost_usd"] for span in llms] == pytest.approx([(1000 * 0.15 + 100 * 0.60) / 1e6,
                                                                 (2000 * 0.15 + 10 * 0.60) / 1e6])
    tool = next(span for span in spans if span["kind"] == "tool")
    assert "add" in tool["name"]
    for span in (*llms, tool):
        assert by_id[span["parent_span_id"]] is agent
    assert _get(collector, "/api/metrics")["cost_usd"] == pytest.approx(sum(span["cost_usd"] for span in llms))
