"""The ingest fast path for SDK-shaped batches (checked by hand, not by pydantic) and the store's retry check.

The fast path may only ever decide what pydantic would have decided: every body, valid or not, must come out of
``parse_spans`` exactly as it does when pydantic validates it (same records, same errors, same status codes).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import agentwatch
from agentwatch.server import SQLiteStore, _ingest
from agentwatch.server._ingest import IngestError, parse_spans
from agentwatch.server._model import SpanRecord
from tests.server.aw_helpers import SpanFactory, make_trace, new_trace_id, span_factory

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def _outcome(raw: bytes, *, fast: bool, max_spans: int = 50_000) -> tuple[Any, ...]:
    """What ``parse_spans`` makes of a body: with the fast path, or with pydantic alone (as before it)."""
    try:
        if fast:
            batch = parse_spans(raw, max_spans)
        else:
            with mock.patch.object(_ingest, "_parse_sdk_batch", lambda raw, max_spans: None):
                batch = parse_spans(raw, max_spans)
    except IngestError as error:
        return ("refused", error.status_code, error.message, error.details)
    # repr: equal records, down to int versus float and attribute values.
    return ("parsed", repr(batch.records), batch.errors, batch.rejected)


def _took_fast_path(raw: bytes) -> bool:
    return _ingest._parse_sdk_batch(raw, 50_000) is not None


# ---- the SDK's own output takes the fast path --------------------------------------------------------------

@pytest.fixture
def sdk_spans(memory: agentwatch.InMemoryExporter) -> Iterator[list[dict[str, Any]]]:
    agentwatch.init(exporters=[memory], capture_messages=True, auto_instrument=False, flush_interval=3600)
    with agentwatch.trace("run", user="u-1"):
        with agentwatch.agent("Researcher", role="Analyst"):
            with agentwatch.llm_call("chat", model="gpt-4o-mini", provider="openai") as call:
                call.set_input([{"role": "user", "content": "héllo"}])
                call.set_usage(1200, 300, 200)
                call.set_output("hi")
            with agentwatch.llm_call("chat", model="claude-sonnet-4-6", provider="anthropic"):
                pass
            with pytest.raises(RuntimeError), agentwatch.span("tool call", "tool"):
                raise RuntimeError("boom")
        agentwatch.event("checkpoint", {"step": 3})
        agentwatch.metric("queue.depth", 7.5)
    assert agentwatch.flush(5)
    yield list(memory.spans)


def test_the_sdks_batches_take_the_fast_path_and_match_pydantic(sdk_spans: list[dict[str, Any]]) -> None:
    assert len(sdk_spans) >= 6
    raw = orjson.dumps(sdk_spans)  # as the HTTP exporter sends them
    assert _took_fast_path(raw)
    assert _outcome(raw, fast=True) == _outcome(raw, fast=False)
    one = orjson.dumps(sdk_spans[0])
    assert _took_fast_path(one)
    assert _outcome(one, fast=True) == _outcome(one, fast=False)


def test_the_collector_tests_span_shape_takes_the_fast_path(make_span: SpanFactory) -> None:
    raw = json.dumps(make_trace(make_span, calls=4) + [make_span(input="q", output={"a": [1, 2.5]})]).encode()
    assert _took_fast_path(raw)
    assert _outcome(raw, fast=True) == _outcome(raw, fast=False)


def test_an_empty_parent_id_takes_the_fast_path(make_span: SpanFactory) -> None:
    """Found 2026-12-06 (review 3): a root span whose parent_span_id is "" (what some clients send for none) sent
    its whole batch down pydantic's path, twice the parse time; stored as no parent either way."""
    raw = json.dumps(make_trace(make_span, calls=2) + [make_span(parent_span_id="")]).encode()
    assert _took_fast_path(raw)
    assert _outcome(raw, fast=True) == _outcome(raw, fast=False)
    assert parse_spans(raw, 100).records[-1].parent_span_id is None


# ---- and decides nothing differently from pydantic ------------------------------------------------------

def _base(**fields: Any) -> dict[str, Any]:
    return {**span_factory()(), **fields}


_ids = st.one_of(st.from_regex(r"[0-9a-f]{1,32}", fullmatch=True),
                 st.sampled_from(["", "a" * 128, "a" * 129, "a\n", "\na", "a b", "é", "x:y-z_.1", "٣", "a/b"]),
                 st.text(max_size=5), st.integers(-1, 10), st.none())


