"""Sessions API on both stores: traces grouped by ``session.id``, and the block → recovery → resume story."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agentwatch.server import SQLiteStore
from agentwatch.server._ingest import parse_spans
from agentwatch.server._sessions import session_detail
from tests.server.aw_helpers import SpanFactory, new_span_id, new_trace_id

NOW = time.time_ns()
SEC = 1_000_000_000


def _breaker(make_span: SpanFactory, at: int, event: str, from_state: str, to_state: str,
             reason: str, **fields: Any) -> dict[str, Any]:
    """A transition as the SDK exports it: a span of its own trace (made outside any, as an operator's recovery), or
    of the trace it was made in (``trace_id``, ``parent_span_id``: a trip, under the blocked call's parent)."""
    return make_span(name=f"breaker.{event}", kind="breaker", start=at, duration_ms=0, model=None, provider=None,
                     input_tokens=0, output_tokens=0, cost_usd=0.0, agent_id=None, agent_name=None, agent_role=None,
                     attributes={"event": event, "from_state": from_state, "to_state": to_state, "scope": "agent",
                                 "scope_id": "researcher", "reason": reason, "threshold": 0.12, "current": 0.135},
                     **fields)


def _trip_of(make_span: SpanFactory, run: list[dict[str, Any]]) -> dict[str, Any]:
    """The trip that blocked ``run``'s last span, as the SDK records it: in that trace, a moment after the blocked
    span started."""
    blocked = run[-1]
    return _breaker(make_span, blocked["start_time_unix_nano"] + 40_000, "triggered", "CLOSED", "OPEN",
                    "budget_per_hour", trace_id=blocked["trace_id"], parent_span_id=blocked["parent_span_id"])


def _graph_run(make_span: SpanFactory, session: str | None, start: int, calls: int, *,
               blocked: bool = False) -> list[dict[str, Any]]:
    """A LangGraph-shaped trace: graph → node → LLM calls; ``blocked``: the last node is stopped at its start."""
    trace_id = new_trace_id()
    tag = {"session.id": session} if session else {}
    graph = make_span(trace_id=trace_id, name="LangGraph", kind="graph", start=start, duration_ms=calls * 1000 + 500,
                      model=None, provider=None, input_tokens=0, output_tokens=0, cost_usd=0.0,
                      status="blocked" if blocked else "ok",
                      attributes={**tag, "thread_id": session, **({"breaker.reason": "budget_per_hour"}
                                                                  if blocked else {})})
    node = make_span(trace_id=trace_id, parent_span_id=graph["span_id"], name="researcher", kind="node",
                     start=start + 1, duration_ms=calls * 1000, model=None, provider=None, input_tokens=0,
                     output_tokens=0, cost_usd=0.0, attributes=dict(tag))
    spans = [graph, node]
    for index in range(calls):
        spans.append(make_span(trace_id=trace_id, parent_span_id=node["span_id"], start=start + 2 + index * SEC,
                               cost_usd=0.05, attributes=dict(tag)))
    if blocked:
        spans.append(make_span(trace_id=trace_id, span_id=new_span_id(), parent_span_id=graph["span_id"],
                               name="writer", kind="node", status="blocked", start=start + calls * SEC + 100,
                               duration_ms=0, model=None, provider=None, input_tokens=0, output_tokens=0,
                               cost_usd=0.0, attributes={**tag, "breaker.reason": "budget_per_hour",
                                                         "breaker.scope": "agent", "breaker.scope_id": "researcher"}))
    return spans


@pytest.fixture
def story(client: TestClient, make_span: SpanFactory) -> dict[str, Any]:
    first = _graph_run(make_span, "thread-7", NOW - 600 * SEC, 3, blocked=True)
    resume = _graph_run(make_span, "thread-7", NOW - 300 * SEC, 2)
    other = _graph_run(make_span, "daily", NOW - 900 * SEC, 1)
    loose = _graph_run(make_span, None, NOW - 100 * SEC, 1)
    unrelated = _breaker(make_span, NOW - 500 * SEC, "reset", "OPEN", "CLOSED", "reset_windows")
    unrelated["attributes"]["scope_id"] = "writer"
    batches = [
        first[1:], [first[0]],  # children first, as an SDK exports them
        [_trip_of(make_span, first)],
        [_breaker(make_span, NOW - 400 * SEC, "budget_increased", "OPEN", "CLOSED", "increase_budget")],
        resume, other, loose, [unrelated], first,  # the last: a retried batch changes nothing
    ]
    for batch in batches:
        assert client.post("/api/ingest", json=batch).status_code == 202
    return {"first": first[0]["trace_id"], "resume": resume[0]["trace_id"], "other": other[0]["trace_id"]}


def test_sessions_list_groups_traces_by_session(client: TestClient, story: dict[str, Any]) -> None:
    answer = client.get("/api/sessions").json()
    assert answer["total"] == 2
    assert [s["session_id"] for s in answer["sessions"]] == ["thread-7", "daily"]  # most recent activity first
    thread = answer["sessions"][0]
    assert thread["trace_count"] == 2
    assert thread["llm_calls"] == 5
    assert thread["cost_usd"] == pytest.approx(0.25)
    assert thread["blocked_calls"] == 1
    assert thread["status"] == "ok"  # where it stands: the resume finished
    assert thread["first_activity_unix_nano"] == NOW - 600 * SEC
    assert thread["last_activity_unix_nano"] > NOW - 300 * SEC
    assert thread["first_activity"].endswith("Z") and thread["last_activity"].endswith("Z")
    daily = answer["sessions"][1]
    assert (daily["trace_count"], daily["llm_calls"], daily["blocked_calls"]) == (1, 1, 0)
    assert client.get("/api/sessions", params={"search": "THREAD"}).json()["total"] == 1
    paged = client.get("/api/sessions", params={"limit": 1, "offset": 1}).json()
    assert [s["session_id"] for s in paged["sessions"]] == ["daily"] and paged["total"] == 2


def test_session_detail_tells_block_recovery_resume(client: TestClient, story: dict[str, Any]) -> None:
    detail = client.get("/api/sessions/thread-7").json()
    assert [t["trace_id"] for t in detail["traces"]] == [story["first"], story["resume"]]
    assert [t["role"] for t in detail["traces"]] == ["blocked", "resume"]
    assert detail["traces"][1]["resumes"] == story["first"]
    assert detail["resumed"] is True
    assert [(b["name"], b["reason"], b["scope_id"]) for b in detail["blocks"]] == [
        ("writer", "budget_per_hour", "researcher")]
    steps = [(item["type"], item.get("role") or item.get("name")) for item in detail["story"]]
    assert steps == [("trace", "blocked"), ("breaker", "trip"), ("block", "writer"), ("breaker", "recovery"),
                     ("trace", "resume")]
    trip = detail["transitions"][0]
    assert (trip["event"], trip["from_state"], trip["to_state"]) == ("triggered", "CLOSED", "OPEN")
    assert detail["transitions"][1]["event"] == "budget_increased"
    # The writer scope's reset is another breaker's story.
    assert all(t["scope_id"] == "researcher" for t in detail["transitions"])
    assert detail["trace_count"] == 2 and detail["blocked_calls"] == 1


def test_unknown_session_and_bad_ids(client: TestClient, story: dict[str, Any]) -> None:
    assert client.get("/api/sessions/nope").status_code == 404
    assert client.get("/api/sessions/" + "x" * 600).status_code == 400
    assert client.get("/api/sessions", params={"limit": 0}).status_code == 422


def test_ids_with_slashes_and_odd_characters(client: TestClient, make_span: SpanFactory) -> None:
    spans = _graph_run(make_span, "user/42 · chat", NOW - 50 * SEC, 1)
    client.post("/api/ingest", json=spans)
    detail = client.get("/api/sessions/user/42 · chat").json()
    assert detail["session_id"] == "user/42 · chat" and detail["traces"][0]["role"] == "run"
    # By query too: the only way for a session named "." or "..", which a URL path cannot carry.
    for session in ("..", "user/42 · chat"):
        if session == "..":
            client.post("/api/ingest", json=_graph_run(make_span, session, NOW - 40 * SEC, 1))
        assert client.get("/api/session", params={"id": session}).json()["session_id"] == session
    assert client.get("/api/session", params={"id": "nope"}).status_code == 404
    assert client.get("/api/session", params={"id": ""}).status_code == 400


def test_session_search_ignores_case_in_every_alphabet(client: TestClient, make_span: SpanFactory) -> None:
    """Found 2026-12-05: SQLite's session search folded ASCII letters only (``ärger`` did not find ``Sess-ÄRGER``)."""
    client.post("/api/ingest", json=_graph_run(make_span, "Sess-ÄRGER", NOW - 50 * SEC, 1))
    client.post("/api/ingest", json=_graph_run(make_span, "other_1", NOW - 40 * SEC, 1))
    for text, expected in (("ärger", ["Sess-ÄRGER"]), ("SESS-Ä", ["Sess-ÄRGER"]), ("ER_1", ["other_1"]), ("r%", [])):
        answer = client.get("/api/sessions", params={"search": text}).json()
        assert [s["session_id"] for s in answer["sessions"]] == expected and answer["total"] == len(expected), text


def test_otlp_conversation_and_langfuse_ids_are_sessions(client: TestClient) -> None:
    def span(trace: str, key: str, value: str) -> dict[str, Any]:
        return {"traceId": trace, "spanId": new_span_id(), "name": "chat gpt-4o",
                "startTimeUnixNano": str(NOW - 10 * SEC), "endTimeUnixNano": str(NOW - 9 * SEC),
                "attributes": [{"key": key, "value": {"stringValue": value}},
                               {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}]}

    body = {"resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {"name": "x"}, "spans": [
        span(new_trace_id(), "gen_ai.conversation.id", "conv-1"),
        span(new_trace_id(), "langfuse.session.id", "conv-1"),
        span(new_trace_id(), "session.id", "oi-session"),
    ]}]}]}
    response = client.post("/v1/traces", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    sessions = {s["session_id"]: s["trace_count"] for s in client.get("/api/sessions").json()["sessions"]}
    assert sessions == {"conv-1": 2, "oi-session": 1}


def test_purge_drops_sessions_with_their_traces(client: TestClient, story: dict[str, Any]) -> None:
    store = client.app.state.agentwatch.store  # type: ignore[attr-defined]
    store.purge(NOW - 700 * SEC)  # only "daily" started before
    assert [s["session_id"] for s in client.get("/api/sessions").json()["sessions"]] == ["thread-7"]


def test_a_recovery_awaiting_its_resume_is_told(client: TestClient, make_span: SpanFactory) -> None:
    blocked = _graph_run(make_span, "waiting", NOW - 200 * SEC, 1, blocked=True)
    client.post("/api/ingest", json=blocked)
    client.post("/api/ingest", json=[_breaker(make_span, NOW - 100 * SEC, "budget_increased", "OPEN", "CLOSED",
                                              "increase_budget"),
                                     _breaker(make_span, NOW - 50 * SEC, "reset", "CLOSED", "CLOSED",
                                              "reset_windows")])
    detail = client.get("/api/sessions/waiting").json()
    assert [(item["type"], item.get("role")) for item in detail["story"]] == [
        ("trace", "blocked"), ("block", None), ("breaker", "recovery")]  # the first recovery only
    assert detail["resumed"] is False
    assert detail["status"] == "blocked"  # not resumed yet
    assert [s["status"] for s in client.get("/api/sessions").json()["sessions"]] == ["blocked"]


def test_a_session_tells_only_the_trips_of_its_own_blocks(client: TestClient, make_span: SpanFactory) -> None:
    """Found 2026-12-05: a session's story took "the latest trip at or before the block", but the trip a block causes
    is stamped a moment after the blocked span starts; so it found an older trip of the same scope, another
    session's. Now: the trip in the block's trace, inside the blocked span; a block under a breaker that another
    session left open tells no trip."""
    earlier = _graph_run(make_span, "session-a", NOW - 900 * SEC, 1, blocked=True)
    later = _graph_run(make_span, "session-b", NOW - 300 * SEC, 1, blocked=True)
    still_open = _graph_run(make_span, "session-c", NOW - 100 * SEC, 1, blocked=True)
    for batch in (earlier, [_trip_of(make_span, earlier)], later, [_trip_of(make_span, later)], still_open):
        assert client.post("/api/ingest", json=batch).status_code == 202

    def trips(session: str) -> list[str | None]:
        story = client.get(f"/api/sessions/{session}").json()["story"]
        return [item["trace_id"] for item in story if item["type"] == "breaker" and item["role"] == "trip"]

    assert trips("session-b") == [later[0]["trace_id"]]
    assert trips("session-a") == [earlier[0]["trace_id"]]
    assert trips("session-c") == []
    story = client.get("/api/sessions/session-b").json()["story"]
    assert [(item["type"], item.get("role")) for item in story] == [
        ("trace", "blocked"), ("breaker", "trip"), ("block", None)]  # the cause, then the block it made


def test_a_database_from_before_session_wrappers_is_upgraded(tmp_path: Path, make_span: SpanFactory) -> None:
    path = tmp_path / "old.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as connection:  # session_traces as it was before the column existed
        connection.execute("ALTER TABLE session_traces DROP COLUMN wrapper")
    store = SQLiteStore(path)
    try:
        own = make_span(name="job", kind="session", start=NOW - 10 * SEC, duration_ms=5000, model=None, provider=None,
                        input_tokens=0, output_tokens=0, cost_usd=0.0, attributes={"session.id": "upgraded"})
        run = _graph_run(make_span, "upgraded", NOW - 9 * SEC, 1)
        assert store.ingest(parse_spans(json.dumps([own, *run]).encode(), 100).records).accepted == 4
        detail = session_detail(store, "upgraded")
        assert detail is not None
        assert [t["role"] for t in detail["traces"]] == ["session", "run"] and detail["trace_count"] == 1
    finally:
        store.close()
