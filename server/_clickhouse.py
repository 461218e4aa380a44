"""The scale-out store: spans in ClickHouse, the same answers as the SQLite store.

``agentwatch serve --store chdb:///dir`` (embedded, the ``chdb`` package) or ``--store
clickhouse://user:password@host:8123/db`` (a server, over HTTP). Both share every statement.

Trade-offs against SQLite, on purpose:

* Trace summaries, label filters and rollups are computed at query time from the spans table (sorted by
  hour of start): ClickHouse aggregates millions of rows per second, and ingest stays a plain append.
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

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from . import _clickhouse_sessions as _sessions
from . import _json
from ._clickhouse_conn import Connection, connect, literal
from ._clickhouse_schema import TABLES
from ._datamodel import (
    ALERT_COLUMNS,
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
    json_or_none,
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
from ._model import SpanRecord
from ._stats import DAY_NS, daily_cost_rows, model_cost_rows
from ._store import IngestResult, Store, TraceQuery, first_of_each_span

__all__ = ["ClickHouseStore", "is_clickhouse_url"]

_ID_CHUNK = 1000
_LOG_GROWTH = "log(1.05)"

# One row per trace, aggregated from its spans. Aliases are prefixed (t_) so that they never shadow the
# span columns inside the aggregate functions.
_TRACE_AGG = """
SELECT trace_id,
    if(countIf(is_root = 1) > 0, argMinIf(name, (start_ns, seq), is_root = 1),
       argMin(name, (start_ns, seq))) AS t_name,
    countIf(is_root = 1) > 0 AS t_has_root,
    min(start_ns) AS t_start, max(end_ns) AS t_end, (t_end - t_start) / 1e6 AS t_duration,
    count() AS t_spans, sum(is_call) AS t_calls, sum(input_tokens) AS t_in, sum(output_tokens) AS t_out,
    t_in + t_out AS t_tokens, sum(cost_usd) AS t_cost, countIf(status = 'error') AS t_errors,
    sum(is_blocked) AS t_blocked, multiIf(t_blocked > 0, 'blocked', t_errors > 0, 'error', 'ok') AS t_status,
    min(seq) AS t_key,
    countIf(positionCaseInsensitiveUTF8(agent_key, {search}) > 0
            OR positionCaseInsensitiveUTF8(coalesce(agent_name, ''), {search}) > 0
            OR positionCaseInsensitiveUTF8(coalesce(model, ''), {search}) > 0) AS t_label_hits
