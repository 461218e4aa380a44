"""The scale-out store: spans in ClickHouse, the same answers as the SQLite store.

``agentwatch serve --store chdb:///dir`` (embedded, the ``chdb`` package) or ``--store
clickhouse://user:password@host:8123/db`` (a server, through the official driver ``clickhouse-connect``). Both
share every statement; values are bound as ``{name:Type}`` parameters (``Params``), never written into SQL.

Trade-offs against SQLite, on purpose:

* Trace summaries and hourly rollups are kept by materialized views as spans are inserted (``_clickhouse_schema``):
  the traces list, its filters, the KPIs and the costs by day, agent and model read them, and the spans (sorted by
  hour of start) only for the hours a time range cuts at its ends; ingest stays an append (after its duplicate check),
  and a span charged to an ancestor's agent moves its figures to that agent by rows of its own (``_clickhouse_costs``).
* Ingest checks for stored span ids before appending (idempotent retries), under a lock of this process.
  Run one collector per database: two collectors writing the same database could both append a retried
  span (the ReplacingMergeTree folds such duplicates away at merge time, not at once) and could hand out
  the same rule / alert ids.
* ``DATA_RETENTION_DAYS`` is applied by the collector's retention job through ``purge``, exactly as on SQLite
  (whole traces, alert history, and cron registrations moved past the runs whose spans are gone), and only
  there: a table TTL would drop spans by themselves, behind the crons' back. Tables a version with TTLs made
  have them removed on open.
"""

from __future__ import annotations

import dataclasses
import operator
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from . import _clickhouse_agents as _agents
from . import _clickhouse_copies as _copies
from . import _clickhouse_costs as _costs
from . import _clickhouse_sessions as _sessions
from . import _json
from ._clickhouse_conn import Connection, Params, connect
from ._clickhouse_schema import (
    BY_START,
    HOUR_SQL,
    NAMES,
    NO_BIN,
    RETIRED,
    SMALL_BLOCK_COLUMNS,
    SMALL_BLOCKS,
    SUMMARIES,
    TABLES,
    hour_sql,
)
from ._cursor import Position, encode_cursor
from ._datamodel import (
    ALERT_COLUMNS,
    BOOKKEEPING_KINDS,
    BOOKKEEPING_SQL,
    BREAKER_EVENT_COLUMNS,
    CRON_COLUMNS,
    CRON_SPAN_COLUMNS,
    OPERATOR_COLUMNS,
    PURGE_KINDS,
    RULE_COLUMNS,
    SPAN_COLUMNS,
    agent_cost_rows,
    alert_dict,
    breaker_event_dict,
    breaker_event_row,
    breaker_state_dict,
    cron_dict,
    cron_span_dict,
    event_payload,
    metrics_dict,
    new_rule,
    normalize_sdk_alert,
    operator_action,
    rule_alert_row,
    rule_changes,
    rule_dict,
    sdk_alert_row,
    span_dict,
    span_flags,
    trace_dict,
    window_stats_dict,
)
from ._group_commit import GroupCommit
from ._model import SpanRecord
from ._sqlite_queries import split_hours
from ._stats import DAY_NS, HOUR_NS, add_by_key, daily_cost_rows, model_cost_rows
from ._store import IngestResult, Store, TraceQuery, first_of_each_span, results_per_batch

__all__ = ["ClickHouseStore"]

_ID_CHUNK = 1000
#: Spans of concurrent requests stored together at most (their first request whatever its size).
_GROUP_SPANS = 20_000
_LOG_GROWTH = "log(1.05)"
#: Traces a search decides by their merged names in a statement of their own (read by id), at most; beyond, the
#: list's statement merges the names of every candidate.
_NAMED_AT_MOST = 5000
_RECORD_FIELDS = ("trace_id", "span_id", "parent_span_id", "name", "kind", "status", "start_ns", "end_ns", "agent_id",
                  "agent_name", "agent_role", "model", "provider", "input_tokens", "output_tokens",
                  "cached_input_tokens", "cost_usd")
_record_fields = operator.attrgetter(*_RECORD_FIELDS)
# The spans table's columns as the ingest hands them over (Arrow types), in table order.
_SPAN_TYPES = {
    "seq": "uint64", "trace_id": "string", "span_id": "string", "parent_span_id": "string", "name": "string",
    "kind": "string", "status": "string", "start_ns": "int64", "end_ns": "int64", "agent_id": "string",
    "agent_name": "string", "agent_role": "string", "agent_key": "string", "model": "string", "provider": "string",
    "input_tokens": "int64", "output_tokens": "int64", "cached_input_tokens": "int64", "cost_usd": "float64",
    "is_root": "uint8", "is_call": "uint8", "is_blocked": "uint8", "attributes": "string", "input": "string",
    "output": "string",
}

# One row per trace, merged from its partial aggregates in trace_summary (filled as spans are inserted). Aliases are
# prefixed (t_) so that they never shadow the summary's columns inside the aggregate functions.
_TRACE_AGG = """
SELECT trace_id,
    if(sum(s_roots) > 0, argMinIfMerge(s_root_name), argMinMerge(s_first_name)) AS t_name,
    sum(s_roots) > 0 AS t_has_root,
    min(s_start) AS t_start, max(s_end) AS t_end, (t_end - t_start) / 1e6 AS t_duration,
    sum(s_spans) AS t_spans, sum(s_calls) AS t_calls, sum(s_in) AS t_in, sum(s_out) AS t_out,
    t_in + t_out AS t_tokens, sum(s_cost) AS t_cost, sum(s_errors) AS t_errors,
    sum(s_blocked) AS t_blocked, multiIf(t_blocked > 0, 'blocked', t_errors > 0, 'error', 'ok') AS t_status,
    sum(s_user_spans) = 0 AS t_system, min(s_key) AS t_key, minMap(s_agents) AS t_agents,
    minMap(s_agent_names) AS t_agent_names, minMap(s_models) AS t_models
FROM {db}.trace_summary
{where}
GROUP BY trace_id
"""
#: The merged name in a sort or a filter (not inside another name, such as s_agent_names).
_T_NAME = re.compile(r"\bt_name\b")
_NAME_SQL = "if(sum(s_roots) > 0, argMinIfMerge(s_root_name), argMinMerge(s_first_name))"
_PAGE_AGG = """
SELECT trace_id, {name} AS t_name, min(s_start) AS t_start, max(s_end) AS t_end, (t_end - t_start) / 1e6 AS t_duration,
    sum(s_spans) AS t_spans, sum(s_in) + sum(s_out) AS t_tokens, sum(s_cost) AS t_cost,
    multiIf(sum(s_blocked) > 0, 'blocked', sum(s_errors) > 0, 'error', 'ok') AS t_status,
    sum(s_user_spans) = 0 AS t_system, min(s_key) AS t_key
FROM {db}.trace_summary
{where}
GROUP BY trace_id
"""
_TRACE_COLUMNS = ("trace_id, t_name, t_has_root, t_start, t_end, t_duration, t_spans, t_calls, t_in, t_out, t_tokens,"
                  " t_cost, t_errors, t_blocked, t_status, t_system, t_key, t_agents, t_agent_names, t_models")
#: A trace with work of the program's (``TraceQuery.include_system``), on the aggregates above.
_USER_TRACE = "t_system = 0"
# The agent keys and names and the models of a partial aggregate, for the text search.
_ROW_LABELS_SQL = "arrayConcat(s_agents.1, s_agent_names.1, s_models.1)"
_SORT_COLUMNS = {
    "start_time": "t_start", "end_time": "t_end", "duration": "t_duration", "cost": "t_cost",
    "tokens": "t_tokens", "spans": "t_spans", "name": "t_name", "status": "t_status",
}
# The ClickHouse type a cursor's sort value is bound as, per sort.
_CURSOR_TYPES = {"start_time": "Int64", "end_time": "Int64", "duration": "Float64", "cost": "Float64",
                 "tokens": "Int64", "spans": "Int64", "name": "String", "status": "String"}
#: Each rollup's columns with its sums negated: what the purge inserts for the spans it removes (``cost_rollup``'s:
#: ``_clickhouse_costs.subtract_purged``, which counts each span under the agent it is charged to).
_NEGATED_ROLLUPS = {
    "rollup": "hour, bin, -spans, -calls, -call_errors, -errors, -blocked, -input_tokens, -output_tokens, -cost_usd",
}
_RULE_FIELDS = tuple(column.strip() for column in RULE_COLUMNS.split(","))
# Stored alert rows are rewritten whole (a new version) when their delivery status changes.
_ALERT_ROW_COLUMNS = ALERT_COLUMNS + ", details, dedup_key"


