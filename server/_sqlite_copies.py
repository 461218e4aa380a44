"""The SQLite store's side of counting a model call once (``_llm_copies``): the namings kept, and a copy that was
stored as a model call before AgentWatch's span arrived turned into a copy in place, its figures moved out of the
trace's summary and the rollups."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Final

from . import _json
from ._llm_copies import Candidates, Naming, StoredCall, copies_in, copy_columns, is_foreign_call
from ._model import LLM_KINDS
from ._sqlite_rollups import RollupRemoval
from ._stats import HOUR_NS

__all__ = ["COPIES_SCHEMA", "settle_copies", "purge_namings"]

# AgentWatch's LLM spans that name an OpenTelemetry span (``_llm_copies.Naming``), by the span they name.
COPIES_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS otel_namings (
    otel_trace_id TEXT NOT NULL,
    otel_span_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    PRIMARY KEY (otel_trace_id, otel_span_id, trace_id, span_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS otel_namings_start ON otel_namings(start_ns);
-- The model calls under a span, for each naming stored: partial, so only model calls pay for it on ingest, and a
-- naming reads its span's calls, not every span of a long trace.
CREATE INDEX IF NOT EXISTS spans_llm_parent ON spans(tkey, parent_span_id) WHERE kind IN ('embedding', 'llm');
"""

_NAMING_COLUMNS: Final = "otel_trace_id, otel_span_id, kind, start_ns, end_ns, trace_id, span_id"
_EVERY_HOUR: Final = -(2**63) // HOUR_NS + 1  # the first hour whose start is a 64-bit integer
_LLM_KINDS_SQL: Final = ", ".join(f"'{kind}'" for kind in sorted(LLM_KINDS))


def settle_copies(cursor: sqlite3.Cursor, candidates: Candidates, tkeys: Mapping[str, int]) -> None:
    """Inside the ingest transaction, after the batch is written and charged: keep the batch's namings, and make copies
    of the stored LLM spans (the batch's among them) that copy a named call (``copy_candidates`` of the batch)."""
    namings, foreign = candidates
    if not namings and not foreign:
        return
    if namings:
        cursor.executemany(f"INSERT OR IGNORE INTO otel_namings ({_NAMING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [_naming_row(named) for named in namings])
    copies: dict[tuple[str, str], Naming] = {}
    if foreign:
        asked = {(call.trace_id, call.span_id) for call in foreign}
        asked.update((call.trace_id, call.parent_span_id) for call in foreign if call.parent_span_id)
        stored = [Naming(*row) for key in asked for row in cursor.execute(
            f"SELECT {_NAMING_COLUMNS} FROM otel_namings WHERE otel_trace_id = ? AND otel_span_id = ?", key)]
        copies.update(copies_in(foreign, stored))
    for named in namings:
        tkey = _tkey(cursor, tkeys, named.otel_trace_id)
        if tkey is None:
            continue
        rows = [row for column in ("span_id", "parent_span_id") for row in cursor.execute(
            f"SELECT span_id, parent_span_id, kind, start_ns, attributes FROM spans WHERE tkey = ? AND {column} = ?"
            f" AND kind IN ({_LLM_KINDS_SQL})", (tkey, named.otel_span_id))]
        calls = [StoredCall(named.otel_trace_id, span_id, parent_id, kind, start)
                 for span_id, parent_id, kind, start, attributes in rows
                 if is_foreign_call(kind, _json.loads(attributes))]
        for key, copied in copies_in(calls, [named]).items():
            copies.setdefault(key, copied)
    for (trace_id, span_id), copied in copies.items():
        tkey = _tkey(cursor, tkeys, trace_id)
        if tkey is not None:
            _make_stored_copy(cursor, tkey, span_id, (copied.trace_id, copied.span_id))


def _naming_row(named: Naming) -> tuple[str, str, str, int, int, str, str]:
    return (named.otel_trace_id, named.otel_span_id, named.kind, named.start_ns, named.end_ns, named.trace_id,
            named.span_id)


def _tkey(cursor: sqlite3.Cursor, tkeys: Mapping[str, int], trace_id: str) -> int | None:
    tkey = tkeys.get(trace_id)
    if tkey is None:
        row = cursor.execute("SELECT tkey FROM traces WHERE trace_id = ?", (trace_id,)).fetchone()
        tkey = row[0] if row else None
    return tkey


def _make_stored_copy(cursor: sqlite3.Cursor, tkey: int, span_id: str, of: tuple[str, str]) -> None:
    """The stored span made a copy of ``of``: its figures out of its trace's summary and the rollups (where it keeps
    counting as a span, as an error if it failed, and under its agent)."""
    row = cursor.execute("SELECT kind, status, model, input_tokens, output_tokens, cached_input_tokens, cost_usd,"
                         " attributes FROM spans WHERE tkey = ? AND span_id = ?", (tkey, span_id)).fetchone()
    if row is None or row[0] not in LLM_KINDS:
        return
    kind, status, model, tokens_in, tokens_out, cached, cost, attributes = row
    rollups = RollupRemoval(_EVERY_HOUR)
    where = "s.tkey = ? AND s.span_id = ?"
    rollups.take(cursor, where, (tkey, span_id))
    kind, changed = copy_columns(kind, model, tokens_in, tokens_out, cached, cost, _json.loads(attributes), of)
    cursor.execute("UPDATE spans SET kind = ?, model = NULL, input_tokens = 0, output_tokens = 0,"
                   " cached_input_tokens = 0, cost_usd = 0.0, attributes = ? WHERE tkey = ? AND span_id = ?",
                   (kind, _json.dumps(changed), tkey, span_id))
    rollups.take(cursor, where, (tkey, span_id), sign=1)
    rollups.finish(cursor)
    was_call = int(status != "blocked")
    cursor.execute("UPDATE traces SET llm_calls = llm_calls - ?, input_tokens = input_tokens - ?,"
                   " output_tokens = output_tokens - ?, total_tokens = total_tokens - ?,"
                   " cost_usd = max(cost_usd - ?, 0.0) WHERE tkey = ?",
                   (was_call, tokens_in, tokens_out, tokens_in + tokens_out, cost, tkey))


def purge_namings(cursor: sqlite3.Cursor, before_ns: int) -> None:
    """Namings of calls that started before the purge's cutoff: their copies are purged or long settled."""
    cursor.execute("DELETE FROM otel_namings WHERE start_ns < ?", (before_ns,))