def _texts(limit: int) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.text(max_size=5), st.integers(-1, 3), st.booleans(),
                     st.sampled_from(["x" * limit, "x" * (limit + 1), "é" * limit, "😀" * (limit + 1)]))


_nanos = st.one_of(st.integers(-2, 2**64 + 2), st.sampled_from([0, 2**63 - 1, 2**63, -1, 10**30, 1.0, 1.5, "5"]),
                   st.booleans(), st.none(), st.floats(allow_nan=False, allow_infinity=False))
_counts = st.one_of(st.integers(-2, 2**40 + 2), st.sampled_from([0, 2**40, 2**40 + 1, 2**62, -1, 3.0, 2.5, "7"]),
                    st.booleans(), st.none())
_costs = st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                   st.sampled_from([0, 1, -0.0, 2**53, 2**53 + 1, 10**30, -1, 1e308, "0.1"]), st.booleans(),
                   st.none(), st.integers())
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)
_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "trace_id": _ids, "span_id": _ids, "parent_span_id": _ids, "name": _texts(2000),
    "kind": st.one_of(st.sampled_from(["llm", "LLM", "", "span", "INTERNAL", "CLIENT", "x" * 64, "x" * 65]),
                      _texts(64)),
    "status": st.one_of(st.sampled_from(["ok", "OK", "error", "Blocked", "unset", "UNSET", "", "exploded",
                                         "x" * 33, " ok"]), _texts(32), st.just({"code": "OK"})),
    "start_time_unix_nano": _nanos, "end_time_unix_nano": _nanos,
    "agent_id": _texts(512), "agent_name": _texts(512), "agent_role": _texts(512), "model": _texts(512),
    "provider": _texts(512), "input_tokens": _counts, "output_tokens": _counts, "cached_input_tokens": _counts,
    "cost_usd": _costs, "attributes": st.one_of(st.dictionaries(st.text(max_size=5), _json, max_size=3), _json),
    "input": _json, "output": _json,
}
_change = st.one_of(
    *[st.tuples(st.just(key), strategy) for key, strategy in _FIELDS.items()],
    st.tuples(st.just("-"), st.sampled_from(list(_FIELDS))),  # a field left out
    st.tuples(st.sampled_from(["resource", "model_inference", "cost_attribution", "events", "x"]), _json),
)


@st.composite
def _spans(draw: st.DrawFn) -> dict[str, Any]:
    span = _base()
    for key, value in draw(st.lists(_change, max_size=3)):
        if key == "-":
            span.pop(value, None)
        else:
            span[key] = value
    return span


@FUZZ
@given(batch=st.lists(_spans(), min_size=1, max_size=4), single=st.booleans())
@example(batch=[_base(start_time_unix_nano=True)], single=False)  # pydantic takes true for 1
@example(batch=[_base(cost_usd=1)], single=False)  # an int cost is a float
@example(batch=[_base(trace_id="abc\n")], single=False)  # $ in pydantic's pattern is the very end
@example(batch=[_base(kind="INTERNAL")], single=False)  # an ATP span in disguise
@example(batch=[_base(attributes={"big": 2**70})], single=False)  # beyond 64 bits stays an int
@example(batch=[_base(end_time_unix_nano=0)], single=False)  # ends before it starts
@example(batch=[_base(status="UNSET", kind="")], single=True)
@example(batch=[_base(), _base(start_time_unix_nano="yesterday")], single=False)  # one bad neighbour
@example(batch=[_base(parent_span_id="")], single=False)  # no parent, as None
@example(batch=[_base(parent_span_id=""), _base(parent_span_id="", span_id="")], single=True)
# Checked a field at a time over the batch: a value in one span among others that pass.
@example(batch=[_base(), _base(span_id="ab\ncd")], single=False)  # ids are matched joined by newlines
@example(batch=[_base(trace_id="ab\n"), _base()], single=False)
@example(batch=[_base(), _base(input="q"), _base(output={"a": 1})], single=False)  # spans of different sizes
@example(batch=[_base(end_time_unix_nano=None), _base(), _base(end_time_unix_nano=0)], single=False)
@example(batch=[_base(input_tokens=5, cached_input_tokens=9), _base(input_tokens=0, cached_input_tokens=9)],
         single=False)
@example(batch=[_base(cost_usd=1), _base(cost_usd=0.5), _base(cost_usd=10**7)], single=False)
@example(batch=[_base(kind="LLM"), _base(kind="llm"), _base(status="OK")], single=False)
@example(batch=[_base(), {k: v for k, v in _base().items() if k != "name"}], single=False)  # a key left out
def test_the_fast_path_decides_exactly_as_pydantic(batch: list[dict[str, Any]], single: bool) -> None:
    raw = json.dumps(batch[0] if single else batch).encode()
    assert _outcome(raw, fast=True) == _outcome(raw, fast=False)


