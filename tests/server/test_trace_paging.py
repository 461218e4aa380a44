"""Paging the traces list: pages hold ``limit`` rows, follow each other without gaps or repeats, and the time
bounds are exact to the nanosecond."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from agentwatch.server._stats import HOUR_NS
from agentwatch.server._time import parse_time
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


def _total(client: TestClient, **bounds: str) -> int:
    answer = client.get("/api/traces", params=bounds)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["total"])


def test_epoch_nanosecond_bounds_are_exact(client: TestClient) -> None:
    """``to`` is exclusive: a trace's own start as ``to`` leaves it out. Epoch numbers went through a float, which
    at today's epoch holds nanoseconds only to about 256 ns."""
    start = (time.time_ns() // 1024) * 1024 - 3 * HOUR_NS + 129  # a float rounds it by over 100 ns
    assert client.post("/api/ingest", json=[_root(start, "boundary")]).status_code == 202
    listed = client.get("/api/traces").json()["traces"][0]["start_time_unix_nano"]
    assert listed == start
    assert _total(client, to=str(start)) == 0
    assert _total(client, **{"from": str(start + 1)}) == 0
    assert _total(client, to=str(start + 1)) == 1
    assert _total(client, **{"from": str(start)}) == 1
    assert _total(client, **{"from": str(start), "to": str(start + 1)}) == 1


def test_iso_bounds_keep_every_fractional_digit(client: TestClient) -> None:
    """An ISO time with nanoseconds was cut to microseconds: the trace starting 129 ns into a microsecond was
    outside ``from`` of its own start."""
    start = (time.time_ns() // 10**9) * 10**9 - 3 * HOUR_NS + 123_456_789
    assert client.post("/api/ingest", json=[_root(start, "boundary")]).status_code == 202
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start // 10**9))
    assert _total(client, **{"from": f"{seconds}.123456789Z"}) == 1
    assert _total(client, **{"from": f"{seconds}.12345679Z"}) == 0  # 10 ns later
    assert _total(client, to=f"{seconds}.123456789+00:00") == 0
    assert _total(client, to=f"{seconds},1234567891") == 1  # a tenth of a nanosecond after it: it started before
    assert _total(client, **{"from": f"{seconds}.1234567881"}) == 1
    assert _total(client, to=f"{seconds}.1234568Z") == 1  # 7 digits: 123,456,800 ns
    assert _total(client, **{"from": f"{seconds}.123457"}) == 0
    assert _total(client, to=f"{seconds}.123457") == 1


@pytest.mark.parametrize(("text", "ns"), [
    ("1796301593646548649", 1796301593646548649),  # nanoseconds, taken as the integer they are
    ("1796301593646548", 1796301593646548000),  # microseconds
    ("1796301593646", 1796301593646000000),  # milliseconds
    ("1796301593", 1796301593000000000),  # seconds
    ("1796301593.123456789", 1796301593123456789),  # seconds with a decimal fraction, exactly
    ("1796301593646.5", 1796301593646500000),
    ("1796301593.1234567891", 1796301593123456790),  # past nanoseconds: rounded up, which bounds exactly
    ("-1.5", -1_500_000_000),
    ("2026-12-01T10:00:00.000000001Z", 1796119200000000001),
    ("2026-12-01T12:00:00.5+02:00", 1796119200500000000),
    ("2026-12-01T10:00:00", 1796119200000000000),
])
def test_time_parameters_are_read_exactly(text: str, ns: int) -> None:
    assert parse_time(text) == ns


def _follow(client: TestClient, params: dict[str, str], between: Callable[[int], None] = lambda _: None
            ) -> list[str]:
    """Every page by cursor, calling ``between(page number)`` after each: the names in the order listed."""
    names: list[str] = []
    answer = client.get("/api/traces", params=params).json()
    for number in range(100):
        names += _names(answer)
        if answer["next_cursor"] is None:
            assert len(answer["traces"]) < int(params["limit"]) or answer["traces"] == []
            return names
        between(number)
        answer = client.get("/api/traces", params={**params, "cursor": answer["next_cursor"]}).json()
    raise AssertionError("the cursor never reached the last page")


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_cursor_pages_stay_put_while_traces_arrive(client: TestClient, order: str) -> None:
    """Offset pages shift under new data newest first (a trace arriving pushes every later page down: rows repeat);
    a cursor continues after the last row shown, and ties on the start time are neither repeated nor skipped."""
    base = time.time_ns() - 5 * HOUR_NS
    # Groups of three traces starting at the same nanosecond: pages of 4 end inside a group.
    spans = [_root(base + (i // 3) * MINUTE_NS, f"old{i:02d}") for i in range(30)]
    assert client.post("/api/ingest", json=spans).status_code == 202
    everything = _names(client.get("/api/traces", params={"order": order, "limit": "1000"}).json())
    arrived = iter(range(1000))

    def arrive(_: int) -> None:  # newer traces, and one more at a start already listed
        fresh = [_root(time.time_ns() - MINUTE_NS, f"new{next(arrived)}"),
                 _root(base + 4 * MINUTE_NS, f"new{next(arrived)}")]
        assert client.post("/api/ingest", json=fresh).status_code == 202

    seen = _follow(client, {"order": order, "limit": "4"}, arrive)
    assert len(seen) == len(set(seen)), seen
    assert [name for name in seen if name.startswith("old")] == everything
    offset_pages = [_names(client.get("/api/traces", params={"order": order, "limit": "4", "offset": str(offset)})
                           .json()) for offset in range(0, 8, 4)]
    assert offset_pages[0] + offset_pages[1] == _names(client.get("/api/traces", params={
        "order": order, "limit": "8"}).json())  # offset paging is as it was


@pytest.mark.parametrize("params", [{"sort": "cost"}, {"sort": "name", "order": "asc"}, {"search": "old"},
                                    {"sort": "start_time", "from": "__3h", "to": "__1h"}])
def test_cursor_pages_follow_every_sort_and_filter(client: TestClient, params: dict[str, str]) -> None:
    base = time.time_ns() - 4 * HOUR_NS
    spans = []
    for i in range(23):
        span = _root(base + i * 10 * MINUTE_NS, f"old{i % 7:02d}")  # names and costs repeat: ties
        span.update(kind="llm", model="m", cost_usd=[0.5, 0.25, 0.0][i % 3])
        spans.append(span)
    assert client.post("/api/ingest", json=spans).status_code == 202
    for key, value in list(params.items()):
        if value.startswith("__"):
            params[key] = str(time.time_ns() - int(value[2:-1]) * HOUR_NS)
    whole = client.get("/api/traces", params={**params, "limit": "1000"}).json()
    ids_listed: list[str] = []
    answer = client.get("/api/traces", params={**params, "limit": "3"}).json()
    while True:
        assert answer["total"] == whole["total"]
        ids_listed += [trace["trace_id"] for trace in answer["traces"]]
        if answer["next_cursor"] is None:
            break
        answer = client.get("/api/traces", params={**params, "limit": "3", "cursor": answer["next_cursor"]}).json()
    assert ids_listed == [trace["trace_id"] for trace in whole["traces"]]


@pytest.mark.parametrize("params", [{"cursor": "nonsense"}, {"cursor": "W10"},
                                    {"cursor": "__cost", "sort": "start_time"}, {"cursor": "__start", "offset": "4"}])
def test_a_cursor_that_does_not_fit_is_refused(client: TestClient, params: dict[str, str]) -> None:
    assert client.post("/api/ingest", json=[_root(time.time_ns() - i * MINUTE_NS, f"t{i}") for i in range(5)]
                       ).status_code == 202
    made = {"__cost": client.get("/api/traces", params={"sort": "cost", "limit": "2"}).json()["next_cursor"],
            "__start": client.get("/api/traces", params={"limit": "2"}).json()["next_cursor"]}
    params = {key: made.get(value, value) for key, value in params.items()}
    answer = client.get("/api/traces", params=params)
    assert answer.status_code == 422, answer.text
    assert "cursor" in answer.text


def test_the_served_api_description_documents_the_cursor(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/traces"]["get"]
    parameters = {parameter["name"]: parameter for parameter in operation["parameters"]}
    assert "next_cursor" in parameters["cursor"]["description"]
    assert "next_cursor" in operation["description"] and "offset" in operation["description"]


def test_filters_with_a_time_bound_judge_the_whole_trace(client: TestClient) -> None:
    """Each filter is matched on the trace's parts stored by separate requests (on ClickHouse, partial aggregates)
    from ``from`` on: a trace whose labels, error or block arrive after ``from`` while it started before stays out;
    one that started after ``from`` is listed by any of its parts."""
    base = (time.time_ns() // HOUR_NS - 6) * HOUR_NS
    since = base + 2 * HOUR_NS

    def part(trace_id: str, start: int, name: str, **fields: object) -> dict:
        return {"trace_id": trace_id, "span_id": new_span_id(), "name": name, "kind": "llm", "status": "ok",
                "start_time_unix_nano": start, "end_time_unix_nano": start + 1000, **fields}

    early, late = new_trace_id(), new_trace_id()
    first = [part(early, base + HOUR_NS, "early"), part(late, since + HOUR_NS, "late")]
    later = [part(trace_id, since + 2 * HOUR_NS, "step", agent_id="coder", model="gpt-4o", status="error")
             for trace_id in (early, late)]
    later += [part(trace_id, since + 2 * HOUR_NS + 1, "hold", status="blocked") for trace_id in (early, late)]
    for batch in (first, later):
        assert client.post("/api/ingest", json=batch).status_code == 202
    for filters in ({"agent_id": "coder"}, {"model": "gpt-4o"}, {"status": "blocked"}, {"search": "coder"},
                    {"agent_id": "coder", "model": "gpt-4o"}, {}):
        bounded = client.get("/api/traces", params={"from": str(since), **filters}).json()
        assert (_names(bounded), bounded["total"]) == (["late"], 1), filters
        everything = client.get("/api/traces", params=filters).json()
        assert (sorted(_names(everything)), everything["total"]) == (["early", "late"], 2), filters
