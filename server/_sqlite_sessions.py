"""Sessions in the SQLite store: which traces belong to which session, kept at ingest; list and detail queries."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from ._datamodel import BLOCKED_SQL
from ._datamodel import SPAN_COLUMNS as _SPAN_COLUMNS
from ._datamodel import span_dict as _span
from ._datamodel import trace_dict as _trace
from ._model import SpanRecord
from ._sessions import RUN_SQL, session_pairs, session_summary
from ._sqlite_queries import _TRACE_COLUMNS
from ._sqlite_search import contains_sql

__all__ = ["SESSIONS_SCHEMA", "upgrade_sessions", "add_session_traces", "purge_session_traces", "SessionQueries"]

# One row per (session, trace); keyed by the trace's sequential key like the other per-trace tables, and
# read joined with the trace summaries, which already hold cost, calls and blocks.
# wrapper: the trace's root is the session's own span (``_sessions.session_pairs``).
SESSIONS_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS session_traces (
    session_id TEXT NOT NULL,
    tkey INTEGER NOT NULL,
    wrapper INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, tkey)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS session_traces_tkey ON session_traces(tkey);
"""

_ID_CHUNK = 900


def upgrade_sessions(connection: sqlite3.Connection) -> None:
    """``wrapper`` came later: a file from before has it added (its sessions' own traces then count as runs)."""
    if "wrapper" not in {row[1] for row in connection.execute("PRAGMA table_info(session_traces)")}:
        try:
            connection.execute("ALTER TABLE session_traces ADD COLUMN wrapper INTEGER NOT NULL DEFAULT 0")
        except sqlite3.OperationalError as error:  # another server process sharing the file added it first
            if "duplicate column" not in str(error):
                raise


def add_session_traces(cursor: sqlite3.Cursor, records: Sequence[SpanRecord], tkeys: dict[str, int]) -> None:
    """Inside the ingest transaction: the sessions the batch's new spans name."""
    pairs = session_pairs(records)
    if pairs:
        cursor.executemany(
            "INSERT INTO session_traces (session_id, tkey, wrapper) VALUES (?, ?, ?) ON CONFLICT (session_id, tkey)"
            " DO UPDATE SET wrapper = max(wrapper, excluded.wrapper)",
            [(session, tkeys[trace_id], int(wrapper)) for (session, trace_id), (_, wrapper) in pairs.items()])


def purge_session_traces(cursor: sqlite3.Cursor) -> None:
    """After traces were purged: their session rows go too."""
    cursor.execute("DELETE FROM session_traces WHERE tkey NOT IN (SELECT tkey FROM traces)")


class SessionQueries:
    def summaries(self, connection: sqlite3.Connection, limit: int, offset: int, search: str | None) -> dict[str, Any]:
        where, params = "", list[Any]()
        if search:
            condition, params = contains_sql("s.session_id", search)
            where = f" WHERE {condition}"
        # The latest run's status only for the page's sessions: the subquery runs per row of the page.
        rows = connection.execute(
            "SELECT page.*, (SELECT t.status FROM session_traces s JOIN traces t ON t.tkey = s.tkey"
            f" WHERE s.session_id = page.session_id AND {RUN_SQL} ORDER BY t.start_ns DESC, t.tkey DESC LIMIT 1)"
            f" FROM (SELECT s.session_id, sum({RUN_SQL}), sum(t.cost_usd), sum(t.llm_calls), sum(t.blocked),"
            " sum(t.errors), min(t.start_ns), max(t.end_ns) AS last FROM session_traces s JOIN traces t"
            f" ON t.tkey = s.tkey{where} GROUP BY s.session_id ORDER BY last DESC, s.session_id LIMIT ? OFFSET ?)"
            " AS page ORDER BY page.last DESC, page.session_id",
            (*params, int(limit), int(offset))).fetchall()
        total = connection.execute(f"SELECT count(DISTINCT s.session_id) FROM session_traces s{where}",
                                   params).fetchone()[0]
        return {"sessions": [session_summary(*row) for row in rows], "total": int(total), "limit": limit,
                "offset": offset}

    def traces(self, connection: sqlite3.Connection, session_id: str, limit: int) -> list[dict[str, Any]]:
        columns = ", ".join(f"t.{column.strip()}" for column in _TRACE_COLUMNS.split(","))
        rows = connection.execute(
            f"SELECT {columns}, s.wrapper FROM session_traces s JOIN traces t ON t.tkey = s.tkey"
            " WHERE s.session_id = ? ORDER BY t.start_ns, t.tkey LIMIT ?", (session_id, int(limit))).fetchall()
        return [{**_trace(row[:-1]), "session_wrapper": bool(row[-1])} for row in rows]

    def blocked_spans(self, connection: sqlite3.Connection, trace_ids: Sequence[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(trace_ids), _ID_CHUNK):
            chunk = list(trace_ids[start:start + _ID_CHUNK])
            marks = ",".join("?" * len(chunk))
            rows = connection.execute(
                f"SELECT {_SPAN_COLUMNS} FROM spans WHERE tkey IN (SELECT tkey FROM traces WHERE trace_id IN"
                f" ({marks})) AND {BLOCKED_SQL} ORDER BY start_ns", chunk)
            found.extend(_span(row) for row in rows)
        return found