def test_values_pydantic_would_coerce_or_refuse_are_left_to_it(make_span: SpanFactory) -> None:
    for bad in ({"start_time_unix_nano": True}, {"input_tokens": 3.0}, {"cost_usd": float("inf")},
                {"attributes": None}, {"span_id": "a" * 129}, {"trace_id": "ab\n"}, {"status": "exploded"},
                {"kind": "CLIENT"}, {"resource": {"service.name": "svc"}}, {"agent_name": "x" * 513}):
        raw = json.dumps([make_span(), make_span(**bad)]).encode()
        assert not _took_fast_path(raw), bad
    raw = json.dumps([make_span(attributes={"x": float("nan")})]).encode()  # NaN: pydantic's call
    assert not _took_fast_path(raw)
    assert _outcome(raw, fast=True) == _outcome(raw, fast=False)


def test_the_span_limit_applies_on_the_fast_path(make_span: SpanFactory) -> None:
    raw = json.dumps([make_span() for _ in range(5)]).encode()
    assert _outcome(raw, fast=True, max_spans=4) == _outcome(raw, fast=False, max_spans=4)
    assert _outcome(raw, fast=True, max_spans=4)[:2] == ("refused", 413)


# ---- the store: duplicates found without reading a trace's stored spans -----------------------------------

def _records(trace_id: str, count: int, start: int) -> list[SpanRecord]:
    raw = json.dumps([span_factory()(trace_id=trace_id, start=start + index) for index in range(count)]).encode()
    return parse_spans(raw, 50_000).records


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "fast.db")
    try:
        yield opened
    finally:
        opened.close()


def test_a_batch_into_a_long_trace_reads_none_of_its_stored_spans(sqlite_store: SQLiteStore) -> None:
    trace_id, start = new_trace_id(), time.time_ns() - 10**10
    assert sqlite_store.ingest(_records(trace_id, 500, start)).accepted == 500
    statements: list[str] = []
    sqlite_store._writer.set_trace_callback(statements.append)
    try:
        assert sqlite_store.ingest(_records(trace_id, 300, start)).accepted == 300
    finally:
        sqlite_store._writer.set_trace_callback(None)
    reads = [s for s in statements if re.search(r"\bSELECT\b.*\bFROM spans\b", s, re.S)]
    assert not reads, reads[:2]
    assert sqlite_store.get_trace(trace_id)["span_count"] == 800  # type: ignore[index]


def test_a_retry_into_a_long_trace_is_counted_once(sqlite_store: SQLiteStore) -> None:
    trace_id, other, start = new_trace_id(), new_trace_id(), time.time_ns() - 10**10
    first, second = _records(trace_id, 400, start), _records(trace_id, 400, start)
    sqlite_store.ingest(first)
    sqlite_store.ingest(second)
    before = sqlite_store.metrics(None, None)
    # The retried batch again, some new spans of the same trace, a new trace, and a duplicate within the batch.
    fresh, new_trace = _records(trace_id, 5, start), _records(other, 3, start)
    result = sqlite_store.ingest(second + fresh + new_trace + fresh[:1])
    assert (result.accepted, result.duplicates) == (8, 401)
    assert sqlite_store.get_trace(trace_id)["span_count"] == 805  # type: ignore[index]
    assert sqlite_store.get_trace(other)["span_count"] == 3  # type: ignore[index]
    after = sqlite_store.metrics(None, None)
    assert after["spans"] == before["spans"] + 8 == sqlite_store.counts()["spans"]
    assert after["llm_calls"] == before["llm_calls"] + 8
    # Nothing new at all: answered as duplicates, nothing written.
    again = sqlite_store.ingest(first)
    assert (again.accepted, again.duplicates) == (0, 400)
    assert sqlite_store.counts()["spans"] == 808


def test_spans_skipped_for_another_reason_than_a_duplicate_are_never_acknowledged(
        sqlite_store: SQLiteStore) -> None:
    records = _records(new_trace_id(), 3, time.time_ns())
    records[1].name = None  # type: ignore[assignment]  # NOT NULL: INSERT OR IGNORE would skip the row
    with pytest.raises(Exception, match="skipped"):
        sqlite_store.ingest(records)
    assert sqlite_store.counts() == {"spans": 0, "traces": 0}
