"""The collector as the peer's ``aeneas-agentwatch`` 0.2.1 SDK uses it: ATP spans and its alert payload.

The payloads are built exactly as that SDK builds them (interceptor ``_emit``, ``trace()``, ``span()`` and
``ThresholdMonitor._handle_violation``), with ids from ``uuid4().hex`` like the SDK's.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from agentwatch._pricing import Pricer
from agentwatch.server import SQLiteStore, TraceQuery
from agentwatch.server._ingest import parse_spans


def _trace_id() -> str:
    return uuid.uuid4().hex


def _span_id() -> str:
    return uuid.uuid4().hex[:16]


def _root(trace_id: str, span_id: str, name: str, start: int, agent: str = "orchestrator") -> dict[str, Any]:
    """``agentwatch.trace(name, agent_id=...)`` of the peer SDK."""
    return {"trace_id": trace_id, "span_id": span_id, "name": name, "kind": "SERVER", "start_time_unix_nano": start,
            "end_time_unix_nano": start + 2_000_000_000, "status": {"code": "OK"}, "agent_id": agent,
            "agent_name": agent.title(), "agent_role": "Orchestrator", "compliance_flags": ["eu_ai_act_art12_relevant"]}


def _step(trace_id: str, parent: str, name: str, agent: str, start: int) -> dict[str, Any]:
    """``agentwatch.span(name, agent_id=...)``: an agent's step, with or without LLM calls inside."""
    return {"trace_id": trace_id, "span_id": _span_id(), "parent_span_id": parent, "name": name, "kind": "INTERNAL",
            "start_time_unix_nano": start, "end_time_unix_nano": start + 500_000_000, "status": {"code": "OK"},
            "agent_id": agent, "agent_name": agent.title(), "agent_role": "Worker"}


def _llm(trace_id: str, parent: str | None, agent: str, start: int, *, model: str = "gpt-4o",
         prompt_tokens: int = 1000, completion_tokens: int = 500) -> dict[str, Any]:
    """The interceptor's span for an OpenAI call: tokens and model, no cost_attribution."""
    span = {"trace_id": trace_id, "span_id": _span_id(), "name": "openai.http", "kind": "CLIENT",
            "start_time_unix_nano": start, "end_time_unix_nano": start + 300_000_000, "status": {"code": "OK"},
            "agent_id": agent, "agent_name": agent.title(), "agent_role": "Worker",
            "model_inference": {"model_name": model, "provider": "OpenAI", "prompt_tokens": prompt_tokens,
                                "completion_tokens": completion_tokens, "latency_ms": 300}}
    if parent:
        span["parent_span_id"] = parent
    return span


def test_ingest_answers_202_accepted_with_the_counts(client: TestClient) -> None:
    trace_id, root = _trace_id(), _span_id()
    answer = client.post("/api/ingest", json=_root(trace_id, root, "run", time.time_ns()))
    assert answer.status_code == 202
    assert answer.json() == {"accepted": 1, "duplicates": 0, "rejected": 0}


def test_atp_ids_must_be_hex_as_the_atp_schema_says(client: TestClient) -> None:
    start = time.time_ns()
    for bad in ({"trace_id": "not-a-hex-trace-id-at-all-000000"}, {"trace_id": "ABCDEF" + uuid.uuid4().hex[6:]},
                {"trace_id": uuid.uuid4().hex[:20]}, {"span_id": "zz" + _span_id()[2:]},
                {"parent_span_id": "span-1"}):
        span = {**_root(_trace_id(), _span_id(), "bad ids", start), **bad}
        answer = client.post("/api/ingest", json=span)
        assert answer.status_code == 422, (bad, answer.text)
        assert next(iter(bad)) in answer.text
    assert client.get("/api/traces").json()["traces"] == []


