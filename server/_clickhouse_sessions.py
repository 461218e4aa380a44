"""Sessions in the ClickHouse store: a small (session, trace) table appended at ingest; summaries come from the
per-trace aggregation every trace query uses, so the answers match the SQLite store's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from ._clickhouse_conn import Connection, Params
from ._datamodel import BLOCKED_SQL, SPAN_COLUMNS
from ._datamodel import span_dict as _span
from ._model import SpanRecord
from ._sessions import session_pairs, session_summary

#: ``_sessions.RUN_SQL`` over the (pairs s, trace aggregate t) join.
_RUN_SQL: Final = "NOT (s.wrapper = 1 AND t.t_calls = 0 AND t.t_blocked = 0)"

if TYPE_CHECKING:
    from ._clickhouse import ClickHouseStore

__all__ = ["create_session_table", "add_session_traces", "purge_session_traces", "list_sessions",
           "session_traces", "blocked_spans"]

# Retried batches may append a pair twice: ReplacingMergeTree folds them, and every read groups by the pair.
# wrapper: the trace's root is the session's own span (``_sessions.session_pairs``); a pair's rows are read with
# max(wrapper), as that span may come in a batch of its own.
_DDL: Final = """
CREATE TABLE IF NOT EXISTS {db}.session_traces (
    session_id String,
    trace_id String,
    start_ns Int64,
    wrapper UInt8 DEFAULT 0
) ENGINE = ReplacingMergeTree
ORDER BY (session_id, trace_id)
"""
# A pair's rows folded into one (the table may hold a pair more than once until a merge).
_PAIRS: Final = ("(SELECT session_id, trace_id, max(wrapper) AS wrapper FROM {table}{where}"
                 " GROUP BY session_id, trace_id)")


def create_session_table(connection: Connection, database: str) -> None:
    # No TTL: the store's purge expires sessions with their spans.
    connection.execute(_DDL.format(db=database))
    # A table from before ``wrapper``: its sessions' own traces count as runs.
    connection.execute(f"ALTER TABLE {database}.session_traces ADD COLUMN IF NOT EXISTS wrapper UInt8 DEFAULT 0")


def add_session_traces(store: ClickHouseStore, records: Sequence[SpanRecord]) -> None:
    """Under the store's write lock, after the batch's new spans were appended."""
    pairs = session_pairs(records)
    if pairs:
        store._db_conn.insert("session_traces", [
            {"session_id": session, "trace_id": trace_id, "start_ns": start, "wrapper": int(wrapper)}
            for (session, trace_id), (start, wrapper) in pairs.items()])


def purge_session_traces(store: ClickHouseStore, before_ns: int) -> None:
    p = Params()
    store._execute(f"ALTER TABLE {store.database}.session_traces DELETE WHERE start_ns < {p(int(before_ns), 'Int64')}"
                   " SETTINGS mutations_sync = 2", p)


def list_sessions(store: ClickHouseStore, limit: int, offset: int, search: str | None) -> dict[str, Any]:
    table = f"{store.database}.session_traces"
    p = Params()
    where = f" WHERE positionCaseInsensitiveUTF8(session_id, {p(search, 'String')}) > 0" if search else ""
    pairs = _PAIRS.format(table=table, where=where)
    traces = store._agg([f"trace_id IN (SELECT trace_id FROM {table}{where})"])
    run = _RUN_SQL
    rows = store._rows(
        f"SELECT s.session_id, countIf({run}), sum(t.t_cost), sum(t.t_calls), sum(t.t_blocked), sum(t.t_errors),"
        f" min(t.t_start), max(t.t_end) AS last, argMaxIf(t.t_status, (t.t_start, t.t_key), {run})"
        f" FROM {pairs} AS s INNER JOIN ({traces}) AS t"
        f" ON t.trace_id = s.trace_id GROUP BY s.session_id ORDER BY last DESC, s.session_id"
        f" LIMIT {p(int(limit), 'UInt64')} OFFSET {p(int(offset), 'UInt64')}", p)
    total = store._rows(
        f"SELECT uniqExact(s.session_id) FROM {pairs} AS s"
        f" WHERE s.trace_id IN (SELECT trace_id FROM {store.database}.trace_summary)", p)[0][0]
    return {"sessions": [session_summary(*row) for row in rows], "total": int(total), "limit": limit,
            "offset": offset}


def session_traces(store: ClickHouseStore, session_id: str, limit: int) -> list[dict[str, Any]]:
    table = f"{store.database}.session_traces"
    p = Params()
    session = p(session_id, "String")
    traces = store._traces(p, [f"trace_id IN (SELECT trace_id FROM {table} WHERE session_id = {session})"], [],
                           "t_start, t_key", limit)
    p = Params()
    wrappers = {row[0] for row in store._rows(
        f"SELECT trace_id FROM {table} WHERE session_id = {p(session_id, 'String')} GROUP BY trace_id"
        " HAVING max(wrapper) = 1", p)}
    return [{**trace, "session_wrapper": trace["trace_id"] in wrappers} for trace in traces]


def blocked_spans(store: ClickHouseStore, trace_ids: Sequence[str]) -> list[dict[str, Any]]:
    if not trace_ids:
        return []
    p = Params()
    where = store.of_traces(p, trace_ids)
    if where is None:
        return []
    rows = store._rows(f"SELECT {SPAN_COLUMNS} FROM {store.database}.spans WHERE {where} AND {BLOCKED_SQL}"
                       " ORDER BY start_ns, seq", p)
    return [_span(row) for row in rows]
