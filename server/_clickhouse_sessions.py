"""Sessions in the ClickHouse store: a small (session, trace) table appended at ingest; summaries come from the
per-trace aggregation every trace query uses, so the answers match the SQLite store's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from ._clickhouse_conn import Connection, literal
from ._datamodel import SPAN_COLUMNS
from ._datamodel import span_dict as _span
from ._model import BLOCK_POINT_KINDS, SpanRecord
from ._sessions import session_pairs, session_summary

if TYPE_CHECKING:
    from ._clickhouse import ClickHouseStore

__all__ = ["create_session_table", "add_session_traces", "purge_session_traces", "list_sessions",
           "session_traces", "blocked_spans"]

# Retried batches may append a pair twice: ReplacingMergeTree folds them, and every read groups by the pair.
_DDL: Final = """
CREATE TABLE IF NOT EXISTS {db}.session_traces (
    session_id String,
    trace_id String,
    start_ns Int64
) ENGINE = ReplacingMergeTree
ORDER BY (session_id, trace_id)
"""
_BLOCKED_KINDS = ", ".join(literal(kind) for kind in sorted(BLOCK_POINT_KINDS))


def create_session_table(connection: Connection, database: str) -> None:
    # No TTL: the store's purge expires sessions with their spans.
    connection.execute(_DDL.format(db=database))


def add_session_traces(store: ClickHouseStore, records: Sequence[SpanRecord]) -> None:
    """Under the store's write lock, after the batch's new spans were appended."""
    pairs = session_pairs(records)
    if pairs:
        store._db_conn.insert("session_traces", [
            {"session_id": session, "trace_id": trace_id, "start_ns": start}
            for (session, trace_id), start in pairs.items()])


def purge_session_traces(store: ClickHouseStore, before_ns: int) -> None:
    store._execute(f"ALTER TABLE {store.database}.session_traces DELETE WHERE start_ns < {int(before_ns)}"
                   " SETTINGS mutations_sync = 2")


def list_sessions(store: ClickHouseStore, limit: int, offset: int, search: str | None) -> dict[str, Any]:
    table = f"{store.database}.session_traces"
    where = f" WHERE positionCaseInsensitiveUTF8(session_id, {literal(search)}) > 0" if search else ""
    pairs = f"(SELECT session_id, trace_id FROM {table}{where} GROUP BY session_id, trace_id)"
    traces = store._agg([f"trace_id IN (SELECT trace_id FROM {table}{where})"], "")
    rows = store._rows(
        "SELECT s.session_id, count(), sum(t.t_cost), sum(t.t_calls), sum(t.t_blocked), sum(t.t_errors),"
        f" min(t.t_start), max(t.t_end) AS last FROM {pairs} AS s INNER JOIN ({traces}) AS t"
        f" ON t.trace_id = s.trace_id GROUP BY s.session_id ORDER BY last DESC, s.session_id"
        f" LIMIT {int(limit)} OFFSET {int(offset)}")
    total = store._rows(
        f"SELECT uniqExact(s.session_id) FROM {pairs} AS s"
        f" WHERE s.trace_id IN (SELECT DISTINCT trace_id FROM {store.database}.spans)")[0][0]
    return {"sessions": [session_summary(*row) for row in rows], "total": int(total), "limit": limit,
            "offset": offset}


def session_traces(store: ClickHouseStore, session_id: str, limit: int) -> list[dict[str, Any]]:
    table = f"{store.database}.session_traces"
    return store._traces([f"trace_id IN (SELECT trace_id FROM {table} WHERE session_id = {literal(session_id)})"],
                         [], "t_start, t_key", limit)


def blocked_spans(store: ClickHouseStore, trace_ids: Sequence[str]) -> list[dict[str, Any]]:
    if not trace_ids:
        return []
    from ._clickhouse import _in

    rows = store._rows(f"SELECT {SPAN_COLUMNS} FROM {store.database}.spans WHERE trace_id IN {_in(trace_ids)}"
                       f" AND status = 'blocked' AND kind IN ({_BLOCKED_KINDS}) ORDER BY start_ns, seq")
    return [_span(tuple(row)) for row in rows]