def test_atp_llm_spans_without_cost_are_priced_like_the_sdk(client: TestClient) -> None:
    trace_id, root = _trace_id(), _span_id()
    start = time.time_ns() - 10_000_000_000
    unpriced = _llm(trace_id, root, "researcher", start + 1_000)
    unknown = _llm(trace_id, root, "researcher", start + 2_000, model="house-model-7", prompt_tokens=2_000_000,
                   completion_tokens=0)
    priced = {**_llm(trace_id, root, "researcher", start + 3_000),
              "cost_attribution": {"task_id": "t-1", "accumulated_cost_usd": 0.5}}
    batch = [_root(trace_id, root, "priced run", start), unpriced, unknown, priced]
    assert client.post("/api/ingest", json=batch).json()["accepted"] == 4

    pricer = Pricer()
    expected, estimated = pricer.cost("gpt-4o", "OpenAI", 1000, 500)
    assert expected > 0 and not estimated
    expected_unknown, estimated_unknown = pricer.cost("house-model-7", "OpenAI", 2_000_000, 0)
    assert estimated_unknown and expected_unknown == 2.0  # the default rate, $1 per 1M input tokens
    spans = {s["span_id"]: s for s in client.get(f"/api/traces/{trace_id}/spans").json()["spans"]}
    assert spans[unpriced["span_id"]]["cost_usd"] == expected
    assert spans[unpriced["span_id"]]["attributes"]["cost_source"] == "collector"
    assert spans[unknown["span_id"]]["cost_usd"] == expected_unknown
    assert spans[unknown["span_id"]]["attributes"]["cost_estimated"] is True
    assert spans[priced["span_id"]]["cost_usd"] == 0.5  # a cost the client sent is kept
    assert "cost_source" not in spans[priced["span_id"]]["attributes"]

    total = expected + expected_unknown + 0.5
    trace = client.get(f"/api/traces/{trace_id}").json()
    assert abs(trace["cost_usd"] - total) < 1e-9
    metrics = client.get("/api/metrics").json()
    assert abs(metrics["cost_usd"] - total) < 1e-9
    models = {row["model"]: row for row in client.get("/api/cost/by-model").json()["models"]}
    assert abs(models["gpt-4o"]["cost_usd"] - (expected + 0.5)) < 1e-9


def test_the_peer_sdks_alert_payload_is_accepted(client: TestClient) -> None:
    sent_at = time.time()
    alert = {"scope": "agent", "scope_id": "ExpensiveBot", "reason": "budget_exceeded", "threshold": 5.0,
             "current": 5.73, "blocked": True, "timestamp": sent_at}
    answer = client.post("/api/alerts/sdk-alert", json=alert)
    assert answer.status_code == 202, answer.text
    assert answer.json()["recorded"] is True
    assert client.post("/api/alerts/sdk-alert", json=alert).json()["recorded"] is False  # resent: once
    history = client.get("/api/alerts/history").json()["history"]
    assert len(history) == 1
    event = history[0]
    assert event["source"] == "sdk" and event["condition"] == "budget_exceeded"
    assert (event["scope"], event["scope_id"], event["threshold"], event["value"]) == ("agent", "ExpensiveBot", 5.0,
                                                                                       5.73)
    assert abs(event["timestamp_unix_nano"] / 1e9 - sent_at) < 1e-3
    breakers = client.get("/api/circuit-breaker/status").json()["breakers"]
    assert [(b["scope"], b["scope_id"], b["alerts"]) for b in breakers] == [("agent", "ExpensiveBot", 1)]
    assert client.post("/api/alerts/sdk-alert", json={**alert, "timestamp": "soon"}).status_code == 422
    # Where that SDK actually posts with its documented ingest URL (".../api/ingest" minus "/ingest", plus
    # "/api/alerts/sdk-alert").
    again = {**alert, "reason": "error_rate_exceeded", "timestamp": sent_at + 1}
    assert client.post("/api/api/alerts/sdk-alert", json=again).status_code == 202
    assert len(client.get("/api/alerts/history").json()["history"]) == 2


def test_trace_name_is_the_earliest_starting_roots(client: TestClient) -> None:
    start = time.time_ns() - 60_000_000_000
    # Separate requests, the later-starting root first (it ended first, so its SDK sent it first).
    trace_id = _trace_id()
    assert client.post("/api/ingest", json=_root(trace_id, _span_id(), "retry", start + 5_000_000_000)).status_code \
        == 202
    assert client.get(f"/api/traces/{trace_id}").json()["name"] == "retry"
    client.post("/api/ingest", json=_root(trace_id, _span_id(), "pipeline", start))
    assert client.get(f"/api/traces/{trace_id}").json()["name"] == "pipeline"
    client.post("/api/ingest", json=_root(trace_id, _span_id(), "late", start + 9_000_000_000))
    assert client.get(f"/api/traces/{trace_id}").json()["name"] == "pipeline"
    # One batch, the later-starting root first.
    other = _trace_id()
    batch = [_root(other, _span_id(), "second", start + 1_000), _root(other, _span_id(), "first", start)]
    client.post("/api/ingest", json=batch)
    assert client.get(f"/api/traces/{other}").json()["name"] == "first"
    listed = {t["trace_id"]: t["name"] for t in client.get("/api/traces").json()["traces"]}
    assert listed == {trace_id: "pipeline", other: "first"}