def _range(p: Params, column: str, start_ns: int | None, end_ns: int | None) -> list[str]:
    clauses = []
    if start_ns is not None:
        clauses.append(f"{column} >= {p(int(start_ns), 'Int64')}")
    if end_ns is not None:
        clauses.append(f"{column} < {p(int(end_ns), 'Int64')}")
    return clauses


def _page(p: Params, limit: int, offset: int = 0) -> str:
    return f" LIMIT {p(int(limit), 'UInt64')} OFFSET {p(int(offset), 'UInt64')}"


def _where(clauses: Sequence[str]) -> str:
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""


def _starts(records: Iterable[SpanRecord]) -> dict[str, tuple[int, int]]:
    """The first and last start of each trace's spans among ``records``."""
    starts: dict[str, tuple[int, int]] = {}
    for record in records:
        trace_id, start = record.trace_id, record.start_ns
        known = starts.get(trace_id)
        if known is None:
            starts[trace_id] = (start, start)
        elif start < known[0]:
            starts[trace_id] = (start, known[1])
        elif start > known[1]:
            starts[trace_id] = (known[0], start)
    return starts


def _scalar_text(value: Any) -> str:
    """Thresholds and readings keep their JSON type (int, float or text), as SQLite's untyped columns do."""
    return _json.dumps(value)


def _scalar(text: str | None) -> Any:
    return None if text is None else _json.loads(text)


