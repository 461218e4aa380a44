"""Our OTLP export read back from a running Arize Phoenix: span kinds, messages and sessions as Phoenix parsed them.

Phoenix pins versions of openai, anthropic and the OpenTelemetry SDK that differ from ours, so it lives in a
virtualenv of its own and runs as its own process, offline, on 127.0.0.1 (``phoenix serve`` with a temporary
working directory, telemetry off)::

    python3 -m venv .phoenix && .phoenix/bin/pip install arize-phoenix
    AGENTWATCH_PHOENIX=.phoenix/bin/phoenix python -m pytest tests/plugins/otlp/test_phoenix.py

Without Phoenix this test is skipped, unless ``AGENTWATCH_REQUIRE_PHOENIX=1`` (then it fails).
``test_export_uses_openinference_names`` needs no Phoenix: it checks the same spans against the OpenInference
semantic conventions package (the names Phoenix reads).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openinference.semconv.trace import OpenInferenceSpanKindValues, SpanAttributes

from agentwatch.plugins.otlp._mapping import genai_attributes

PHOENIX = os.environ.get("AGENTWATCH_PHOENIX") or shutil.which("phoenix")
_REQUIRED = os.environ.get("AGENTWATCH_REQUIRE_PHOENIX") == "1"

PROGRAM = """
import agentwatch
from langgraph.checkpoint.memory import InMemorySaver
from agentwatch.server._demo_workflow import build_workflow

agentwatch.init(exporters=["otlp"], capture_messages=True, spool_dir="")
graph, _ = build_workflow(InMemorySaver())
graph.invoke({"topic": "EU AI Act", "notes": []}, {"configurable": {"thread_id": "thread-phoenix"}})
with agentwatch.agent("Librarian"), agentwatch.span("search_docs", kind="tool") as tool:
    tool.set_attribute("tool.name", "search_docs")
agentwatch.shutdown()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not PHOENIX or not os.path.exists(PHOENIX):
        if _REQUIRED:
            pytest.fail("Phoenix is not installed (see this module's docstring); AGENTWATCH_REQUIRE_PHOENIX=1")
        pytest.skip("Phoenix is not installed: set AGENTWATCH_PHOENIX to its `phoenix` executable")
    port, grpc = _free_port(), _free_port()
    work = tmp_path_factory.mktemp("phoenix")
    env = {**os.environ, "PHOENIX_WORKING_DIR": str(work), "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(port),
           "PHOENIX_GRPC_PORT": str(grpc), "PHOENIX_TELEMETRY_ENABLED": "false"}
    log = (work / "phoenix.log").open("wb")
    process = subprocess.Popen([PHOENIX, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                assert process.poll() is None, (work / "phoenix.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "Phoenix did not start within 180 s"
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _spans(url: str, project: str, expected: int) -> list[dict[str, Any]]:
    """Every span of the project, once Phoenix has written at least ``expected`` (it ingests asynchronously)."""
    deadline = time.monotonic() + 60
    while True:
        spans: list[dict[str, Any]] = []
        cursor = None
        try:
            while True:
                page = _get(f"{url}/v1/projects/{project}/spans?limit=500" + (f"&cursor={cursor}" if cursor else ""))
                spans.extend(page["data"])
                cursor = page.get("next_cursor")
                if not cursor:
                    break
        except urllib.error.HTTPError as error:
            if error.code != 404:  # the project appears with its first span
                raise
        if len(spans) >= expected or time.monotonic() > deadline:
            return spans
        time.sleep(0.5)


def test_phoenix_reads_kinds_messages_and_sessions(phoenix: str, tmp_path: Path) -> None:
    program = tmp_path / "send.py"
    program.write_text(PROGRAM)
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": phoenix,
           "OTEL_RESOURCE_ATTRIBUTES": "openinference.project.name=agentwatch-readback"}
    done = subprocess.run([sys.executable, str(program)], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]

    # graph, 6 nodes (planner, 4 × researcher, writer), 4 routing chains, 6 model calls, agent, tool (the process span
    # is not sent to third-party backends).
    spans = _spans(phoenix, "agentwatch-readback", 18)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_kind.setdefault(span["attributes"].get("agentwatch.kind", "?"), []).append(span)
    assert {span["span_kind"] for span in by_kind["graph"] + by_kind["node"] + by_kind["chain"]} == {"CHAIN"}
    assert [span["span_kind"] for span in by_kind["tool"]] == ["TOOL"]
    assert [span["span_kind"] for span in by_kind["agent"]] == ["AGENT"]
    llm = by_kind["llm"]
    assert len(llm) == 6 and {span["span_kind"] for span in llm} == {"LLM"}
    # Phoenix parsed our gen_ai.input/output.messages into its own message attributes: roles and text.
    first_input = "llm.input_messages.0.message.content"
    planner = next(s for s in llm if "Plan research" in str(s["attributes"].get(first_input)))
    attributes = planner["attributes"]
    assert attributes["llm.input_messages.0.message.role"] == "user"
    assert attributes["llm.input_messages.0.message.content"] == "Plan research on EU AI Act"
    assert attributes["llm.output_messages.0.message.role"] == "assistant"
    assert attributes["llm.output_messages.0.message.content"].startswith("1. scope the EU AI Act")
    assert attributes["llm.model_name"] == "gpt-4o"
    assert attributes["llm.token_count.prompt"] == 1500 and attributes["llm.token_count.completion"] == 400
    # Only LLM spans carry messages: graphs and nodes are not shown as model calls.
    for span in by_kind["graph"] + by_kind["node"]:
        assert not any(key.startswith(("llm.input_messages", "gen_ai.input.messages")) for key in span["attributes"])
    # The LangGraph thread is a Phoenix session holding the graph's trace.
    sessions = _get(f"{phoenix}/v1/projects/agentwatch-readback/sessions")["data"]
    thread = next(s for s in sessions if s["session_id"] == "thread-phoenix")
    assert [t["trace_id"] for t in thread["traces"]] == [by_kind["graph"][0]["context"]["trace_id"]]


def _span(kind: str, **extra: Any) -> dict[str, Any]:
    span = {"kind": kind, "status": "ok", "name": kind, "model": None, "provider": None, "input_tokens": 0,
            "output_tokens": 0, "cached_input_tokens": 0, "cost_usd": 0.0, "attributes": {"session.id": "s-1"}}
    span.update(extra)
    return span


def test_export_uses_openinference_names() -> None:
    kinds = {value.value for value in OpenInferenceSpanKindValues}
    for kind in ("llm", "embedding", "tool", "agent", "retriever", "graph", "node", "chain", "session", "cron"):
        attributes = genai_attributes(_span(kind))
        assert attributes[SpanAttributes.OPENINFERENCE_SPAN_KIND] in kinds, kind
        assert attributes[SpanAttributes.SESSION_ID] == "s-1"
        assert attributes["gen_ai.conversation.id"] == "s-1"
    llm = genai_attributes(_span("llm", model="gpt-4o", input=[{"role": "human", "content": "hi"}], output="hello"))
    assert json.loads(json.dumps(llm["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    assert llm["gen_ai.output.messages"][0]["role"] == "assistant"
    node = genai_attributes(_span("node", input={"topic": "x"}))
    assert not any(key.startswith("gen_ai.input") for key in node)
    assert node[SpanAttributes.INPUT_VALUE] == '{"topic": "x"}'
