"""Spans charged to an ancestor's agent in the SQLite store (``_agent_charge``): kept in ``span_agents``, counted in
``rollup_agent`` under that agent, and read by the costs by agent."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Final

from . import _json
from ._agent_charge import Owner, StoredSpan
from ._datamodel import span_flags
from ._model import SpanRecord
from ._stats import HOUR_NS

__all__ = ["AGENTS_SCHEMA", "SqliteTree", "write_charges", "purge_charges", "CHARGED_AGENT_SQL",
           "CHARGED_JOIN_SQL"]

# The partial index finds the stored spans waiting for an agent (none of their own, a parent) under a span that
# arrives with one; the SDK names an agent on every span of one, so it holds few of its spans.
AGENTS_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS span_agents (
    tkey INTEGER NOT NULL,
    span_id TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    agent_key TEXT NOT NULL,
    agent_name TEXT,
    PRIMARY KEY (tkey, span_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spans_without_agent ON spans(tkey, parent_span_id)
    WHERE agent_id IS NULL AND agent_name IS NULL AND parent_span_id IS NOT NULL;
"""

#: The agent a span (``s``, joined with ``span_agents c``) is counted under in the costs by agent.
CHARGED_AGENT_SQL: Final = "coalesce(s.agent_id, s.agent_name, c.agent_key, '')"
CHARGED_JOIN_SQL: Final = "LEFT JOIN span_agents c ON c.tkey = s.tkey AND c.span_id = s.span_id"

# A charge moves figures only: the agent's name comes from its own spans (as on ClickHouse).
_ADD_TO_AGENT: Final = """
INSERT INTO rollup_agent (hour, agent_id, spans, llm_calls, errors, blocked, input_tokens, output_tokens, cost_usd)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour, agent_id) DO UPDATE SET
    spans = spans + excluded.spans,
    llm_calls = llm_calls + excluded.llm_calls, errors = errors + excluded.errors,
    blocked = blocked + excluded.blocked, input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens, cost_usd = cost_usd + excluded.cost_usd
"""
_CHUNK = 900


class SqliteTree:
    """``_agent_charge.StoredTree`` over the store's tables, inside the ingest transaction."""

    def __init__(self, cursor: sqlite3.Cursor, tkeys: Mapping[str, int], waiting: Collection[str]) -> None:
        """``waiting``: the traces whose stored spans include some with a parent and no agent (traces.unowned)."""
        self._cursor = cursor
        self._tkeys = tkeys
        self._waiting = waiting

    def span(self, trace_id: str, span_id: str) -> StoredSpan | None:
        row = self._cursor.execute(
            "SELECT s.parent_span_id, coalesce(s.agent_id, s.agent_name), s.agent_name, c.agent_key, c.agent_name"
            f" FROM spans s {CHARGED_JOIN_SQL} WHERE s.tkey = ? AND s.span_id = ?",
            (self._tkeys[trace_id], span_id)).fetchone()
        if row is None:
            return None
        owner: Owner | None = (row[1], row[2]) if row[1] else ((row[3], row[4]) if row[3] else None)
        return StoredSpan(row[0], owner)

    def may_wait(self, trace_id: str) -> bool:
        # Read with the trace's row: the SDK's traces (an agent on every span of one) are asked nothing.
        return trace_id in self._waiting

    def uncharged_children(self, trace_id: str, parent_ids: Collection[str]) -> list[tuple[str, str]]:
        tkey, parents, found = self._tkeys[trace_id], list(parent_ids), []
        for start in range(0, len(parents), _CHUNK):
            chunk = parents[start:start + _CHUNK]
            found.extend(self._cursor.execute(
                "SELECT s.span_id, s.parent_span_id FROM spans s WHERE s.tkey = ? AND s.agent_id IS NULL"
                " AND s.agent_name IS NULL AND s.parent_span_id IS NOT NULL"
                f" AND s.parent_span_id IN ({','.join('?' * len(chunk))}) AND NOT EXISTS (SELECT 1 FROM span_agents c"
                " WHERE c.tkey = s.tkey AND c.span_id = s.span_id)", (tkey, *chunk)).fetchall())
        return found


def _figures(kind: str, status: str, attributes: Mapping[str, Any], start_ns: int, tokens_in: int, tokens_out: int,
             cost: float) -> tuple[int, int, int, int, int, int, float]:
    """(hour, llm calls, errors, blocked, input tokens, output tokens, cost) of one span, as rollup_agent counts."""
    call, blocked = span_flags(kind, status, attributes)
    return start_ns // HOUR_NS, int(call), int(status == "error"), int(blocked), tokens_in, tokens_out, cost


def write_charges(cursor: sqlite3.Cursor, tkeys: Mapping[str, int], records: Iterable[SpanRecord],
                  counted: Mapping[tuple[str, str], Owner], moved: Mapping[tuple[str, str], Owner],
                  stored: Mapping[tuple[str, str], Owner]) -> None:
    """Keep the charges: ``counted`` (batch spans the batch's rollups counted under their agent already), ``moved``
    (batch spans counted without an agent, charged only once the store was read) and ``stored`` (stored spans). The
    rollups move the latter two from no agent to theirs."""
    by_key = {(r.trace_id, r.span_id): r for r in records if (r.trace_id, r.span_id) in counted or
              (r.trace_id, r.span_id) in moved}
    rows: list[tuple[Any, ...]] = []
    moves: list[tuple[Owner, tuple[int, int, int, int, int, int, float]]] = []
    for charges in (counted, moved):
        for key, owner in charges.items():
            r = by_key[key]
            rows.append((tkeys[key[0]], key[1], r.start_ns, owner[0], owner[1]))
            if charges is moved:
                moves.append((owner, _figures(r.kind, r.status, r.attributes, r.start_ns, r.input_tokens,
                                              r.output_tokens, r.cost_usd)))
    for (trace_id, span_id), owner in stored.items():
        kind, status, start, tokens_in, tokens_out, cost, attributes = cursor.execute(
            "SELECT kind, status, start_ns, input_tokens, output_tokens, cost_usd,"
            " CASE WHEN status = 'blocked' THEN attributes END FROM spans WHERE tkey = ? AND span_id = ?",
            (tkeys[trace_id], span_id)).fetchone()
        rows.append((tkeys[trace_id], span_id, start, owner[0], owner[1]))
        moves.append((owner, _figures(kind, status, _json.loads(attributes) if attributes else {}, start, tokens_in,
                                      tokens_out, cost)))
    if rows:
        cursor.executemany("INSERT OR REPLACE INTO span_agents (tkey, span_id, start_ns, agent_key, agent_name)"
                           " VALUES (?, ?, ?, ?, ?)", rows)
    updates: list[tuple[Any, ...]] = []
    for (agent, _name), (hour, calls, errors, blocked, tokens_in, tokens_out, cost) in moves:
        updates.append((hour, agent, 1, calls, errors, blocked, tokens_in, tokens_out, cost))
        updates.append((hour, "", -1, -calls, -errors, -blocked, -tokens_in, -tokens_out, -cost))
    if updates:
        cursor.executemany(_ADD_TO_AGENT, updates)


def purge_charges(cursor: sqlite3.Cursor, before_ns: int) -> None:
    """After spans were purged: their charges go too."""
    cursor.execute("DELETE FROM span_agents WHERE start_ns < ? OR tkey NOT IN (SELECT tkey FROM traces)",
                   (before_ns,))