class ClickHouseStore(Store):
    """``Store`` on ClickHouse. Safe to share between threads."""

    def __init__(self, url_or_connection: str | Connection) -> None:
        self.url = url_or_connection if isinstance(url_or_connection, str) else None
        self._db_conn = connect(url_or_connection) if isinstance(url_or_connection, str) else url_or_connection
        self.database = self._db_conn.database
        db = self.database
        self._spans, self._events = f"{db}.spans", f"{db}.breaker_events"
        self._alerts, self._rules = f"{db}.alert_history", f"{db}.alert_rules"
        self._write_lock = threading.Lock()
        self._ingests = GroupCommit(self._ingest_group, len, _GROUP_SPANS)
        db = self.database
        self._db_conn.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
        had_starts = int(self._rows(f"EXISTS TABLE {db}.trace_starts")[0][0])
        had_user_spans = self._has_column("trace_summary", "s_user_spans")
        for ddl in TABLES.values():
            self._db_conn.execute(ddl.format(db=db))
        # A table from before ``system``: filled below.
        self._execute(f"ALTER TABLE {db}.trace_starts ADD COLUMN IF NOT EXISTS system Int64 DEFAULT 0")
        _sessions.create_session_table(self._db_conn, db)
        _agents.create_charge_table(self._db_conn, db)
        _copies.create_naming_table(self._db_conn, db)
        self._create_summaries()
        traces = (f"(SELECT min(s_start) AS st, sum(s_user_spans) AS work FROM {db}.trace_summary GROUP BY trace_id"
                  "{having})")
        if not had_starts:  # a database from before trace_starts: count the stored traces' starts
            self._execute(f"INSERT INTO {db}.trace_starts (hour, traces, system) SELECT {hour_sql('st')} AS hour,"
                          f" toInt64(count()), toInt64(countIf(work = 0)) FROM {traces.format(having='')}"
                          " GROUP BY hour")
        elif not had_user_spans:  # its traces of bookkeeping alone are marked now: count them
            self._execute(f"INSERT INTO {db}.trace_starts (hour, traces, system) SELECT {hour_sql('st')} AS hour, 0,"
                          f" toInt64(count()) FROM {traces.format(having=' HAVING work = 0')} GROUP BY hour")
        self._remove_ttl()
        self._seq = self._max("spans", "seq")
        self._ids = {table: self._max(table, "id") for table in ("breaker_events", "alert_history", "alert_rules",
                                                                  "operator_actions")}
        self._version = 0
        self._closed = False

    # -- plumbing ----------------------------------------------------------------------------------------

    def _rows(self, sql: str, params: Params | None = None) -> list[Sequence[Any]]:
        return self._db_conn.rows(sql, params)

    def _execute(self, sql: str, params: Params | None = None) -> None:
        self._db_conn.execute(sql, params)

    def _max(self, table: str, column: str) -> int:
        return int(self._rows(f"SELECT max({column}) FROM {self.database}.{table}")[0][0] or 0)

    def _has_column(self, table: str, column: str) -> bool:
        p = Params()
        return bool(int(self._rows(f"SELECT count() FROM system.columns WHERE database = {p(self.database, 'String')}"
                                   f" AND table = {p(table, 'String')} AND name = {p(column, 'String')}", p)[0][0]))

    def _create_summaries(self) -> None:
        db = self.database
        for table, (ddl, view, select) in SUMMARIES.items():
            existed = int(self._rows(f"EXISTS TABLE {db}.{table}")[0][0])
            self._execute(ddl.format(db=db))
            if existed and table == "trace_summary" and not self._has_column(table, "s_user_spans"):
                self._add_user_spans()
            if existed and table == "trace_summary":
                self._small_blocks()
                self._add_by_start()
                self._add_names()
            self._execute(view.format(db=db, select=select.format(db=db)))
            if not existed:  # a database from before the summaries: fill them from the spans already stored
                self._execute(f"INSERT INTO {db}.{table} {select.format(db=db)}")
                if table == "cost_rollup":
                    _costs.move_stored_charges(self)
        for retired in RETIRED:
            self._execute(f"DROP TABLE IF EXISTS {db}.{retired}")

    def _small_blocks(self) -> None:
        """A summary from before its page-only columns were compressed in small blocks (``SMALL_BLOCKS``): the
        columns take the setting (metadata alone); parts written from then on, by inserts and merges, have it."""
        if "max_compress_block_size" in self._rows(f"SHOW CREATE TABLE {self.database}.trace_summary")[0][0]:
            return
        for column in SMALL_BLOCK_COLUMNS:  # one statement each: the setting's own commas end a list of changes
            self._execute(f"ALTER TABLE {self.database}.trace_summary MODIFY COLUMN {column}"
                          f" MODIFY SETTING {SMALL_BLOCKS}")

    def _add_by_start(self) -> None:
        """A summary from before its rows were also kept by start (``BY_START``): the projection is added, and built
        for the stored parts in the background (queries read parts without it from the table itself meanwhile)."""
        if "PROJECTION by_start" in self._rows(f"SHOW CREATE TABLE {self.database}.trace_summary")[0][0]:
            return
        summary = f"{self.database}.trace_summary"
        self._execute(f"ALTER TABLE {summary} MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild'")
        self._execute(f"ALTER TABLE {summary} ADD {BY_START.replace('PROJECTION', 'PROJECTION IF NOT EXISTS')}")
        self._execute(f"ALTER TABLE {summary} MATERIALIZE PROJECTION by_start")

    def _add_names(self) -> None:
        """A summary from before ``s_names``: the column is added (its stored rows compute it from their states when
        read) and written for the stored parts in the background."""
        if self._has_column("trace_summary", "s_names"):
            return
        self._execute(f"ALTER TABLE {self.database}.trace_summary ADD COLUMN IF NOT EXISTS {NAMES}")
        self._execute(f"ALTER TABLE {self.database}.trace_summary MATERIALIZE COLUMN s_names")

    def _add_user_spans(self) -> None:
        """A summary from before ``s_user_spans``: its rows count every span as work (the column's default), except
        those of traces made of bookkeeping spans alone (one scan of the spans' kinds); its view is made again
        with the column (the caller)."""
        db = self.database
        self._execute(f"ALTER TABLE {db}.trace_summary ADD COLUMN IF NOT EXISTS s_user_spans"
                      " SimpleAggregateFunction(sum, UInt64) DEFAULT s_spans AFTER s_blocked")
        self._execute(f"DROP VIEW IF EXISTS {db}.trace_summary_mv")
        self._execute(f"ALTER TABLE {db}.trace_summary UPDATE s_user_spans = 0 WHERE trace_id IN (SELECT trace_id"
                      f" FROM {self._spans} GROUP BY trace_id HAVING countIf(NOT {BOOKKEEPING_SQL}) = 0)"
                      " SETTINGS mutations_sync = 2")

    def _remove_ttl(self) -> None:
        # Spans of a trace are found by their hours now (see _clickhouse_schema): the old skip index only costs.
        self._execute(f"ALTER TABLE {self._spans} DROP INDEX IF EXISTS trace_idx")
        # Earlier versions expired spans and breaker events by TTL as well as by purge; purge alone decides now.
        for table in ("spans", "breaker_events"):
            if "TTL " in self._rows(f"SHOW CREATE TABLE {self.database}.{table}")[0][0]:
                self._execute(f"ALTER TABLE {self.database}.{table} REMOVE TTL")

    def _next_version(self) -> int:
        # Versions only have to grow within this store's writes (called under the write lock).
        self._version = max(self._version + 1, time.time_ns())
        return self._version

    def _next_id(self, table: str) -> int:
        self._ids[table] += 1
        return self._ids[table]

    def drop_database(self) -> None:
        """Remove this store's database and everything in it (tests, decommissioning)."""
        with self._write_lock:
            self._execute(f"DROP DATABASE IF EXISTS {self.database}")

    def close(self) -> None:
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._db_conn.close()

    # -- spans -------------------------------------------------------------------------------------------

    def _stored(self, pairs: Sequence[tuple[str, str]], starts: dict[str, tuple[int, int]],
                known_starts: dict[str, int], known_work: set[str], tree: _agents.StoredRows) -> set[tuple[str, str]]:
        """The (trace_id, span_id) pairs of ``pairs`` already stored; fills ``known_starts`` with the start of
        each trace of the batch already stored, ``known_work`` with those of them that hold a span of work (not
        bookkeeping), and ``tree`` with their spans (for the charges to agents). Only
        traces the summary knows are looked up in spans, and only in the hours their spans started in (the spans'
        sort key), so a batch of new traces costs one primary-key probe of the summary, however large the store."""
        found: set[tuple[str, str]] = set()
        trace_ids = sorted({trace_id for trace_id, _ in pairs})
        for start in range(0, len(trace_ids), _ID_CHUNK):
            p = Params()
            ids = p(trace_ids[start:start + _ID_CHUNK], "Array(String)")
            known = self._rows(f"SELECT trace_id, min(s_start), max(s_last_start), sum(s_user_spans) > 0"
                               f" FROM {self.database}.trace_summary WHERE trace_id IN {ids} GROUP BY trace_id", p)
            if not known:
                continue
            known_starts.update((row[0], int(row[1])) for row in known)
            known_work.update(row[0] for row in known if int(row[3]))
            # A span already stored started where its trace's spans did: within [first, last] of the stored
            # ones; the batch's copy of it carries the same start, so the batch's hours bound it as well.
            low = min(min(int(row[1]), starts[row[0]][0]) for row in known)
            high = max(max(int(row[2]), starts[row[0]][1]) for row in known)
            p = Params()
            ids = p([row[0] for row in known], "Array(String)")
            rows = self._rows(
                f"SELECT trace_id, span_id, parent_span_id, agent_key, agent_name, start_ns FROM {self._spans}"
                f" WHERE {HOUR_SQL} BETWEEN {p(low // HOUR_NS, 'Int64')} AND {p(high // HOUR_NS, 'Int64')}"
                f" AND trace_id IN {ids}", p)
            found.update((row[0], row[1]) for row in rows)
            tree.add(rows)
        return found

    def _count_starts(self, starts: dict[str, tuple[int, int]], known_starts: dict[str, int], known_work: set[str],
                      fresh: Sequence[SpanRecord]) -> None:
        """trace_starts rows for a batch of ``fresh`` spans: +1 at a new trace's hour, a trace moved when its start
        moved to an earlier hour; the same in ``system`` for traces of bookkeeping alone, one taken out there when
        its first span of work arrives."""
        worked = {record.trace_id for record in fresh if record.kind not in BOOKKEEPING_KINDS}
        deltas: dict[int, list[int]] = {}

        def add(hour: int, traces: int, system: int) -> None:
            row = deltas.setdefault(hour, [0, 0])
            row[0] += traces
            row[1] += system

        for trace_id, (low, _) in starts.items():
            old = known_starts.get(trace_id)
            system = int(trace_id not in worked and trace_id not in known_work)
            if old is None:
                add(low // HOUR_NS, 1, system)
                continue
            was_system = int(trace_id not in known_work)
            hour = min(low, old) // HOUR_NS
            if hour != old // HOUR_NS or was_system != system:
                add(old // HOUR_NS, -1, -was_system)
                add(hour, 1, system)
        rows = [{"hour": hour, "traces": n, "system": system} for hour, (n, system) in deltas.items() if n or system]
        if rows:  # a few rows: the row path's fixed cost is half the columnar one's (2 vs 4.7 ms in chdb)
            self._db_conn.insert("trace_starts", rows)

    def _span_columns(self, records: Sequence[SpanRecord]) -> dict[str, list[Any]]:
        """The spans table's columns for ``records``, numbered on from the last stored seq."""
        first = self._seq + 1
        self._seq += len(records)
        dumps = _json.dumps
        columns: dict[str, list[Any]] = {name: [] for name in _SPAN_TYPES}
        columns["seq"] = list(range(first, self._seq + 1))
        # One C-level getter per record and a transpose: a list per field by getattr was most of the Python time.
        for name, values in zip(_RECORD_FIELDS, zip(*map(_record_fields, records), strict=True), strict=True):
            columns[name] = list(values)
        columns["agent_key"] = [record.agent_id or record.agent_name or "" for record in records]
        is_root, is_call, is_blocked = columns["is_root"], columns["is_call"], columns["is_blocked"]
        for record in records:
            call, blocked = span_flags(record.kind, record.status, record.attributes)
            is_root.append(int(record.parent_span_id is None))
            is_call.append(int(call))
            is_blocked.append(int(blocked))
        columns["attributes"] = [dumps(record.attributes) for record in records]
        columns["input"] = [None if record.input is None else dumps(record.input) for record in records]
        columns["output"] = [None if record.output is None else dumps(record.output) for record in records]
        return columns

    def ingest(self, records: Sequence[SpanRecord]) -> IngestResult:
        if not records:
            return IngestResult(0, 0)
        return self._ingests.submit(records)

    def _ingest_group(self, batches: list[Sequence[SpanRecord]]) -> list[IngestResult]:
        """Stores the batches of concurrent requests by one probe and one insert per table; each batch's result
        is what it would get stored alone after the batches before it."""
        records = batches[0] if len(batches) == 1 else [record for batch in batches for record in batch]
        unique = first_of_each_span(records)
        starts = _starts(unique.values())
        with self._write_lock:
            known_starts: dict[str, int] = {}
            known_work: set[str] = set()
            tree = _agents.StoredRows(self)
            stored = self._stored(list(unique), starts, known_starts, known_work, tree)
            fresh = [record for key, record in unique.items() if key not in stored] if stored else list(
                unique.values())
            if fresh:
                _copies.settle_copies(self, fresh)
                self._db_conn.insert_columns("spans", self._span_columns(fresh), _SPAN_TYPES)
                # From the spans stored alone: a resent span's copy may carry another start, and is not stored.
                self._count_starts(_starts(fresh) if stored else starts, known_starts, known_work, fresh)
                _costs.move_charges(self, fresh, _agents.charge_batch(self, fresh, tree, known_starts), tree)
                _sessions.add_session_traces(self, fresh)
                for record in fresh:
                    if record.kind == "breaker":
                        self._add_event_locked(event_payload(record), "span", record.trace_id, record.span_id)
                    elif record.kind == "alert":
                        self._add_sdk_alert_locked(event_payload(record))
        return results_per_batch(batches, fresh)

    @staticmethod
    def _labels(row: Sequence[Any]) -> tuple[str, str]:
        """The agents and models JSON of a trace row (its last three columns: label -> first seq maps), in order
        of first appearance, as SQLite lists them."""
        (agent_keys, agent_seqs), (named, named_seqs), (models, model_seqs) = row[-3], row[-2], row[-1]
        names: dict[str, tuple[int, str]] = {}
        for key_name, seq in zip(named, map(int, named_seqs), strict=True):
            key, _, name = key_name.partition("\0")
            if key not in names or seq < names[key][0]:
                names[key] = (seq, name)
        agents = sorted(zip(map(int, agent_seqs), agent_keys, strict=True))
        ordered_models = sorted(zip(map(int, model_seqs), models, strict=True))
        return (_json.dumps([[key, names[key][1] if key in names else None] for _, key in agents]),
                _json.dumps([model for _, model in ordered_models]))

    def _agg(self, where: Sequence[str]) -> str:
        return _TRACE_AGG.format(db=self.database, where=_where(where))

    def _lean_agg(self, where: Sequence[str], having: Sequence[str], order: str) -> str:
        """The aggregate with only what filters and sorts read (the engine does not drop unused -Merge states of
        a subquery itself): the name only when it is searched or sorted by, the labels never."""
        named = any(_T_NAME.search(text) for text in (order, *having))
        return _PAGE_AGG.format(db=self.database, where=_where(where), name=_NAME_SQL if named else "''")

    def _traces(self, p: Params, where: Sequence[str], having: Sequence[str], order: str, limit: int | None = None,
                offset: int = 0) -> list[dict[str, Any]]:
        """Trace summaries; ``where`` (on trace_id) and ``having`` (on the t_ columns) hold placeholders of ``p``."""
        if limit is None:
            sql = f"FROM ({self._agg(where)}){_where(having)} ORDER BY {order}"
            rows = self._rows(f"SELECT {_TRACE_COLUMNS} {sql}", p)
            return [trace_dict((*row[:15], *self._labels(row), row[15])) for row in rows]
        return self._traces_by_id(self._page_ids(p, where, having, order, limit, offset)[0])

    def _page_ids(self, p: Params, where: Sequence[str], having: Sequence[str], order: str, limit: int, offset: int,
                  counted: bool = False) -> tuple[list[str], int | None]:
        """A page's trace ids, from only the aggregates the filters and the sort need (the engine drops the
        others, names and labels above all); the page's rows are then read by id alone. ``counted``: also how
        many traces match, from the same statement (None when the page is empty: no row carries it)."""
        sql = f"FROM ({self._lean_agg(where, having, order)}){_where(having)} ORDER BY {order}"
        columns = "trace_id, count() OVER ()" if counted else "trace_id"
        rows = self._rows(f"SELECT {columns} {sql}{_page(p, limit, offset)}", p)
        return [row[0] for row in rows], (int(rows[0][1]) if counted and rows else None)

    def _started_in(self, p: Params, start_ns: int | None, end_ns: int | None) -> tuple[list[str], list[str]]:
        """(WHERE, HAVING) for traces that started in [start_ns, end_ns). A trace's first partial aggregate
        starts in the range if the trace does: prune to those traces (by the summary's key) first."""
        if start_ns is None and end_ns is None:
            return [], []
        inner = _where(_range(p, "s_start", start_ns, end_ns))
        return ([f"trace_id IN (SELECT trace_id FROM {self.database}.trace_summary{inner})"],
                _range(p, "t_start", start_ns, end_ns))

    def _trace_filters(self, p: Params, query: TraceQuery) -> tuple[list[str], list[str]]:
        """(trace_id WHERE, trace HAVING) for a traces query, binding values in ``p``.

        Each filter narrows the traces to aggregate by the summary rows that could make a trace match (a trace
        matches when one of its partial aggregates does). Every partial aggregate of a trace that started at or after
        ``start_ns`` starts there too, so those rows are also held to ``s_start >= start_ns``: one narrower set per
        filter, and the traces that started in the range need no set of their own (HAVING decides on t_start)."""
        summary = f"{self.database}.trace_summary"
        since = _range(p, "s_start", query.start_ns, None)
        narrowed: list[str] = []

        def matching(condition: str) -> str:
            return f"trace_id IN (SELECT trace_id FROM {summary}{_where([condition, *since])})"

        # A trace's agents and models are the union of its partial aggregates': matched row by row, exactly.
        if query.agent_id:
            narrowed.append(matching(f"has(s_agents.1, {p(query.agent_id, 'String')})"))
        if query.model:
            narrowed.append(matching(f"has(s_models.1, {p(query.model, 'String')})"))
        if query.status:
            # An error or blocked trace has a partial aggregate with an error or a block (the sums only grow): only
            # those traces are aggregated, a few percent of them, instead of every trace to find them.
            marked = {"error": "s_errors", "blocked": "s_blocked"}.get(query.status)
            if marked:
                narrowed.append(matching(f"{marked} > 0"))
        search = (query.search or "").strip()
        text_match = ""
        if search:
            pattern = p(search, "String")
            # A trace's labels are the union of its partial aggregates' labels: matched row by row, exactly,
            # without merging them (the same set narrows and decides). Its name is one of its rows' names
            # (s_names): the rows whose names match narrow the traces to aggregate, and the merged name decides.
            row_labels = f"arrayExists(x -> positionCaseInsensitiveUTF8(x, {pattern}) > 0, {_ROW_LABELS_SQL})"
            labels = matching(row_labels)
            in_id = f"positionCaseInsensitiveUTF8(trace_id, {pattern}) > 0"
            named = self._named(search, pattern, row_labels, in_id, since, p)
            if named is None:  # many traces to decide by name: their names are merged in the list's statement
                names = matching(f"arrayExists(x -> positionCaseInsensitiveUTF8(x, {pattern}) > 0, s_names)")
                narrowed.append(f"({labels} OR {names} OR {in_id})")
                text_match = f"(positionCaseInsensitiveUTF8(t_name, {pattern}) > 0 OR {in_id} OR {labels})"
            else:  # every trace decided by id: the list's statement reads no names' states, and has nothing to check
                by_name = f" OR trace_id IN {p(named, 'Array(String)')}" if named else ""
                narrowed.append(f"({labels} OR {in_id}{by_name})")
        if narrowed:
            where, having = narrowed, _range(p, "t_start", query.start_ns, query.end_ns)
        else:
            where, having = self._started_in(p, query.start_ns, query.end_ns)
        if not query.include_system:
            having.append(_USER_TRACE)
        if query.status:
            having.append(f"t_status = {p(query.status, 'String')}")
        if text_match:
            having.append(text_match)
        return where, having

    def _named(self, search: str, pattern: str, row_labels: str, in_id: str, since: list[str],
               p: Params) -> list[str] | None:
        """The traces that the search matches by their merged name, among those it may not match otherwise: the
        traces of rows whose names match (s_names, plain text) but not their labels, nor their id; only those traces'
        names are merged (read by id). None when more than ``_NAMED_AT_MOST`` traces are in doubt: the caller merges
        the names in the list's own statement then. ``pattern``, ``row_labels``, ``in_id`` and ``since`` hold
        placeholders of ``p`` (the list statement's, whose other values this statement leaves unused)."""
        rows = [f"arrayExists(x -> positionCaseInsensitiveUTF8(x, {pattern}) > 0, s_names)", *since,
                f"NOT {row_labels}", f"NOT {in_id}"]
        doubt = [row[0] for row in self._rows(
            f"SELECT trace_id FROM {self.database}.trace_summary{_where(rows)} GROUP BY trace_id"
            f" LIMIT {_NAMED_AT_MOST + 1}", p)]
        if len(doubt) > _NAMED_AT_MOST:
            return None
        if not doubt:
            return []
        by_id = Params()
        return [row[0] for row in self._rows(
            f"SELECT trace_id FROM {self.database}.trace_summary WHERE trace_id IN"
            f" {by_id(doubt, 'Array(String)')} GROUP BY trace_id"
            f" HAVING positionCaseInsensitiveUTF8({_NAME_SQL}, {by_id(search, 'String')}) > 0", by_id)]

    @staticmethod
    def _started_sql(include_system: bool) -> str:
        """trace_starts' count of the traces a list or count shows."""
        return "sum(traces)" if include_system else "sum(traces) - sum(system)"

    def _count_traces(self, start_ns: int | None, end_ns: int | None, include_system: bool = False) -> int:
        """Traces that started in [start_ns, end_ns) (with work of the program's unless ``include_system``): whole
        hours from trace_starts, the partial hours at the ends from the summary (the traces with a partial aggregate
        starting there, then their true start)."""
        edges, hours = split_hours(start_ns, end_ns)
        total = 0
        if hours is not None:
            p = Params()
            total += int(self._rows(f"SELECT {self._started_sql(include_system)} FROM {self.database}.trace_starts"
                                    f"{_where(_range(p, 'hour', hours[0], hours[1]))}", p)[0][0] or 0)
        for low, high in edges:
            # Traces with a partial aggregate starting in the edge (a column scan), then those of them that started
            # in it (a key lookup of those few traces).
            p = Params()
            candidates = [row[0] for row in self._rows(  # GROUP BY, not DISTINCT: that reads the table in order
                f"SELECT trace_id FROM {self.database}.trace_summary"
                f"{_where(_range(p, 's_start', low, high))} GROUP BY trace_id", p)]
            if candidates:
                p = Params()
                shown = f"min(s_start) >= {p(low, 'Int64')}"
                if not include_system:
                    shown += " AND sum(s_user_spans) > 0"
                total += int(self._rows(f"SELECT count() FROM (SELECT trace_id FROM {self.database}.trace_summary"
                                        f" WHERE trace_id IN {p(candidates, 'Array(String)')} GROUP BY trace_id"
                                        f" HAVING {shown})", p)[0][0])
        return total

    @staticmethod
    def _by_start_alone(query: TraceQuery) -> bool:
        """Sorted by start time with no filter but the time range: the query ``_newest_page`` answers."""
        return query.sort == "start_time" and not (query.search and query.search.strip()) and not query.agent_id \
            and not query.model and not query.status

    def _newest_page(self, query: TraceQuery) -> tuple[list[str] | None, int | None]:
        """The page's trace ids of the traces list by start time with no filter but the time range, from the
        newest (or oldest) hours only: trace_starts tells from which hour on there are enough traces for the page;
        the page is exact when it comes out full (or the window reached the range's end). None: not such a
        query. And with no time range, how many traces the list has (the hours' counts read for the window)."""
        if not self._by_start_alone(query):
            return None, None
        first_hour = None if query.start_ns is None else query.start_ns // HOUR_NS
        last_hour = None if query.end_ns is None else query.end_ns // HOUR_NS + 1
        p = Params()
        direction = "DESC" if query.order == "desc" else "ASC"
        hours = self._rows(f"SELECT hour, {self._started_sql(query.include_system)} AS n"
                           f" FROM {self.database}.trace_starts{_where(_range(p, 'hour', first_hour, last_hour))}"
                           " GROUP BY hour HAVING n != 0"
                           f" ORDER BY hour {direction}", p)
        if not hours:
            return None, None
        total = sum(int(n) for _, n in hours) if query.start_ns is None and query.end_ns is None else None
        wanted, seen, taken = query.offset + query.limit, 0, 0
        while True:
            while taken < len(hours) and seen < wanted:
                seen += int(hours[taken][1])
                taken += 1
            everything = taken == len(hours)
            low, high = query.start_ns, query.end_ns
            if not everything:  # from the hour where enough traces have started on
                edge = int(hours[taken - 1][0])
                if query.order == "desc":
                    low = edge * HOUR_NS if low is None else max(low, edge * HOUR_NS)
                else:
                    high = (edge + 1) * HOUR_NS if high is None else min(high, (edge + 1) * HOUR_NS)
            if not everything:
                ids = self._window_page(query, low, high, wanted)
                if ids is not None:
                    return ids, total
            else:
                p = Params()
                where, having = self._started_in(p, low, high)
                if not query.include_system:
                    having.append(_USER_TRACE)
                return self._page_ids(p, where, having, f"t_start {direction}, t_key {direction}", query.limit,
                                      query.offset)[0], total
            wanted *= 2  # fewer traces than counted (the range ends inside an hour): widen the window

    def _window_page(self, query: TraceQuery, low: int | None, high: int | None, wanted: int) -> list[str] | None:
        """The page's trace ids when enough traces started in [low, high), else None. Reads the summary rows of
        the window alone (a column scan, no lookup per trace), then corrects the candidates that have rows
        outside it: one with a row before ``low`` started earlier; one with a row after ``high`` may have an
        earlier key, or work where its rows in the window are bookkeeping alone. ``wanted`` sizes the read (it
        grows when a window fell short); the page itself always ends at ``offset + limit``."""
        descending = query.order == "desc"
        direction = "DESC" if descending else "ASC"
        p = Params()
        in_window = _where(_range(p, "s_start", low, high))
        keep = 2 * wanted
        found = self._rows(
            f"SELECT trace_id, min(s_start) AS st, min(s_key) AS k, sum(s_user_spans)"
            f" FROM {self.database}.trace_summary{in_window} GROUP BY trace_id ORDER BY st {direction}, k {direction}"
            f" LIMIT {p(keep, 'UInt64')}", p)
        candidates = {row[0]: (int(row[1]), int(row[2])) for row in found}
        work = {row[0]: int(row[3]) for row in found}
        if not candidates:
            return None
        truncated = len(candidates) == keep
        last_start = min(start for start, _ in candidates.values()) if descending else max(
            start for start, _ in candidates.values())
        p = Params()
        outside = " OR ".join(clause for clause in (
            f"s_start < {p(low, 'Int64')}" if low is not None else "",
            f"s_start >= {p(high, 'Int64')}" if high is not None else "") if clause)
        if outside:
            for trace_id, start, key, spans in self._rows(
                    f"SELECT trace_id, min(s_start), min(s_key), sum(s_user_spans) FROM {self.database}.trace_summary"
                    f" WHERE trace_id IN {p(list(candidates), 'Array(String)')} GROUP BY trace_id"
                    f" HAVING countIf({outside}) > 0", p):
                if low is not None and int(start) < low:
                    del candidates[trace_id]
                else:
                    candidates[trace_id] = (int(start), int(key))
                    work[trace_id] = int(spans)
        ranked = sorted(((trace_id, position) for trace_id, position in candidates.items()
                         if query.include_system or work[trace_id]), key=lambda item: item[1], reverse=descending)
        end = query.offset + query.limit
        if len(ranked) < end:
            return None
        if truncated and ranked[end - 1][1][0] == last_start:
            return None  # traces beyond the candidates may tie with the page's last: not decided here
        return [trace_id for trace_id, _ in ranked[query.offset:end]]

    def _traces_by_id(self, ids: list[str]) -> list[dict[str, Any]]:
        """Whole trace rows of ``ids``, in that order."""
        return [trace for trace, _ in self._keyed_traces_by_id(ids, "t_key")]

    def _keyed_traces_by_id(self, ids: list[str], column: str) -> list[tuple[dict[str, Any], Position]]:
        """Whole trace rows of ``ids``, in that order, each with its position in a sort by ``column``."""
        if not ids:
            return []
        p = Params()
        of_page = f"trace_id IN {p(ids, 'Array(String)')}"
        found = {row[0]: row for row in self._rows(
            f"SELECT {_TRACE_COLUMNS}, {column}, t_key FROM ({self._agg([of_page])})", p)}
        return [(trace_dict((*found[t][:15], *self._labels(found[t][:-2]), found[t][15])),
                 (found[t][-2], int(found[t][-1]))) for t in ids if t in found]

    def _after_cursor(self, query: TraceQuery) -> list[tuple[dict[str, Any], Position]]:
        """A page after ``query.after`` by start time with no other filter: ``_newest_page`` on the range cut at
        the cursor's start (its hours and counts still apply), less the traces that started at that very
        nanosecond but are not after it; read again with more rows in the rare case those left the page short."""
        assert query.after is not None
        start, key = int(query.after[0]), query.after[1]
        descending = query.order == "desc"
        if descending:
            cut = dataclasses.replace(query, end_ns=start + 1 if query.end_ns is None else min(query.end_ns, start + 1))
        else:
            cut = dataclasses.replace(query, start_ns=start if query.start_ns is None else max(query.start_ns, start))
        extra = 1
        while True:
            ids, _ = self._newest_page(dataclasses.replace(cut, after=None, limit=query.limit + extra))
            rows = self._keyed_traces_by_id(ids or [], "t_start")
            kept = [(trace, (value, tie)) for trace, (value, tie) in rows
                    if value != start or (tie < key if descending else tie > key)]
            if len(kept) >= query.limit or len(rows) < query.limit + extra:
                return kept[:query.limit]
            extra *= 4

    def list_traces(self, query: TraceQuery) -> dict[str, Any]:
        p = Params()
        where, having = self._trace_filters(p, query)
        column = _SORT_COLUMNS[query.sort]
        direction = "DESC" if query.order == "desc" else "ASC"
        filtered = bool(query.status or query.agent_id or query.model or (query.search or "").strip())
        counted = None
        if query.after is not None and self._by_start_alone(query):
            rows = self._after_cursor(query)
        elif query.after is not None:
            value, key = query.after
            after = (f"({column}, t_key) {'<' if direction == 'DESC' else '>'}"
                     f" ({p(value, _CURSOR_TYPES[query.sort])}, {p(key, 'UInt64')})")
            ids, _ = self._page_ids(p, where, [*having, after], f"{column} {direction}, t_key {direction}",
                                    query.limit, 0)
            rows = self._keyed_traces_by_id(ids, column)
        else:
            newest, counted = self._newest_page(query)
            if newest is not None:
                ids = newest
            else:
                # A filtered page counts its matches in the same statement: the filters' work (the aggregates of
                # every matching trace) is done once, not again for the total.
                ids, counted = self._page_ids(p, where, having, f"{column} {direction}, t_key {direction}",
                                              query.limit, query.offset, counted=filtered)
            rows = self._keyed_traces_by_id(ids, column)
        traces = [trace for trace, _ in rows]
        following = encode_cursor(query.sort, query.order, rows[-1][1]) if len(rows) == query.limit else None
        if query.after is not None:
            total = self._total(query, filtered)
        elif traces and len(traces) < query.limit or not traces and not query.offset:
            total = query.offset + len(traces)  # a short page is the last one
        elif counted is not None:
            total = counted
        else:  # a page past the end (no row carried the count), or unfiltered
            total = self._total(query, filtered)
        return {"traces": traces, "total": int(total), "limit": query.limit, "offset": query.offset,
                "next_cursor": following}

    def _total(self, query: TraceQuery, filtered: bool) -> int:
        """How many traces match the query's filters (wherever its page starts)."""
        if not filtered:  # no filter but the time range
            return self._count_traces(query.start_ns, query.end_ns, query.include_system)
        count = Params()
        where, having = self._trace_filters(count, query)
        return int(self._rows(f"SELECT count() FROM ({self._lean_agg(where, having, '')}){_where(having)}",
                              count)[0][0])

    def get_trace(self, trace_id: str) -> dict[str, Any] | None:
        p = Params()
        found = self._traces(p, [f"trace_id = {p(trace_id, 'String')}"], [], "t_key")
        return found[0] if found else None

    def of_traces(self, p: Params, trace_ids: Sequence[str]) -> str | None:
        """A WHERE clause for the spans of ``trace_ids`` (None when none is stored): the hours their spans started
        in, from the summary, then the ids, so the read follows the spans' sort key."""
        ids = p(list(trace_ids), "Array(String)")
        found = self._rows(f"SELECT min(s_start), max(s_last_start), count() FROM {self.database}.trace_summary"
                           f" WHERE trace_id IN {ids}", p)[0]
        if not int(found[2]):
            return None
        return (f"{HOUR_SQL} BETWEEN {p(int(found[0]) // HOUR_NS, 'Int64')} AND {p(int(found[1]) // HOUR_NS, 'Int64')}"
                f" AND trace_id IN {ids}")

    def trace_spans(self, trace_id: str, limit: int = 10_000) -> list[dict[str, Any]]:
        p = Params()
        where = self.of_traces(p, [trace_id])
        if where is None:
            return []
        rows = self._rows(f"SELECT {SPAN_COLUMNS} FROM {self._spans} WHERE {where}"
                          f" ORDER BY start_ns, seq{_page(p, limit)}", p)
        return [span_dict(row) for row in rows]

    def iter_traces(self, start_ns: int, end_ns: int) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            p = Params()
            where, having = self._started_in(p, start_ns, end_ns)
            page = self._traces(p, where, [*having, _USER_TRACE], "t_start, t_key", 1000, offset)
            if not page:
                return
            yield from page
            offset += len(page)

    def top_traces(self, start_ns: int, end_ns: int, limit: int) -> list[dict[str, Any]]:
        p = Params()
        where, having = self._started_in(p, start_ns, end_ns)
        return self._traces(p, where, [*having, _USER_TRACE], "t_cost DESC, t_key", limit)

    # -- aggregates --------------------------------------------------------------------------------------

    def metrics(self, start_ns: int | None, end_ns: int | None) -> dict[str, Any]:
        # Whole hours from the rollups, the partial hours at each end from the spans (by their sort key): exact
        # for any range, and no scan of every span for a long one.
        edges, hours = split_hours(start_ns, end_ns)
        totals: list[Any] = [0, 0, 0, 0, 0, 0, 0, 0.0]  # spans, calls, call errors, errors, blocked, in, out, cost
        bins: dict[int, int] = {}
        if hours is not None:
            p = Params()
            in_hours = _where(_range(p, "hour", hours[0], hours[1]))
            row = self._rows("SELECT sum(spans), sum(calls), sum(call_errors), sum(errors), sum(blocked),"
                             f" sum(input_tokens), sum(output_tokens), sum(cost_usd) FROM {self.database}.rollup"
                             f"{in_hours}", p)[0]
            totals = [a + (b or 0) for a, b in zip(totals, row, strict=True)]
            for index, count in self._rows(f"SELECT bin, sum(calls) AS n FROM {self.database}.rollup"
                                           f"{_where([*_range(p, 'hour', hours[0], hours[1]), f'bin != {NO_BIN}'])}"
                                           " GROUP BY bin HAVING n != 0", p):
                bins[int(index)] = bins.get(int(index), 0) + int(count)
        if edges:
            p = Params()
            in_edges = " OR ".join(f"({' AND '.join(_range(p, 'start_ns', low, high))})" for low, high in edges)
            row = self._rows(
                "SELECT count(), sum(is_call), countIf(is_call = 1 AND status = 'error'), countIf(status = 'error'),"
                f" sum(is_blocked), sum(input_tokens), sum(output_tokens), sum(cost_usd) FROM {self._spans}"
                f" WHERE {in_edges}", p)[0]
            totals = [a + (b or 0) for a, b in zip(totals, row, strict=True)]
            # The same logarithmic bins as the rollups (and SQLite's), so percentiles agree.
            for index, count in self._rows(
                    f"SELECT toInt64(floor(log(greatest((end_ns - start_ns) / 1e6, 0.001)) / {_LOG_GROWTH})) AS b,"
                    f" count() FROM {self._spans} WHERE ({in_edges}) AND is_call = 1 GROUP BY b", p):
                bins[int(index)] = bins.get(int(index), 0) + int(count)
        return metrics_dict(start_ns, end_ns, self._count_traces(start_ns, end_ns), totals, bins)

    def _hours_and_edges(self, start_ns: int | None, end_ns: int | None, rollup_sql: str, spans_sql: str,
                         width: int, spans_filter: Sequence[str] = ()) -> list[tuple[Any, ...]]:
        """Rows of (key..., sums...) over [start_ns, end_ns), as SQLite's ``_grouped``: the whole hours from a rollup
        (``rollup_sql``, its ``{where}`` on ``hour``), the hours the range cuts at each end from the spans
        (``spans_sql``, its ``{where}`` on ``start_ns`` and ``spans_filter``; both ends in one statement, as
        ``metrics`` reads them), added up per key (the first ``width`` columns)."""
        edges, hours = split_hours(start_ns, end_ns)
        sums: dict[tuple[Any, ...], list[Any]] = {}
        if hours is not None:
            p = Params()
            add_by_key(sums, self._rows(rollup_sql.format(where=_where(_range(p, "hour", hours[0], hours[1]))), p),
                       width)
        if edges:
            p = Params()
            in_edges = " OR ".join(f"({' AND '.join(_range(p, 'start_ns', low, high))})" for low, high in edges)
            add_by_key(sums, self._rows(spans_sql.format(where=_where([f"({in_edges})", *spans_filter])), p), width)
        return [(*key, *values) for key, values in sums.items()]

    def cost_daily(self, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
        # A month's days read ~720 hours' rows, not every span (0.45 s at 10M spans); days are cut as SQLite's
        # (intDiv truncates alike).
        rows = self._hours_and_edges(
            start_ns, end_ns,
            "SELECT intDiv(hour, 24) AS day, sum(cost_usd), sum(calls), sum(input_tokens), sum(output_tokens),"
            f" sum(spans) FROM {self.database}.rollup{{where}} GROUP BY day",
            f"SELECT intDiv(start_ns, {DAY_NS}) AS day, sum(cost_usd), sum(is_call), sum(input_tokens),"
            f" sum(output_tokens), count() FROM {self._spans}{{where}} GROUP BY day", 1)
        return daily_cost_rows({int(row[0]): row for row in rows}, start_ns, end_ns)

    def cost_by_agent(self, start_ns: int | None, end_ns: int | None) -> list[dict[str, Any]]:
        # A span without an agent of its own counts under the one it is charged to (``_agent_charge``).
        rows = self._hours_and_edges(start_ns, end_ns, _costs.AGENT_COSTS_SQL.format(db=self.database),
                                     _costs.agent_costs_of_spans_sql(self.database), 1)
        # An agent is shown with its latest name (from any time, as SQLite's rollups keep it).
        return agent_cost_rows(rows, _costs.agent_names(self, [row[0] for row in rows if row[0]]))

    def cost_by_model(self, start_ns: int | None, end_ns: int | None) -> list[dict[str, Any]]:
        rows = self._hours_and_edges(start_ns, end_ns, _costs.MODEL_COSTS_SQL.format(db=self.database),
                                     _costs.model_costs_of_spans_sql(self.database), 2,
                                     ("model IS NOT NULL", "model != ''"))
        return model_cost_rows(rows)

    def window_stats(self, start_ns: int, end_ns: int) -> dict[str, Any]:
        p = Params()
        in_range = _range(p, "start_ns", start_ns, end_ns)
        row = self._rows("SELECT count(), sum(is_call), countIf(is_call = 1 AND status = 'error'), sum(is_blocked),"
                         f" sum(cost_usd) FROM {self._spans}{_where(in_range)}", p)[0]
        durations = [d / 1e6 for (d,) in self._rows(
            f"SELECT end_ns - start_ns FROM {self._spans}{_where([*in_range, 'is_call = 1'])}", p)]
        return window_stats_dict(row, durations)

    # -- breakers ----------------------------------------------------------------------------------------

    def _add_event_locked(self, payload: dict[str, Any], source: str, trace_id: str | None,
                          span_id: str | None) -> bool:
        event = breaker_event_row(payload, source, trace_id, span_id)
        p = Params()
        known = self._rows(
            f"SELECT count() FROM {self._events} WHERE scope = {p(event['scope'], 'String')} AND scope_id ="
            f" {p(event['scope_id'], 'String')} AND ts_ns = {p(event['ts_ns'], 'Int64')}"
            f" AND event = {p(event['event'], 'String')}", p)
        if known[0][0]:
            return False
        self._db_conn.insert("breaker_events", [{
            **event, "id": self._next_id("breaker_events"), "threshold": _scalar_text(event["threshold"]),
            "current": _scalar_text(event["current"])}])
        return True

    def record_breaker_event(self, event: dict[str, Any], source: str) -> bool:
        with self._write_lock:
            return self._add_event_locked(event, source, None, None)

    def breaker_status(self) -> list[dict[str, Any]]:
        # The live state is derived from the event log: the newest transition of each scope wins (the
        # last stored on a tie), and a scope known only from alerts shows its first alert, as in SQLite.
        transitions = self._rows(
            "SELECT scope, scope_id, argMax(to_state, (ts_ns, id)), argMax(event, (ts_ns, id)),"
            " argMax(from_state, (ts_ns, id)), argMax(reason, (ts_ns, id)), argMax(threshold, (ts_ns, id)),"
            f" argMax(current, (ts_ns, id)), max(ts_ns), count() FROM {self._events} GROUP BY scope, scope_id")
        alerts = self._rows(
            "SELECT scope, scope_id, argMinIf(state, id, isNotNull(state)), argMin(condition, id),"
            " argMin(threshold, id), argMin(value, id), count(), argMax(condition, (ts_ns, id)), max(ts_ns)"
            f" FROM {self._alerts} FINAL WHERE source = 'sdk' GROUP BY scope, scope_id")
        # Rows in BREAKER_STATE_COLUMNS order, as SQLite's breaker_state table holds them.
        merged: dict[tuple[str, str], list[Any]] = {}
        for scope, scope_id, state, reason, threshold, current, count, last_reason, last_ns in alerts:
            merged[(scope, scope_id)] = [scope, scope_id, state, None, None, reason, _scalar(threshold),
                                         _scalar(current), None, 0, int(count), last_reason, int(last_ns)]
        for scope, scope_id, state, event, from_state, reason, threshold, current, ts, count in transitions:
            row = merged.setdefault((scope, scope_id), [scope, scope_id, *[None] * 8, 0, None, None])
            row[2:10] = [state, event, from_state, reason, _scalar(threshold), _scalar(current), int(ts), int(count)]
        status = [breaker_state_dict(row) for row in merged.values()]
        status.sort(key=lambda e: e["last_transition_unix_nano"] or e["last_alert_unix_nano"] or 0, reverse=True)
        return status

    def breaker_history(self, limit: int, offset: int = 0, start_ns: int | None = None,
                        end_ns: int | None = None) -> list[dict[str, Any]]:
        p = Params()
        rows = self._rows(
            f"SELECT {BREAKER_EVENT_COLUMNS} FROM {self._events}{_where(_range(p, 'ts_ns', start_ns, end_ns))}"
            f" ORDER BY ts_ns DESC, id DESC{_page(p, limit, offset)}", p)
        return [breaker_event_dict([*r[:8], _scalar(r[8]), _scalar(r[9]), *r[10:]]) for r in rows]

    # -- operator control ----------------------------------------------------------------------------------

    def add_operator_action(self, action: dict[str, Any]) -> dict[str, Any]:
        with self._write_lock:
            row = {**action, "id": self._next_id("operator_actions"), "params": _json.dumps(action["params"])}
            self._db_conn.insert("operator_actions", [row])
        return {**action, "id": row["id"]}

    def operator_actions(self, limit: int | None = None, offset: int = 0, start_ns: int | None = None,
                         end_ns: int | None = None, *, newest_first: bool = True) -> list[dict[str, Any]]:
        p = Params()
        page = _page(p, limit, offset) if limit is not None else ""
        rows = self._rows(
            f"SELECT {OPERATOR_COLUMNS} FROM {self.database}.operator_actions FINAL"
            f"{_where(_range(p, 'ts_ns', start_ns, end_ns))} ORDER BY id {'DESC' if newest_first else 'ASC'}{page}",
            p)
        return [operator_action(row) for row in rows]

    def control_version(self) -> int:
        return self._max("operator_actions", "id")

    # -- alerts --------------------------------------------------------------------------------------------

    def _add_sdk_alert_locked(self, payload: dict[str, Any]) -> bool:
        alert = normalize_sdk_alert(payload)
        p = Params()
        if self._rows(f"SELECT count() FROM {self._alerts} WHERE dedup_key = {p(alert['dedup_key'], 'String')}",
                      p)[0][0]:
            return False
        self._insert_alert(sdk_alert_row(alert))
        return True

    def _insert_alert(self, fields: dict[str, Any]) -> int:
        row = {**fields, "id": self._next_id("alert_history"), "version": self._next_version(),
               "threshold": _scalar_text(fields["threshold"]), "value": _scalar_text(fields["value"])}
        self._db_conn.insert("alert_history", [row])
        return int(row["id"])

    def record_sdk_alert(self, alert: dict[str, Any]) -> bool:
        with self._write_lock:
            return self._add_sdk_alert_locked(alert)

    def add_alert_event(self, event: dict[str, Any]) -> int:
        with self._write_lock:
            return self._insert_alert(rule_alert_row(event))

    def update_alert_delivery(self, event_id: int, status: str, error: str | None) -> None:
        with self._write_lock:
            p = Params()
            rows = self._rows(f"SELECT {_ALERT_ROW_COLUMNS} FROM {self._alerts} FINAL"
                              f" WHERE id = {p(int(event_id), 'UInt64')}", p)
            if not rows:
                return
            names = [c.strip() for c in _ALERT_ROW_COLUMNS.split(",")]
            row = dict(zip(names, rows[0], strict=True))
            row.update(version=self._next_version(), delivery_status=status, delivery_error=error)
            self._db_conn.insert("alert_history", [row])

    def alert_history(self, limit: int, offset: int = 0, start_ns: int | None = None,
                      end_ns: int | None = None) -> list[dict[str, Any]]:
        p = Params()
        rows = self._rows(
            f"SELECT {ALERT_COLUMNS} FROM {self._alerts} FINAL{_where(_range(p, 'ts_ns', start_ns, end_ns))}"
            f" ORDER BY ts_ns DESC, id DESC{_page(p, limit, offset)}", p)
        return [alert_dict([*r[:6], _scalar(r[6]), _scalar(r[7]), *r[8:]]) for r in rows]

    # -- rules -----------------------------------------------------------------------------------------

    def _rule_rows(self, rule_id: int | None) -> list[dict[str, Any]]:
        p = Params()
        where = "deleted = 0" + (f" AND id = {p(int(rule_id), 'UInt64')}" if rule_id is not None else "")
        rows = self._rows(f"SELECT {RULE_COLUMNS} FROM {self._rules} FINAL WHERE {where} ORDER BY id", p)
        return [dict(zip(_RULE_FIELDS, row, strict=True)) for row in rows]

    @staticmethod
    def _rule_answer(r: dict[str, Any]) -> dict[str, Any]:
        return rule_dict([r[field] for field in _RULE_FIELDS])

    def _write_rule(self, row: dict[str, Any], deleted: bool = False) -> None:
        self._db_conn.insert("alert_rules", [{**row, "version": self._next_version(), "deleted": int(deleted)}])

    def create_rule(self, rule: dict[str, Any]) -> dict[str, Any]:
        now = time.time_ns()
        with self._write_lock:
            row = {"id": self._next_id("alert_rules"), **new_rule(rule, now)}
            self._write_rule(row)
        created = self.get_rule(row["id"])
        assert created is not None
        return created

    def list_rules(self) -> list[dict[str, Any]]:
        return [self._rule_answer(r) for r in self._rule_rows(None)]

    def get_rule(self, rule_id: int) -> dict[str, Any] | None:
        found = self._rule_rows(rule_id)
        return self._rule_answer(found[0]) if found else None

    def update_rule(self, rule_id: int, changes: dict[str, Any]) -> dict[str, Any] | None:
        values = rule_changes(changes)
        with self._write_lock:
            found = self._rule_rows(rule_id)
            if found and values:
                self._write_rule({**found[0], **values, "updated_ns": time.time_ns()})
        return self.get_rule(rule_id)

    def delete_rule(self, rule_id: int) -> bool:
        with self._write_lock:
            found = self._rule_rows(rule_id)
            if not found:
                return False
            self._write_rule(found[0], deleted=True)
            p = Params()
            rule = p(int(rule_id), "Int64")
            if int(self._rows(f"SELECT count() FROM {self.database}.cron_alerts WHERE rule_id = {rule}", p)[0][0]):
                # The cron runs it reported: a mutation, only for a rule that reported some.
                self._execute(f"ALTER TABLE {self.database}.cron_alerts DELETE WHERE rule_id = {rule}"
                              " SETTINGS mutations_sync = 2", p)
            return True

    def claim_rule(self, rule_id: int, ts_ns: int, cooldown_ns: int) -> bool:
        # Atomic within this process (the write lock); see the module docstring for several collectors.
        with self._write_lock:
            found = self._rule_rows(rule_id)
            if not found:
                return False
            row = found[0]
            last = row["last_triggered_ns"]
            if not row["enabled"] or (last is not None and last > ts_ns - cooldown_ns):
                return False
            row["last_triggered_ns"] = ts_ns
            self._write_rule(row)
            return True

    # -- crons -----------------------------------------------------------------------------------------------

    def _cron_rows(self, name: str | None) -> list[dict[str, Any]]:
        p = Params()
        where = "deleted = 0" + (f" AND name = {p(name, 'String')}" if name is not None else "")
        rows = self._rows(f"SELECT {CRON_COLUMNS} FROM {self.database}.crons FINAL WHERE {where} ORDER BY name", p)
        return [cron_dict(r) for r in rows]

    def put_cron(self, name: str, schedule: str | None, grace_seconds: int, *, seen_ns: int, since_ns: int) -> None:
        # As SQLite's: '' is "no schedule", which registers an unknown cron and never changes a scheduled one.
        with self._write_lock:
            found = self._cron_rows(name)
            row = {"name": name, "schedule": schedule or "", "grace_seconds": int(grace_seconds),
                   "since_ns": int(since_ns), "updated_ns": int(seen_ns)}
            if found:
                old = found[0]
                if schedule is None and old["schedule"] is not None:
                    return
                if old["schedule"] is not None or schedule is None:  # else the first schedule replaces it all
                    if old["updated_ns"] > seen_ns:  # an older span arrived late: the schedule stays
                        row.update(schedule=old["schedule"] or "", grace_seconds=old["grace_seconds"],
                                   updated_ns=old["updated_ns"])
                    row["since_ns"] = min(old["since_ns"], int(since_ns))
            self._db_conn.insert("crons", [{**row, "version": self._next_version(), "deleted": 0}])

    def list_crons(self) -> list[dict[str, Any]]:
        return self._cron_rows(None)

    def get_cron(self, name: str) -> dict[str, Any] | None:
        found = self._cron_rows(name)
        return found[0] if found else None

    def delete_cron(self, name: str) -> bool:
        with self._write_lock:
            found = self._cron_rows(name)
            if not found:
                return False
            self._db_conn.insert("crons", [{**found[0], "schedule": found[0]["schedule"] or "",
                                            "version": self._next_version(), "deleted": 1}])
            p = Params()
            self._execute(f"ALTER TABLE {self.database}.cron_alerts DELETE WHERE name = {p(name, 'String')}"
                          " SETTINGS mutations_sync = 2", p)
            return True

    def cron_spans(self, name: str, start_ns: int, end_ns: int, limit: int = 10_000, *,
                   newest: bool = False) -> list[dict[str, Any]]:
        p = Params()
        rows = self._rows(f"SELECT {CRON_SPAN_COLUMNS} FROM {self._spans}"
                          f" WHERE {' AND '.join(_range(p, 'start_ns', start_ns, end_ns))}"
                          f" AND kind IN ('cron', 'cron_start') AND name = {p(name, 'String')}"
                          f" ORDER BY start_ns{' DESC' if newest else ''}{_page(p, limit)}", p)
        return [cron_span_dict(r) for r in rows]

    def claim_cron_alert(self, rule_id: int, name: str, expected_ns: int) -> bool:
        # Atomic within this process (the write lock), as claim_rule.
        with self._write_lock:
            p = Params()
            seen = self._rows(f"SELECT count() FROM {self.database}.cron_alerts WHERE rule_id ="
                              f" {p(int(rule_id), 'Int64')} AND name = {p(name, 'String')}"
                              f" AND expected_ns = {p(int(expected_ns), 'Int64')}", p)[0][0]
            if int(seen):
                return False
            self._db_conn.insert("cron_alerts", [{"rule_id": int(rule_id), "name": name,
                                                  "expected_ns": int(expected_ns)}])
            return True

    # -- upkeep ------------------------------------------------------------------------------------------

    def purge(self, before_ns: int) -> dict[str, int]:
        p = Params()
        before = p(int(before_ns), "Int64")
        db = self.database
        doomed_ids = f"{db}.purge_traces"
        with self._write_lock:
            # The traces to remove, fixed before any mutation starts: each mutation below reads this list, not
            # tables that the others are changing.
            self._execute(f"DROP TABLE IF EXISTS {doomed_ids}")
            self._execute(f"CREATE TABLE {doomed_ids} ENGINE = Memory AS SELECT trace_id FROM {db}.trace_summary"
                          f" GROUP BY trace_id HAVING min(s_start) < {before}", p)
            doomed = f"(trace_id IN (SELECT trace_id FROM {doomed_ids}) OR start_ns < {before})"
            traces = self._rows(f"SELECT count() FROM {doomed_ids}")[0][0]
            spans = self._rows(f"SELECT count() FROM {self._spans} WHERE {doomed}", p)[0][0]
            events = self._rows(f"SELECT count() FROM {self._events} WHERE ts_ns < {before}", p)[0][0]
            alerts = self._rows(f"SELECT count() FROM {self._alerts} FINAL WHERE ts_ns < {before}", p)[0][0]
            # Mutations, waited for: a purge that returns has removed what it reports.
            if spans:
                # The rollups lose the removed spans' figures (rows with negated sums), the summary their traces.
                removed = f"(SELECT * FROM {self._spans} WHERE {doomed})"
                for rollup, negated in _NEGATED_ROLLUPS.items():
                    select = SUMMARIES[rollup][2].format(db=db).replace(f"FROM {self._spans}", f"FROM {removed}")
                    self._execute(f"INSERT INTO {db}.{rollup} SELECT {negated} FROM ({select})", p)
                _costs.subtract_purged(self, removed, doomed, p)
                self._execute(f"INSERT INTO {db}.trace_starts (hour, traces, system) SELECT {hour_sql('st')} AS hour,"
                              " -toInt64(count()), -toInt64(countIf(work = 0)) FROM (SELECT min(s_start) AS st,"
                              f" sum(s_user_spans) AS work FROM {db}.trace_summary WHERE trace_id IN"
                              f" (SELECT trace_id FROM {doomed_ids}) GROUP BY trace_id) GROUP BY hour")
                self._execute(f"ALTER TABLE {self._spans} DELETE WHERE {doomed} SETTINGS mutations_sync = 2", p)
                self._execute(f"ALTER TABLE {db}.trace_summary DELETE WHERE trace_id IN"
                              f" (SELECT trace_id FROM {doomed_ids}) SETTINGS mutations_sync = 2")
                _agents.purge_charges(self, doomed, p)
                _copies.purge_namings(self, before_ns)
            self._execute(f"DROP TABLE IF EXISTS {doomed_ids}")
            if events:
                self._execute(f"ALTER TABLE {self._events} DELETE WHERE ts_ns < {before}"
                              " SETTINGS mutations_sync = 2", p)
            if alerts:
                self._execute(f"ALTER TABLE {self._alerts} DELETE WHERE ts_ns < {before}"
                              " SETTINGS mutations_sync = 2", p)
            if spans:
                _sessions.purge_session_traces(self, int(before_ns))
            # Runs whose spans are gone are no longer judged (they would read as missed).
            stale = [row for row in self._cron_rows(None) if row["since_ns"] < before_ns]
            if stale:
                self._db_conn.insert("crons", [{**row, "schedule": row["schedule"] or "", "since_ns": int(before_ns),
                                                "version": self._next_version(),
                                                "deleted": 0} for row in stale])
        return dict(zip(PURGE_KINDS, (int(traces), int(spans), int(events), int(alerts)), strict=True))

    # -- sessions ----------------------------------------------------------------------------------------

    def list_sessions(self, limit: int = 50, offset: int = 0, search: str | None = None) -> dict[str, Any]:
        return _sessions.list_sessions(self, limit, offset, search)

    def session_traces(self, session_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        return _sessions.session_traces(self, session_id, limit)

    def blocked_spans(self, trace_ids: Sequence[str]) -> list[dict[str, Any]]:
        return _sessions.blocked_spans(self, trace_ids)

    def change_token(self) -> str:
        # One collector per database (see above): what this store wrote is every change.
        return f"{self._seq}:{sorted(self._ids.items())}:{self._version}"

    def counts(self) -> dict[str, int]:
        spans = self._rows(f"SELECT sum(spans) FROM {self.database}.rollup")[0][0] or 0
        return {"spans": int(spans), "traces": self._count_traces(None, None, include_system=True)}
