"""Traces of the SDK's bookkeeping alone (a process's start, a breaker transition made outside any trace, a session's
own span) are stored and read by id, but neither listed nor counted as the program's traces unless asked
(``include_system=true``), on every store.

Found 2026-12-06: a program that made one traced run saw four traces, one named ``process.start``; the list's total,
the overview's and the monthly report's trace counts counted them all."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agentwatch.server import ServerHandle, SQLiteStore, TraceQuery
from agentwatch.server._ingest import parse_spans
from agentwatch.server._stats import HOUR_NS
from tests.server.aw_helpers import SpanFactory, make_trace, new_trace_id

ROOT = Path(__file__).resolve().parents[2]

# One traced run inside a session opened outside any trace, blocked by its agent's budget; the budget is raised after
# the session, outside any trace. Besides the run, the SDK sends three traces of its own: its process's start, the
# session's span, and the breaker's recovery.
PROGRAM = """
import sys

import openai

import agentwatch
from tests.stubs.provider_server import Reply, StubProvider

agentwatch.init()
with StubProvider() as stub:
    client = openai.OpenAI(base_url=stub.openai_base_url, api_key="k", max_retries=0)
    with agentwatch.session("job", session_id=sys.argv[1]):
        with agentwatch.trace("run"), agentwatch.agent("Spender", budget_per_hour=0.01, block_on_threshold=True):
            try:
                for index in range(4):
                    stub.queue(Reply(input_tokens=1000, output_tokens=200))  # $0.0045 on gpt-4o: the 4th is blocked
                    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": str(index)}])
            except agentwatch.CircuitBreakerException as error:
                blocked = error
    blocked.monitor.increase_budget(0.05)