def test_every_atp_agent_is_a_graph_node(client: TestClient) -> None:
    trace_id, root = _trace_id(), _span_id()
    start = time.time_ns() - 10_000_000_000
    research = _step(trace_id, root, "research-step", "researcher", start + 1_000)
    review = _step(trace_id, root, "review-step", "reviewer", start + 2_000)  # no LLM call
    archive = _step(trace_id, review["span_id"], "archive", "archivist", start + 3_000)  # no LLM call either
    call = _llm(trace_id, research["span_id"], "researcher", start + 1_500)
    batch = [call, research, review, archive, _root(trace_id, root, "pipeline", start)]
    assert client.post("/api/ingest", json=batch).json()["accepted"] == 5
    graph = client.get(f"/api/traces/{trace_id}/graph").json()
    nodes = {node["id"]: node for node in graph["nodes"]}
    assert {"agent:orchestrator", "agent:researcher", "agent:reviewer", "agent:archivist"} <= set(nodes)
    assert nodes["agent:reviewer"]["type"] == "agent" and nodes["agent:reviewer"]["label"] == "Reviewer"
    edges = {(edge["source"], edge["target"], edge["type"]) for edge in graph["edges"]}
    assert ("agent:orchestrator", "agent:reviewer", "delegates") in edges
    assert ("agent:reviewer", "agent:archivist", "delegates") in edges
    assert ("agent:orchestrator", "agent:researcher", "delegates") in edges
    assert ("agent:researcher", f"llm:{call['span_id']}", "calls") in edges


def test_a_database_from_before_root_start_ns_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SQLiteStore(path)
    store.close()
    with sqlite3.connect(path) as connection:  # the traces table as it was before the columns existed
        connection.execute("ALTER TABLE traces DROP COLUMN root_start_ns")
        connection.execute("ALTER TABLE traces DROP COLUMN unowned")
        connection.execute("ALTER TABLE rollup_agent DROP COLUMN name_ns")
    store = SQLiteStore(path)
    try:
        trace_id, start = _trace_id(), time.time_ns() - 10_000_000_000
        raw = json.dumps([_root(trace_id, _span_id(), "later", start + 5), _root(trace_id, _span_id(), "early", start)])
        assert store.ingest(parse_spans(raw.encode(), 100).records).accepted == 2
        assert store.get_trace(trace_id)["name"] == "early"  # type: ignore[index]
        assert [a["agent_name"] for a in store.cost_by_agent(None, None)] == ["Orchestrator"]
    finally:
        store.close()


def test_a_database_from_before_the_search_column_is_searched(tmp_path: Path) -> None:
    """Rows written before traces.search are searched by their own columns until a batch adds to them."""
    path = tmp_path / "old.db"
    store = SQLiteStore(path)
    trace_id, start = _trace_id(), time.time_ns() - 10_000_000_000
    root = _root(trace_id, _span_id(), "Ärger", start)
    assert store.ingest(parse_spans(json.dumps([root]).encode(), 100).records).accepted == 1
    store.close()
    with sqlite3.connect(path) as connection:
        connection.execute("ALTER TABLE traces DROP COLUMN search")
    store = SQLiteStore(path)
    try:
        def found(text: str) -> bool:
            return [t["trace_id"] for t in store.list_traces(TraceQuery(search=text))["traces"]] == [trace_id]

        assert found("ärger") and found(root["agent_id"].upper()) and not found("null")
        later = _llm(trace_id, root["span_id"], "Nachzügler", start + 5)
        assert store.ingest(parse_spans(json.dumps([later]).encode(), 100).records).accepted == 1
        assert found("ärger") and found("NACHZÜGLER") and found(root["agent_id"].upper()) and not found("null")
    finally:
        store.close()
