"""The ClickHouse store's side of counting a model call once (``_llm_copies``), decided before the batch is inserted.

Spans are append-only here (every summary is a materialized view of the inserts), so a stored span is never changed:
another instrumentation's span is made a copy when AgentWatch's span naming it is stored or comes with it; when the
other span was stored first and counted, AgentWatch's span that names it arrives as the copy instead. The call counts
once in either order; in the second, as the other span recorded it (its agent, its price).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from . import _json
from ._clickhouse_conn import Connection, Params
from ._llm_copies import Naming, StoredCall, copies_in, copy_candidates, is_foreign_call, make_copy
from ._model import LLM_KINDS, SpanRecord

if TYPE_CHECKING:
    from ._clickhouse import ClickHouseStore

__all__ = ["create_naming_table", "settle_copies", "purge_namings"]

_DDL: Final = """
CREATE TABLE IF NOT EXISTS {db}.otel_namings (
    otel_trace_id String,
    otel_span_id String,
    kind String,
    start_ns Int64,
    end_ns Int64,
    trace_id String,
    span_id String
) ENGINE = ReplacingMergeTree
ORDER BY (otel_trace_id, otel_span_id, trace_id, span_id)
"""
_COLUMNS: Final = ("otel_trace_id", "otel_span_id", "kind", "start_ns", "end_ns", "trace_id", "span_id")
_CHUNK = 1000


def create_naming_table(connection: Connection, database: str) -> None:
    connection.execute(_DDL.format(db=database))


def settle_copies(store: ClickHouseStore, fresh: Sequence[SpanRecord]) -> None:
    """Under the write lock, before ``fresh`` is inserted: make copies of the batch's spans that are, and keep its
    namings."""
    namings, foreign = copy_candidates(fresh)
    if not namings and not foreign:
        return
    by_key = {(record.trace_id, record.span_id): record for record in fresh}
    copied: set[tuple[str, str]] = set()
    if foreign:
        asked = sorted({(call.trace_id, call.span_id) for call in foreign}
                       | {(call.trace_id, call.parent_span_id) for call in foreign if call.parent_span_id})
        known = [*namings, *_stored_namings(store, asked)]
        for key, named in copies_in(foreign, known).items():
            make_copy(by_key[key], (named.trace_id, named.span_id))
            copied.add(key)
    if namings:
        stored = [call for call in _stored_calls(store, namings) if (call.trace_id, call.span_id) not in by_key]
        for named in namings:
            found = copies_in(stored, [named])
            if found:
                # The other span was counted already: this one is the copy (see the module's docstring).
                other = next(iter(found))
                make_copy(by_key[(named.trace_id, named.span_id)], other)
        store._db_conn.insert("otel_namings", [dict(zip(_COLUMNS, _row(named), strict=True)) for named in namings])


def _row(named: Naming) -> tuple[str, str, str, int, int, str, str]:
    return (named.otel_trace_id, named.otel_span_id, named.kind, named.start_ns, named.end_ns, named.trace_id,
            named.span_id)


def _stored_namings(store: ClickHouseStore, asked: Sequence[tuple[str, str]]) -> list[Naming]:
    found: list[Naming] = []
    for start in range(0, len(asked), _CHUNK):
        chunk = asked[start:start + _CHUNK]
        p = Params()
        traces = p(sorted({trace_id for trace_id, _ in chunk}), "Array(String)")
        pairs = p([f"{trace_id}-{span_id}" for trace_id, span_id in chunk], "Array(String)")
        rows = store._rows(f"SELECT DISTINCT {', '.join(_COLUMNS)} FROM {store.database}.otel_namings"
                           f" WHERE otel_trace_id IN {traces}"
                           f" AND has({pairs}, concat(otel_trace_id, '-', otel_span_id))", p)
        found.extend(Naming(str(a), str(b), str(c), int(d), int(e), str(f), str(g)) for a, b, c, d, e, f, g in rows)
    return found


def _stored_calls(store: ClickHouseStore, namings: Sequence[Naming]) -> list[StoredCall]:
    """The stored LLM spans of the traces ``namings`` name that are the named spans or their children."""
    trace_ids = sorted({named.otel_trace_id for named in namings})
    span_ids = sorted({named.otel_span_id for named in namings})
    p = Params()
    where = store.of_traces(p, trace_ids)
    if where is None:
        return []
    kinds = p(sorted(LLM_KINDS), "Array(String)")
    ids = p(span_ids, "Array(String)")
    return [StoredCall(str(trace_id), str(span_id), parent_id, str(kind), int(start))
            for trace_id, span_id, parent_id, kind, start, attributes in store._rows(
                f"SELECT trace_id, span_id, parent_span_id, kind, start_ns, attributes FROM {store.database}.spans"
                f" WHERE {where} AND has({kinds}, kind) AND (has({ids}, span_id) OR has({ids}, parent_span_id))", p)
            if is_foreign_call(str(kind), _json.loads(attributes))]


def purge_namings(store: ClickHouseStore, before_ns: int) -> None:
    store._execute(f"ALTER TABLE {store.database}.otel_namings DELETE WHERE start_ns < {int(before_ns)}"
                   " SETTINGS mutations_sync = 2")