agentwatch.shutdown()
"""


def _get(handle: ServerHandle, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{handle.url}{path}{query}", timeout=10) as response:
        return json.loads(response.read())


def test_a_program_s_bookkeeping_is_not_listed_or_counted_as_its_traces(tmp_path: Path,
                                                                         collector: ServerHandle) -> None:
    session_id = f"job-{uuid.uuid4().hex[:8]}"
    started = time.time_ns()
    env = {**os.environ, "AGENTWATCH_URL": f"{collector.url}/api/ingest", "AGENTWATCH_SPOOL_DIR": "",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROGRAM, session_id], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # The whole hours (rollups, hourly counts) and the partial hours at the ends (raw spans) are both read.
    ranges = [{}, {"from": str(started - 1), "to": str(time.time_ns() + 1)},
              {"from": str((started // HOUR_NS - 2) * HOUR_NS + 1), "to": str((started // HOUR_NS + 2) * HOUR_NS)}]
    for bounds in ranges:
        listed = _get(collector, "/api/traces", **bounds)
        assert [(t["name"], t["status"]) for t in listed["traces"]] == [("run", "blocked")], bounds
        assert listed["total"] == 1, bounds
        assert listed["traces"][0]["system"] is False
        assert _get(collector, "/api/metrics", **bounds)["traces"] == 1, bounds
        by_cost = _get(collector, "/api/traces", sort="cost", order="asc", limit="1", **bounds)
        assert [t["name"] for t in by_cost["traces"]] == ["run"] and by_cost["total"] == 1, bounds

        everything = _get(collector, "/api/traces", include_system="true", **bounds)
        names = sorted((t["name"], t["system"]) for t in everything["traces"])
        assert names == [("breaker.budget_increased", True), ("job", True), ("process.start", True),
                         ("run", False)], bounds
        assert everything["total"] == 4, bounds
    for trace in _get(collector, "/api/traces", include_system="true")["traces"]:  # each still read by id
        assert _get(collector, f"/api/traces/{trace['trace_id']}")["system"] is trace["system"]
        assert _get(collector, f"/api/traces/{trace['trace_id']}/spans")["spans"]
    # The views made of these spans are unchanged: the breaker's transitions, the session and its run.
    events = [event["event"] for event in _get(collector, "/api/circuit-breaker/history")["transitions"]]
    assert "budget_increased" in events and len(events) >= 2, events
    detail = _get(collector, f"/api/sessions/{session_id}")
    assert detail["trace_count"] == 1 and [t["role"] for t in detail["traces"]] == ["session", "blocked"]
    month = time.strftime("%Y-%m", time.gmtime(started / 1e9))
    report = _get(collector, "/api/reports/monthly", month=month)
    assert report["totals"]["traces"] == 1 and [t["name"] for t in report["top_traces"]] == ["run"]


def _bookkeeping(make_span: SpanFactory, kind: str, name: str, start: int, **fields: Any) -> dict[str, Any]:
    unset = {"model": None, "provider": None, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "agent_id": None,
             "agent_name": None, "agent_role": None}
    return make_span(**{**unset, **fields}, kind=kind, name=name, start=start)


def test_a_trace_is_listed_once_work_arrives_in_it(client: TestClient, make_span: SpanFactory) -> None:
    """A trace whose bookkeeping span arrives before its work (a breaker trip under a call still running) is left
    out until the work arrives, and from then on listed and counted, in every filter, sort and page."""
    start = (time.time_ns() // HOUR_NS - 3) * HOUR_NS + 7
    run = make_trace(make_span, calls=2, start=start)
    trip = _bookkeeping(make_span, "breaker", "breaker.tripped", start + 5, trace_id=run[0]["trace_id"],
                        parent_span_id=run[0]["span_id"], agent_id="researcher", agent_name="Researcher",
                        attributes={"event": "tripped", "scope": "agent", "scope_id": "researcher",
                                    "from_state": "CLOSED", "to_state": "OPEN", "reason": "budget_per_hour"})
    process = _bookkeeping(make_span, "process", "process.start", start - HOUR_NS)
    other = make_trace(make_span, calls=1, start=start + HOUR_NS, name="other task")
    assert client.post("/api/ingest", json=[trip, process, *other]).status_code == 202

    def listed(**params: str) -> tuple[list[str], int]:
        answer = client.get("/api/traces", params=params).json()
        return [t["trace_id"] for t in answer["traces"]], answer["total"]

    whole = {"from": str(start - 2 * HOUR_NS), "to": str(start + 2 * HOUR_NS)}
    cut = {"from": str(start - HOUR_NS + 1), "to": str(start + HOUR_NS + 10)}
    queries = [{}, whole, cut, {"agent_id": "researcher"}, {"status": "ok"}, {"search": "task"}, {"sort": "cost"},
               {"agent_id": "researcher", **cut}, {"limit": "1"}]
    for params in queries:
        assert listed(**params) == ([other[0]["trace_id"]], 1), params
    assert client.get("/api/metrics", params=cut).json()["traces"] == 1
    everything = listed(include_system="true", order="asc")
    assert everything == ([process["trace_id"], trip["trace_id"], other[0]["trace_id"]], 3)

    assert client.post("/api/ingest", json=run).status_code == 202  # the work of the trip's trace
    newest_first = [other[0]["trace_id"], run[0]["trace_id"]]
    for params in queries:
        if params != {"limit": "1"}:  # the run (two calls) costs more than the other (one)
            expected = newest_first[::-1] if params.get("sort") == "cost" else newest_first
            assert listed(**params) == (expected, 2), params
    first, total = listed(limit="1")
    assert (first, total) == ([other[0]["trace_id"]], 2)
    cursor = client.get("/api/traces", params={"limit": "1"}).json()["next_cursor"]
    assert [t["trace_id"] for t in client.get("/api/traces", params={"limit": "1", "cursor": cursor}).json()[
        "traces"]] == [run[0]["trace_id"]]
    for bounds in ({}, whole, cut):
        assert client.get("/api/metrics", params=bounds).json()["traces"] == 2, bounds
    assert listed(include_system="true")[1] == 3
    assert client.get(f"/api/traces/{process['trace_id']}").json()["system"] is True
    assert client.get(f"/api/traces/{run[0]['trace_id']}").json()["system"] is False

    # The retention purge takes both kinds of trace out of the counts it keeps (the process's and the run's).
    client.app.state.agentwatch.store.purge(start + 10)  # type: ignore[attr-defined]
    for bounds in ({}, whole, cut):
        assert listed(**bounds) == ([other[0]["trace_id"]], 1), bounds
        assert listed(include_system="true", **bounds)[1] == 1, bounds


def _sdk_spans(make_span: SpanFactory, start: int) -> tuple[list[dict[str, Any]], str]:
    """A process's start (a trace of its own) and a traced call; the id of the call's trace."""
    call = make_trace(make_span, calls=1, start=start)
    return [_bookkeeping(make_span, "process", "process.start", start - 5), *call], call[0]["trace_id"]


def test_a_database_from_before_the_system_column_is_upgraded(tmp_path: Path, make_span: SpanFactory) -> None:
    path = tmp_path / "old.db"
    store = SQLiteStore(path)
    spans, run = _sdk_spans(make_span, time.time_ns() - 3 * HOUR_NS)
    assert store.ingest(parse_spans(json.dumps(spans).encode(), 100).records).accepted == 3
    store.close()
    with sqlite3.connect(path) as connection:  # the traces table as it was before the column existed
        connection.execute("DROP INDEX traces_system")
        connection.execute("ALTER TABLE traces DROP COLUMN system")
    store = SQLiteStore(path)
    try:
        answer = store.list_traces(TraceQuery())
        assert [t["trace_id"] for t in answer["traces"]] == [run] and answer["total"] == 1
        assert store.metrics(None, None)["traces"] == 1
        assert store.list_traces(TraceQuery(include_system=True))["total"] == 2
    finally:
        store.close()


def test_a_clickhouse_database_from_before_the_system_column_is_upgraded(clickhouse_store: Any,
                                                                         make_span: SpanFactory) -> None:
    from agentwatch.server._clickhouse import ClickHouseStore

    start = (time.time_ns() // HOUR_NS - 3) * HOUR_NS + 11
    spans, run = _sdk_spans(make_span, start)
    assert clickhouse_store.ingest(parse_spans(json.dumps(spans).encode(), 100).records).accepted == 3
    db = clickhouse_store.database
    # The summary, its view and the hourly counts as they were before the columns existed.
    clickhouse_store._execute(f"DROP VIEW {db}.trace_summary_mv")
    clickhouse_store._execute(f"ALTER TABLE {db}.trace_summary DROP PROJECTION by_start SETTINGS mutations_sync = 2")
    clickhouse_store._execute(f"ALTER TABLE {db}.trace_summary DROP COLUMN s_user_spans")
    clickhouse_store._execute(f"ALTER TABLE {db}.trace_summary DROP COLUMN s_names")
    clickhouse_store._execute(f"ALTER TABLE {db}.trace_starts DROP COLUMN system")
    again = ClickHouseStore(clickhouse_store._db_conn)
    for bounds in [(None, None), (start - HOUR_NS // 2, start + HOUR_NS // 2)]:
        answer = again.list_traces(TraceQuery(start_ns=bounds[0], end_ns=bounds[1]))
        assert [t["trace_id"] for t in answer["traces"]] == [run] and answer["total"] == 1, bounds
        assert again.metrics(*bounds)["traces"] == 1, bounds
        assert again.list_traces(TraceQuery(include_system=True, start_ns=bounds[0], end_ns=bounds[1]))[
            "total"] == 2, bounds
    # New spans are summed by the view made again: a later bookkeeping trace is still left out.
    later = _bookkeeping(make_span, "process", "process.start", start + 60 * 10**9, trace_id=new_trace_id())
    assert again.ingest(parse_spans(json.dumps([later]).encode(), 100).records).accepted == 1
    assert again.list_traces(TraceQuery())["total"] == 1 and again.metrics(None, None)["traces"] == 1
    assert again.list_traces(TraceQuery(include_system=True))["total"] == 3


@pytest.mark.parametrize("kind", ["process", "breaker", "session"])
def test_each_kind_of_bookkeeping_alone_is_left_out(client: TestClient, make_span: SpanFactory, kind: str) -> None:
    span = _bookkeeping(make_span, kind, f"{kind}.span", time.time_ns() - 10**9)
    assert client.post("/api/ingest", json=[span]).status_code == 202
    assert client.get("/api/traces").json()["total"] == 0
    assert client.get("/api/traces", params={"include_system": "true"}).json()["total"] == 1