FROM {db}.spans
{where}
GROUP BY trace_id
"""
_TRACE_COLUMNS = ("trace_id, t_name, t_has_root, t_start, t_end, t_duration, t_spans, t_calls, t_in, t_out, t_tokens,"
                  " t_cost, t_errors, t_blocked, t_status, t_key")
_SORT_COLUMNS = {
    "start_time": "t_start", "end_time": "t_end", "duration": "t_duration", "cost": "t_cost",
    "tokens": "t_tokens", "spans": "t_spans", "name": "t_name", "status": "t_status",
}
_RULE_FIELDS = tuple(column.strip() for column in RULE_COLUMNS.split(","))
# Stored alert rows are rewritten whole (a new version) when their delivery status changes.
_ALERT_ROW_COLUMNS = ALERT_COLUMNS + ", details, dedup_key"


def is_clickhouse_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("chdb://", "clickhouse://", "clickhouses://"))


def _in(values: Sequence[Any]) -> str:
    return "(" + ", ".join(literal(v) for v in values) + ")"


def _range(column: str, start_ns: int | None, end_ns: int | None) -> list[str]:
    clauses = []
    if start_ns is not None:
        clauses.append(f"{column} >= {int(start_ns)}")
    if end_ns is not None:
        clauses.append(f"{column} < {int(end_ns)}")
    return clauses


def _where(clauses: Sequence[str]) -> str:
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""


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
        db = self.database
        self._db_conn.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
        for ddl in TABLES.values():
            self._db_conn.execute(ddl.format(db=db))
        _sessions.create_session_table(self._db_conn, db)
        self._remove_ttl()
        self._seq = self._max("spans", "seq")
        self._ids = {table: self._max(table, "id") for table in ("breaker_events", "alert_history", "alert_rules",
                                                                  "operator_actions")}
        self._version = 0
        self._closed = False

    # -- plumbing ----------------------------------------------------------------------------------------

    def _rows(self, sql: str) -> list[list[Any]]:
        return self._db_conn.rows(sql)

    def _execute(self, sql: str) -> None:
        self._db_conn.execute(sql)

    def _max(self, table: str, column: str) -> int:
        return int(self._rows(f"SELECT max({column}) FROM {self.database}.{table}")[0][0] or 0)

    def _remove_ttl(self) -> None:
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

    def _stored(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        trace_ids = sorted({trace_id for trace_id, _ in pairs})
        for start in range(0, len(trace_ids), _ID_CHUNK):
            chunk = trace_ids[start:start + _ID_CHUNK]
            found.update((row[0], row[1]) for row in self._rows(
                f"SELECT trace_id, span_id FROM {self._spans} WHERE trace_id IN {_in(chunk)}"))
        return found

    def _span_row(self, record: SpanRecord) -> dict[str, Any]:
        self._seq += 1
        is_call, is_blocked = span_flags(record.kind, record.status)
        return {
            "seq": self._seq, "trace_id": record.trace_id, "span_id": record.span_id,
            "parent_span_id": record.parent_span_id, "name": record.name, "kind": record.kind,
            "status": record.status, "start_ns": record.start_ns, "end_ns": record.end_ns,
            "agent_id": record.agent_id, "agent_name": record.agent_name, "agent_role": record.agent_role,
            "agent_key": record.agent_key or "", "model": record.model, "provider": record.provider,
            "input_tokens": record.input_tokens, "output_tokens": record.output_tokens,
            "cached_input_tokens": record.cached_input_tokens, "cost_usd": record.cost_usd,
            "is_root": int(record.parent_span_id is None), "is_call": int(is_call), "is_blocked": int(is_blocked),
            "attributes": _json.dumps(record.attributes), "input": json_or_none(record.input),
            "output": json_or_none(record.output),
        }

    def ingest(self, records: Sequence[SpanRecord]) -> IngestResult:
        if not records:
            return IngestResult(0, 0)
        unique = first_of_each_span(records)
        with self._write_lock:
            stored = self._stored(list(unique))
            fresh = [record for key, record in unique.items() if key not in stored]
            if fresh:
                self._db_conn.insert("spans", [self._span_row(record) for record in fresh])
                _sessions.add_session_traces(self, fresh)
                for record in fresh:
                    if record.kind == "breaker":
                        self._add_event_locked(event_payload(record), "span", record.trace_id, record.span_id)
                    elif record.kind == "alert":
                        self._add_sdk_alert_locked(event_payload(record))
        return IngestResult(len(fresh), len(records) - len(fresh))

    def _labels(self, trace_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """The agents and models JSON of each trace, in order of first appearance (as SQLite lists them)."""
        if not trace_ids:
            return {}
        agents: dict[str, list[list[Any]]] = {t: [] for t in trace_ids}
        models: dict[str, list[str]] = {t: [] for t in trace_ids}
        for trace_id, key, name, _first in self._rows(
                "SELECT trace_id, agent_key, argMinIf(agent_name, seq, isNotNull(agent_name)), min(seq) AS first"
                f" FROM {self._spans} WHERE trace_id IN {_in(trace_ids)} AND agent_key != ''"
                " GROUP BY trace_id, agent_key ORDER BY first"):
            agents[trace_id].append([key, name])
        for trace_id, model in self._rows(
                f"SELECT trace_id, model FROM {self._spans}"
                f" WHERE trace_id IN {_in(trace_ids)} AND model IS NOT NULL AND model != ''"
                " GROUP BY trace_id, model ORDER BY min(seq)"):
            models[trace_id].append(model)
        return {t: (_json.dumps(agents[t]), _json.dumps(models[t])) for t in trace_ids}

    def _agg(self, where: Sequence[str], search: str) -> str:
        return _TRACE_AGG.format(db=self.database, where=_where(where), search=literal(search))

    def _traces(self, where: Sequence[str], having: Sequence[str], order: str, limit: int | None = None,
                offset: int = 0, search: str = "") -> list[dict[str, Any]]:
        sql = (f"SELECT {_TRACE_COLUMNS} FROM ({self._agg(where, search)})"
               f"{_where(having)} ORDER BY {order}")
        if limit is not None:
            sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
        rows = self._rows(sql)
        labels = self._labels([row[0] for row in rows])
        return [trace_dict((*row[:15], *labels[row[0]])) for row in rows]

    def _trace_filters(self, query: TraceQuery) -> tuple[list[str], list[str], str]:
        """(span WHERE, trace HAVING, search text) for a traces query."""
        where: list[str] = []
        having = _range("t_start", query.start_ns, query.end_ns)
        # A trace starts in the range only if one of its spans does: prune to those traces first.
        if query.start_ns is not None or query.end_ns is not None:
            inner = _where(_range("start_ns", query.start_ns, query.end_ns))
            where.append(f"trace_id IN (SELECT trace_id FROM {self._spans}{inner})")
        if query.agent_id:
            agent = literal(query.agent_id)
            where.append(f"trace_id IN (SELECT trace_id FROM {self._spans} WHERE agent_key = {agent})")
        if query.model:
            where.append(f"trace_id IN (SELECT trace_id FROM {self._spans} WHERE model = {literal(query.model)})")
        if query.status:
            having.append(f"t_status = {literal(query.status)}")
        search = (query.search or "").strip()
        if search:
            pattern = literal(search)
            having.append(f"(positionCaseInsensitiveUTF8(t_name, {pattern}) > 0"
                          f" OR positionCaseInsensitiveUTF8(trace_id, {pattern}) > 0 OR t_label_hits > 0)")
        return where, having, search

    def list_traces(self, query: TraceQuery) -> dict[str, Any]:
        where, having, search = self._trace_filters(query)
        column = _SORT_COLUMNS[query.sort]
        direction = "DESC" if query.order == "desc" else "ASC"
        traces = self._traces(where, having, f"{column} {direction}, t_key {direction}", query.limit, query.offset,
                              search)
        total = self._rows(f"SELECT count() FROM ({self._agg(where, search)})"
                           f"{_where(having)}")[0][0]
        return {"traces": traces, "total": int(total), "limit": query.limit, "offset": query.offset}

    def get_trace(self, trace_id: str) -> dict[str, Any] | None:
        found = self._traces([f"trace_id = {literal(trace_id)}"], [], "t_key")
        return found[0] if found else None

    def trace_spans(self, trace_id: str, limit: int = 10_000) -> list[dict[str, Any]]:
        rows = self._rows(f"SELECT {SPAN_COLUMNS} FROM {self._spans} WHERE trace_id = {literal(trace_id)}"
                          f" ORDER BY start_ns, seq LIMIT {int(limit)}")
        return [span_dict(row) for row in rows]

    def _in_range(self, start_ns: int, end_ns: int) -> tuple[list[str], list[str]]:
        where = [f"trace_id IN (SELECT trace_id FROM {self._spans}{_where(_range('start_ns', start_ns, end_ns))})"]
        return where, _range("t_start", start_ns, end_ns)

    def iter_traces(self, start_ns: int, end_ns: int) -> Iterator[dict[str, Any]]:
        where, having = self._in_range(start_ns, end_ns)
        offset = 0
        while True:
            page = self._traces(where, having, "t_start, t_key", 1000, offset)
            if not page:
                return
            yield from page
            offset += len(page)

    def top_traces(self, start_ns: int, end_ns: int, limit: int) -> list[dict[str, Any]]:
        where, having = self._in_range(start_ns, end_ns)
        return self._traces(where, having, "t_cost DESC, t_key", limit)

    # -- aggregates --------------------------------------------------------------------------------------

    def metrics(self, start_ns: int | None, end_ns: int | None) -> dict[str, Any]:
        where = _where(_range("start_ns", start_ns, end_ns))
        totals = self._rows(
            "SELECT count(), sum(is_call), countIf(is_call = 1 AND status = 'error'), countIf(status = 'error'),"
            f" sum(is_blocked), sum(input_tokens), sum(output_tokens), sum(cost_usd) FROM {self._spans}{where}")[0]
        # The same logarithmic bins as the SQLite rollups, so percentiles agree.
        bins = {int(b): int(n) for b, n in self._rows(
            f"SELECT toInt64(floor(log(greatest((end_ns - start_ns) / 1e6, 0.001)) / {_LOG_GROWTH})) AS b, count()"
            f" FROM {self._spans}{_where([*_range('start_ns', start_ns, end_ns), 'is_call = 1'])} GROUP BY b")}
        started = _range("min(start_ns)", start_ns, end_ns)
        having = (" HAVING " + " AND ".join(started)) if started else ""
        traces = self._rows(f"SELECT count() FROM (SELECT trace_id FROM {self._spans} GROUP BY trace_id{having})")[0][0]
        return metrics_dict(start_ns, end_ns, traces, totals, bins)

    def cost_daily(self, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
        by_day = {int(row[0]): row for row in self._rows(
            f"SELECT intDiv(start_ns, {DAY_NS}) AS day, sum(cost_usd), sum(is_call), sum(input_tokens),"
            f" sum(output_tokens), count() FROM {self._spans}{_where(_range('start_ns', start_ns, end_ns))}"
            " GROUP BY day")}
        return daily_cost_rows(by_day, start_ns, end_ns)

    def cost_by_agent(self, start_ns: int | None, end_ns: int | None) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT agent_key, sum(cost_usd), sum(is_call), sum(input_tokens), sum(output_tokens), count(),"
            " countIf(status = 'error'), sum(is_blocked)"
            f" FROM {self._spans}{_where(_range('start_ns', start_ns, end_ns))}"
            " GROUP BY agent_key")
        keys = [row[0] for row in rows if row[0]]
        names = dict(self._rows(  # the name an agent is shown with comes from any time, as SQLite's rollups
            f"SELECT agent_key, max(agent_name) FROM {self._spans} WHERE agent_key IN {_in(keys)} GROUP BY agent_key")
        ) if keys else {}
        return agent_cost_rows(rows, names)

    def cost_by_model(self, start_ns: int | None, end_ns: int | None) -> list[dict[str, Any]]:
        clauses = [*_range("start_ns", start_ns, end_ns), "model IS NOT NULL", "model != ''"]
        rows = self._rows(
            "SELECT assumeNotNull(model) AS m, coalesce(provider, '') AS p, sum(cost_usd), sum(is_call),"
            f" sum(input_tokens), sum(output_tokens), countIf(status = 'error') FROM {self._spans}{_where(clauses)}"
            " GROUP BY m, p")
        return model_cost_rows(rows)

    def window_stats(self, start_ns: int, end_ns: int) -> dict[str, Any]:
        where = _where(_range("start_ns", start_ns, end_ns))
        row = self._rows("SELECT count(), sum(is_call), countIf(is_call = 1 AND status = 'error'), sum(is_blocked),"
                         f" sum(cost_usd) FROM {self._spans}{where}")[0]
        durations = [d / 1e6 for (d,) in self._rows(
            f"SELECT end_ns - start_ns FROM {self._spans}"
            f"{_where([*_range('start_ns', start_ns, end_ns), 'is_call = 1'])}")]
        return window_stats_dict(row, durations)

    # -- breakers ----------------------------------------------------------------------------------------

    def _add_event_locked(self, payload: dict[str, Any], source: str, trace_id: str | None,
                          span_id: str | None) -> bool:
        event = breaker_event_row(payload, source, trace_id, span_id)
        known = self._rows(
            f"SELECT count() FROM {self._events} WHERE scope = {literal(event['scope'])} AND scope_id ="
            f" {literal(event['scope_id'])} AND ts_ns = {int(event['ts_ns'])} AND event = {literal(event['event'])}")
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
        rows = self._rows(
            f"SELECT {BREAKER_EVENT_COLUMNS} FROM {self._events}{_where(_range('ts_ns', start_ns, end_ns))}"
            f" ORDER BY ts_ns DESC, id DESC LIMIT {int(limit)} OFFSET {int(offset)}")
        return [breaker_event_dict([*r[:8], _scalar(r[8]), _scalar(r[9]), *r[10:]]) for r in rows]

    # -- operator control ----------------------------------------------------------------------------------

    def add_operator_action(self, action: dict[str, Any]) -> dict[str, Any]:
        with self._write_lock:
            row = {**action, "id": self._next_id("operator_actions"), "params": _json.dumps(action["params"])}
            self._db_conn.insert("operator_actions", [row])
        return {**action, "id": row["id"]}

    def operator_actions(self, limit: int | None = None, offset: int = 0, start_ns: int | None = None,
                         end_ns: int | None = None, *, newest_first: bool = True) -> list[dict[str, Any]]:
        page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
        rows = self._rows(
            f"SELECT {OPERATOR_COLUMNS} FROM {self.database}.operator_actions FINAL"
            f"{_where(_range('ts_ns', start_ns, end_ns))} ORDER BY id {'DESC' if newest_first else 'ASC'}{page}")
        return [operator_action(row) for row in rows]

    def control_version(self) -> int:
        return self._max("operator_actions", "id")

    # -- alerts --------------------------------------------------------------------------------------------

    def _add_sdk_alert_locked(self, payload: dict[str, Any]) -> bool:
        alert = normalize_sdk_alert(payload)
        if self._rows(f"SELECT count() FROM {self._alerts} WHERE dedup_key = {literal(alert['dedup_key'])}")[0][0]:
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
            rows = self._rows(f"SELECT {_ALERT_ROW_COLUMNS} FROM {self._alerts} FINAL WHERE id = {int(event_id)}")
            if not rows:
                return
            names = [c.strip() for c in _ALERT_ROW_COLUMNS.split(",")]
            row = dict(zip(names, rows[0], strict=True))
            row.update(version=self._next_version(), delivery_status=status, delivery_error=error)
            self._db_conn.insert("alert_history", [row])

    def alert_history(self, limit: int, offset: int = 0, start_ns: int | None = None,
                      end_ns: int | None = None) -> list[dict[str, Any]]:
        rows = self._rows(
            f"SELECT {ALERT_COLUMNS} FROM {self._alerts} FINAL{_where(_range('ts_ns', start_ns, end_ns))}"
            f" ORDER BY ts_ns DESC, id DESC LIMIT {int(limit)} OFFSET {int(offset)}")
        return [alert_dict([*r[:6], _scalar(r[6]), _scalar(r[7]), *r[8:]]) for r in rows]

    # -- rules -----------------------------------------------------------------------------------------

    def _rule_rows(self, rule_id: int | None) -> list[dict[str, Any]]:
        where = "deleted = 0" + (f" AND id = {int(rule_id)}" if rule_id is not None else "")
        rows = self._rows(f"SELECT {RULE_COLUMNS} FROM {self._rules} FINAL WHERE {where} ORDER BY id")
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
        where = "deleted = 0" + (f" AND name = {literal(name)}" if name is not None else "")
        rows = self._rows(f"SELECT {CRON_COLUMNS} FROM {self.database}.crons FINAL WHERE {where} ORDER BY name")
        return [cron_dict(r) for r in rows]

    def put_cron(self, name: str, schedule: str, grace_seconds: int, *, seen_ns: int, since_ns: int) -> None:
        with self._write_lock:
            found = self._cron_rows(name)
            row = {"name": name, "schedule": schedule, "grace_seconds": int(grace_seconds),
                   "since_ns": int(since_ns), "updated_ns": int(seen_ns)}
            if found:
                old = found[0]
                if old["updated_ns"] > seen_ns:  # an older span arrived late: the schedule stays
                    row.update(schedule=old["schedule"], grace_seconds=old["grace_seconds"],
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
            self._db_conn.insert("crons", [{**found[0], "version": self._next_version(), "deleted": 1}])
            self._execute(f"ALTER TABLE {self.database}.cron_alerts DELETE WHERE name = {literal(name)}"
                          " SETTINGS mutations_sync = 2")
            return True

    def cron_spans(self, name: str, start_ns: int, end_ns: int, limit: int = 10_000) -> list[dict[str, Any]]:
        rows = self._rows(f"SELECT {CRON_SPAN_COLUMNS} FROM {self._spans}"
                          f" WHERE start_ns >= {int(start_ns)} AND start_ns < {int(end_ns)}"
                          f" AND kind IN ('cron', 'cron_start') AND name = {literal(name)}"
                          f" ORDER BY start_ns LIMIT {int(limit)}")
        return [cron_span_dict(r) for r in rows]

    def claim_cron_alert(self, rule_id: int, name: str, expected_ns: int) -> bool:
        # Atomic within this process (the write lock), as claim_rule.
        with self._write_lock:
            seen = self._rows(f"SELECT count() FROM {self.database}.cron_alerts WHERE rule_id = {int(rule_id)}"
                              f" AND name = {literal(name)} AND expected_ns = {int(expected_ns)}")[0][0]
            if int(seen):
                return False
            self._db_conn.insert("cron_alerts", [{"rule_id": int(rule_id), "name": name,
                                                  "expected_ns": int(expected_ns)}])
            return True

    # -- upkeep ------------------------------------------------------------------------------------------

    def purge(self, before_ns: int) -> dict[str, int]:
        before = int(before_ns)
        with self._write_lock:
            old = f"SELECT trace_id FROM {self._spans} GROUP BY trace_id HAVING min(start_ns) < {before}"
            doomed = f"(trace_id IN ({old}) OR start_ns < {before})"
            traces = self._rows(f"SELECT count() FROM ({old})")[0][0]
            spans = self._rows(f"SELECT count() FROM {self._spans} WHERE {doomed}")[0][0]
            events = self._rows(f"SELECT count() FROM {self._events} WHERE ts_ns < {before}")[0][0]
            alerts = self._rows(f"SELECT count() FROM {self._alerts} FINAL WHERE ts_ns < {before}")[0][0]
            # Mutations, waited for: a purge that returns has removed what it reports.
            if spans:
                self._execute(f"ALTER TABLE {self._spans} DELETE WHERE {doomed} SETTINGS mutations_sync = 2")
            if events:
                self._execute(f"ALTER TABLE {self._events} DELETE WHERE ts_ns < {before}"
                              " SETTINGS mutations_sync = 2")
            if alerts:
                self._execute(f"ALTER TABLE {self._alerts} DELETE WHERE ts_ns < {before}"
                              " SETTINGS mutations_sync = 2")
            if spans:
                _sessions.purge_session_traces(self, before)
            # Runs whose spans are gone are no longer judged (they would read as missed).
            stale = [row for row in self._cron_rows(None) if row["since_ns"] < before]
            if stale:
                self._db_conn.insert("crons", [{**row, "since_ns": before, "version": self._next_version(),
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
        spans, traces = self._rows(f"SELECT count(), uniqExact(trace_id) FROM {self._spans}")[0]
        return {"spans": int(spans), "traces": int(traces)}
