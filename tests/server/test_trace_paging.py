"""Paging the traces list: pages hold ``limit`` rows, follow each other without gaps or repeats, and the time
bounds are exact to the nanosecond."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from agentwatch.server._stats import HOUR_NS
from tests.server.aw_helpers import new_span_id, new_trace_id

MINUTE_NS = 60 * 10**9


def _root(start: int, name: str) -> dict:
    return {"trace_id": new_trace_id(), "span_id": new_span_id(), "name": name, "kind": "trace",
            "start_time_unix_nano": start, "end_time_unix_nano": start + 1000}


def _names(answer: dict) -> list[str]:
    return [trace["name"] for trace in answer["traces"]]


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_pages_hold_limit_rows_when_the_range_ends_inside_an_hour(client: TestClient, order: str) -> None:
    """On ClickHouse a page by start time is read from the newest (oldest) hours; when the range cut an hour short
    the window was widened and the page sliced to the widened size: 14 rows for limit=7, repeated on the next."""
    base = (time.time_ns() // HOUR_NS - 10) * HOUR_NS
    spans = [_root(base + i * 6 * MINUTE_NS, f"t{i:02d}") for i in range(80)]  # one every 6 minutes, 8 hours
    assert client.post("/api/ingest", json=spans).status_code == 202
    if order == "desc":
        bound = {"to": str(base + 7 * HOUR_NS + 30 * MINUTE_NS)}
        expected = [f"t{i:02d}" for i in reversed(range(75))]  # started before `to`, newest first
    else:
        bound = {"from": str(base + 30 * MINUTE_NS)}
        expected = [f"t{i:02d}" for i in range(5, 80)]
    seen: list[str] = []
    for offset in range(0, 80, 7):
        page = client.get("/api/traces", params={**bound, "order": order, "limit": "7", "offset": str(offset)}).json()
        assert page["total"] == 75
        assert _names(page) == expected[offset:offset + 7], offset
        seen += _names(page)
    assert seen == expected
