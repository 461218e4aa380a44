"""The ClickHouse store commits the batches of overlapping requests together (one probe and one insert per table
for all of them): every span is stored once, each request is answered with its own accepted and duplicate
counts, the traces' counts stay exact, and a batch the engine refuses fails alone."""

from __future__ import annotations

import random
import threading
import time
import uuid

from agentwatch.server._clickhouse import ClickHouseStore
from agentwatch.server._model import SpanRecord
from agentwatch.server._store import IngestResult, TraceQuery

HOUR_NS = 3_600 * 10**9


def _span(trace_id: str, span_id: str, start_ns: int, parent: str | None = None, input_tokens: int = 10,
          ) -> SpanRecord:
    return SpanRecord(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name="openai.chat",
                      kind="llm", status="ok", start_ns=start_ns, end_ns=start_ns + 5_000_000, agent_id="researcher",
                      model="gpt-4o-mini", input_tokens=input_tokens, output_tokens=5, cost_usd=0.001)


def _batches(seed: int, count: int) -> tuple[list[list[SpanRecord]], set[tuple[str, str]], set[str]]:
    """Overlapping batches: traces split across batches, spans sent twice (in two batches, or twice in one)."""
    rng = random.Random(seed)
    now = time.time_ns() - 50 * HOUR_NS
    spans: list[SpanRecord] = []
    for index in range(count * 6):
        trace_id = uuid.UUID(int=rng.getrandbits(128)).hex
        start = now + rng.randrange(48) * HOUR_NS + index
        root = _span(trace_id, f"{rng.getrandbits(64):016x}", start)
        spans.append(root)
        spans += [_span(trace_id, f"{rng.getrandbits(64):016x}", start + call + 1, root.span_id) for call in range(3)]
    rng.shuffle(spans)
    batches = [spans[index::count] for index in range(count)]
    for batch in batches:
        batch += rng.sample(spans, 5)  # sent by another request too, or already in this one
        batch.append(batch[0])  # twice in one request
    keys = {(span.trace_id, span.span_id) for span in spans}
    return batches, keys, {span.trace_id for span in spans}


def _ingest_together(store: ClickHouseStore, batches: list[list[SpanRecord]],
                     ) -> tuple[list[IngestResult | None], list[BaseException]]:
    """The first batch's commit is held until every other request waits behind it, so they form one group."""
    results: list[IngestResult | None] = [None] * len(batches)
    errors: list[BaseException] = []

    def ingest(index: int) -> None:
        try:
            results[index] = store.ingest(batches[index])
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=ingest, args=(index,)) for index in range(len(batches))]
    deadline = time.monotonic() + 10
    with store._write_lock:  # the first commit stops here, after it took its group
        threads[0].start()
        while store._ingests._queue:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        for thread in threads[1:]:
            thread.start()
        while len(store._ingests._queue) < len(batches) - 1:
            assert time.monotonic() < deadline
            time.sleep(0.001)
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    return results, errors


def test_overlapping_requests_store_each_span_once_and_count_their_own_spans(
        clickhouse_store: ClickHouseStore) -> None:
    batches, keys, traces = _batches(seed=5, count=6)
    answers, errors = _ingest_together(clickhouse_store, batches)
    assert not errors
    results = [answer for answer in answers if answer is not None]
    for batch, result in zip(batches, results, strict=True):
        assert result.accepted + result.duplicates == len(batch)
    assert sum(result.accepted for result in results) == len(keys)
    assert clickhouse_store.metrics(None, None)["spans"] == len(keys)
    listed = clickhouse_store.list_traces(TraceQuery(limit=500))
    assert listed["total"] == len(traces) and {trace["trace_id"] for trace in listed["traces"]} == traces
    assert all(trace["span_count"] == 4 and trace["llm_calls"] == 4 for trace in listed["traces"])
    # A retry of every request is answered as duplicates alone.
    again, errors = _ingest_together(clickhouse_store, batches)
    assert not errors and [result.accepted if result else None for result in again] == [0] * len(batches)
    assert clickhouse_store.metrics(None, None)["spans"] == len(keys)


def test_a_batch_the_engine_refuses_fails_alone_and_its_group_is_stored(clickhouse_store: ClickHouseStore) -> None:
    batches, _keys, _traces = _batches(seed=9, count=4)
    bad_trace = uuid.uuid4().hex
    bad = [_span(bad_trace, "00000000000000aa", time.time_ns(), input_tokens=2**70)]  # no Int64 holds it
    batches.insert(2, bad)
    results, errors = _ingest_together(clickhouse_store, batches)
    assert len(errors) == 1 and results[2] is None
    good = [batch for index, batch in enumerate(batches) if index != 2]
    expected = {(span.trace_id, span.span_id) for batch in good for span in batch}
    assert sum(result.accepted for result in results if result is not None) == len(expected)
    assert clickhouse_store.metrics(None, None)["spans"] == len(expected)
    assert clickhouse_store.get_trace(bad_trace) is None
