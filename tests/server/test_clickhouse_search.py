"""The traces search on a trace stored by several requests: its merged name decides, not the names of its parts.
On ClickHouse the traces in doubt are named by id first; beyond a limit the list's own statement merges the names:
both give the same answers."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agentwatch.server import TraceQuery
from agentwatch.server._stats import HOUR_NS
from tests.server.aw_helpers import new_span_id, new_trace_id


def _span(trace_id: str, start: int, name: str, parent: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"trace_id": trace_id, "span_id": new_span_id(), "parent_span_id": parent, "name": name, "kind": "llm",
            "status": "ok", "start_time_unix_nano": start, "end_time_unix_nano": start + 1000, **fields}


def _parts(base: int) -> tuple[list[list[dict[str, Any]]], dict[str, str]]:
    """Batches of traces whose parts arrive apart, and each trace's id by what it is."""
    rooted, rootless, labelled = new_trace_id(), new_trace_id(), new_trace_id()
    root = _span(rooted, base, "alpha job")
    first = [root, _span(rootless, base + 50, "gamma late", parent="elsewhere"),
             _span(labelled, base + 10, "delta", agent_id="omega")]
    second = [_span(rooted, base + 20, "beta step", parent=root["span_id"]),  # not the root: the name stays
              _span(rootless, base + 5, "epsilon early", parent="elsewhere"),  # earlier: names the rootless trace
              _span(labelled, base + 30, "zeta", parent="elsewhere")]
    return [first, second], {"rooted": rooted, "rootless": rootless, "labelled": labelled}


EXPECTED = {"alpha": ["rooted"], "beta": [], "gamma": [], "EPSILON": ["rootless"], "omega": ["labelled"],
            "delta": ["labelled"], "zeta": [], "a": ["labelled", "rooted", "rootless"]}


def test_a_search_matches_the_merged_name_of_a_trace_stored_in_parts(client: TestClient) -> None:
    base = (time.time_ns() // HOUR_NS - 3) * HOUR_NS
    batches, traces = _parts(base)
    for batch in batches:
        assert client.post("/api/ingest", json=batch).status_code == 202
    named = {trace_id: what for what, trace_id in traces.items()}
    for text, expected in EXPECTED.items():
        for bounds in ({}, {"from": str(base)}):
            answer = client.get("/api/traces", params={"search": text, **bounds}).json()
            assert sorted(named[t["trace_id"]] for t in answer["traces"]) == expected, (text, bounds)
            assert answer["total"] == len(expected), (text, bounds)


def test_names_merged_in_the_list_statement_answer_the_same(clickhouse_store: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from agentwatch.server import _clickhouse
    from agentwatch.server._ingest import parse_spans

    base = (time.time_ns() // HOUR_NS - 3) * HOUR_NS
    batches, _ = _parts(base)
    for batch in batches:
        assert clickhouse_store.ingest(parse_spans(json.dumps(batch).encode(), 100).records).accepted == 3
    queries = [TraceQuery(search=text) for text in EXPECTED] + [
        TraceQuery(search=text, start_ns=base, sort="name") for text in EXPECTED]
    by_id = [clickhouse_store.list_traces(query) for query in queries]
    monkeypatch.setattr(_clickhouse, "_NAMED_AT_MOST", 0)  # every trace in doubt is too many: merged in the list
    assert [clickhouse_store.list_traces(query) for query in queries] == by_id
