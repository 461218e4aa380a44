"""Read queries of the SQLite store.

Every filter is a bound parameter and the sort column comes from a fixed mapping, never from input.
Aggregates over a time range use the hourly rollups for whole hours and the raw spans (by the start-time
index) for the partial hours at each end, so answers are exact for any range and fast for long ones.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Callable, Iterator
from itertools import repeat
from typing import Any

from . import _json
from ._cursor import encode_cursor
from ._datamodel import (
    BLOCKED_SQL,
    CALL_SQL,
    SPAN_COLUMNS,
    agent_cost_rows,
    metrics_dict,
    span_dict,
    trace_dict,
    window_stats_dict,
)
from ._sqlite_agents import CHARGED_AGENT_SQL, CHARGED_JOIN_SQL
from ._sqlite_rollups import AGENT_NAMES_SQL
from ._sqlite_search import trace_search
from ._stats import DAY_NS, HOUR_NS, add_by_key, daily_cost_rows, latency_bin, model_cost_rows
from ._store import TraceQuery

__all__ = ["Queries", "time_window", "split_hours"]

_SORT_COLUMNS = {
    "start_time": "start_ns", "end_time": "end_ns", "duration": "duration_ms", "cost": "cost_usd",
    "tokens": "total_tokens", "spans": "span_count", "name": "name", "status": "status",
}
_TRACE_COLUMNS = ("trace_id, name, has_root, start_ns, end_ns, duration_ms, span_count, llm_calls, input_tokens,"
                  " output_tokens, total_tokens, cost_usd, errors, blocked, status, agents, models, system")
_CALL, _BLOCKED = CALL_SQL, BLOCKED_SQL

# What the causal graph reads of a span: no input/output, and attributes only where the graph may use them (an
# ATP span's kind, links); other attributes are neither read from the row nor decoded.
_GRAPH_COLUMNS = ("span_id, parent_span_id, name, kind, status, start_ns, end_ns, agent_id, agent_name, agent_role,"
                  " model, provider, input_tokens, output_tokens, cached_input_tokens, cost_usd,"
                  " CASE WHEN instr(attributes, '\"atp.kind\"') OR instr(attributes, '\"links\"') THEN attributes END,"
                  " start_ns, id")
_GRAPH_KEYS = ("span_id", "parent_span_id", "name", "kind", "status", "start_time_unix_nano", "end_time_unix_nano",
               "agent_id", "agent_name", "agent_role", "model", "provider", "input_tokens", "output_tokens",
               "cached_input_tokens", "cost_usd", "attributes")
_START_ORDER = operator.itemgetter(-2, -1)

Range = tuple[int | None, int | None]
# A probe per trace, not an IN list: walking traces in time order stops after one page, where an IN list
# would first collect every trace of a common model.
_HAS_LABEL = ("EXISTS (SELECT 1 FROM trace_labels l WHERE l.kind = '{kind}' AND l.label = ?"
              " AND l.tkey = traces.tkey)")


def _and(where: str, clause: str) -> str:
    """``where`` (a WHERE clause or empty) with ``clause`` added."""
    return where + (" AND " if where else " WHERE ") + clause


def time_window(start_ns: int | None, end_ns: int | None, column: str) -> tuple[str, list[Any]]:
    """`` WHERE column >= start AND column < end`` for the bounds given (empty without any), and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if start_ns is not None:
        clauses.append(f"{column} >= ?")
        params.append(start_ns)
    if end_ns is not None:
        clauses.append(f"{column} < ?")
        params.append(end_ns)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


_NS_MAX = 2**63 - 1
_NS_MIN = -(2**63)
#: A label filter matching at most this many traces is answered from the label's own rows (``_few_traces``).
_FEW = 2000


def _label_filters(query: TraceQuery) -> list[tuple[str, str]]:
    """The agent and model filters the query sets, as (trace_labels kind, label)."""
    return [(kind, value) for kind, value in (("agent", query.agent_id), ("model", query.model)) if value]


def split_hours(start: int | None, end: int | None) -> tuple[list[tuple[int, int]], Range | None]:
    """Raw-span edges and the whole-hour middle (as hour numbers) of [start, end)."""
    first = None if start is None else -(-start // HOUR_NS)
    last = None if end is None else end // HOUR_NS
    if first is not None and last is not None and first >= last:
        assert start is not None and end is not None
        return ([(start, end)] if start < end else []), None
    edges: list[tuple[int, int]] = []
    # Hour boundaries are clamped: rounding a bound near 2**63 up to the hour would not fit SQLite's integers.
    if start is not None and first is not None and start < first * HOUR_NS:
        edges.append((start, min(first * HOUR_NS, _NS_MAX)))
    if end is not None and last is not None and last * HOUR_NS < end:
        edges.append((max(last * HOUR_NS, -_NS_MAX), end))
    return edges, (first, last)


def _hours_where(hours: Range) -> tuple[str, list[int]]:
    clauses, params = [], []
    if hours[0] is not None:
        clauses.append("hour >= ?")
        params.append(hours[0])
    if hours[1] is not None:
        clauses.append("hour < ?")
        params.append(hours[1])
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class Queries:
    def __init__(self, connection: Callable[[], sqlite3.Connection]) -> None:
        self._connection = connection

    # -- traces ------------------------------------------------------------------------------------------

    def _filters(self, query: TraceQuery, driver: str | None = None) -> tuple[str, list[Any]]:
        """The WHERE clause on ``traces`` and its parameters; ``driver`` names a label filter ("agent" or "model")
        that the caller applies itself by joining ``trace_labels``."""
        clauses: list[str] = []
        params: list[Any] = []
        if query.status:
            clauses.append("status = ?")
            params.append(query.status)
        if query.start_ns is not None:
            clauses.append("start_ns >= ?")
            params.append(query.start_ns)
        if query.end_ns is not None:
            clauses.append("start_ns < ?")
            params.append(query.end_ns)
        for kind, value in _label_filters(query):
            if kind != driver:
                clauses.append(_HAS_LABEL.format(kind=kind))
                params.append(value)
        if query.search and query.search.strip():
            # The name, id and labels (not the labels' JSON), case-insensitively over Unicode: _sqlite_search.
            condition, values = trace_search(query.search.strip())
            clauses.append(condition)
            params.extend(values)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def _few_traces(self, connection: sqlite3.Connection, query: TraceQuery) -> list[int] | None:
        """The keys of every trace a rare label filter can match (at most ``_FEW``), else None.

        A label's rows are read from its own index, from ``from`` on: a row's ``start_ns`` is the start of the
        spans that brought the label, never before the trace's own start, so the rows cover every trace that
        starts after ``from`` (and a few that the other filters then drop)."""
        few: list[int] | None = None
        for kind, value in _label_filters(query):
            keys = [key for (key,) in connection.execute(
                "SELECT tkey FROM trace_labels WHERE kind = ? AND label = ? AND start_ns >= ? LIMIT ?",
                (kind, value, _NS_MIN if query.start_ns is None else query.start_ns, _FEW + 1))]
            if len(keys) <= _FEW and (few is None or len(keys) < len(few)):
                few = keys
        return few

    def _count(self, connection: sqlite3.Connection, query: TraceQuery, where: str, params: list[Any]) -> int:
        """How many traces match: a label filter's index range where it alone decides, else (with ``from``) its rows
        from ``from`` on joined to their traces, else every trace that the other filters leave."""
        labels = _label_filters(query)
        if len(labels) == 1 and len(params) == 1:
            # One label and nothing else: its index range holds exactly one row per matching trace.
            return int(connection.execute("SELECT count(*) FROM trace_labels WHERE kind = ? AND label = ?",
                                          labels[0]).fetchone()[0])
        # With a status filter its index range is usually the smaller side; without ``from`` the label's whole range
        # is no cheaper than probing each trace.
        if labels and query.start_ns is not None and not query.status:
            kind, value = labels[0]
            rest, rest_params = self._filters(query, driver=kind)
            return int(connection.execute(
                "SELECT count(*) FROM (SELECT tkey AS key FROM trace_labels WHERE kind = ? AND label = ?"
                f" AND start_ns >= ?) AS driver CROSS JOIN traces ON traces.tkey = driver.key{rest}",
                (kind, value, query.start_ns, *rest_params)).fetchone()[0])
        return int(connection.execute(f"SELECT count(*) FROM traces{where}", params).fetchone()[0])

    def _system_count(self, connection: sqlite3.Connection, where: str, params: list[Any]) -> int:
        """How many traces of bookkeeping alone match ``where``: read from their own partial index (a few rows), so
        that the traces a count shows are every match less these, and every count keeps its plan."""
        system = _and(where, "system = 1")
        return int(connection.execute(f"SELECT count(*) FROM traces INDEXED BY traces_system{system}",
                                      params).fetchone()[0])

    def list_traces(self, query: TraceQuery) -> dict[str, Any]:
        connection = self._connection()
        where, params = self._filters(query)
        few = self._few_traces(connection, query)
        if few is not None:
            # A rare agent or model: its few traces, filtered and sorted, instead of walking every trace in sort
            # order and probing each for the label (0.3 s at 5M spans for an agent that ran a few times).
            where = _and(where, "tkey IN (SELECT value FROM json_each(?))")
            params.append(_json.dumps(few))
        shown = where if query.include_system else _and(where, "system = 0")
        column = _SORT_COLUMNS[query.sort]
        direction = "DESC" if query.order == "desc" else "ASC"
        page_where, page_params = shown, params
        if query.after is not None:
            # Rows after the cursor's position, as a row value: SQLite walks the sort index from there.
            page_where = _and(shown, f"({column}, tkey) {'<' if direction == 'DESC' else '>'} (?, ?)")
            page_params = [*params, *query.after]
        rows = connection.execute(
            f"SELECT {_TRACE_COLUMNS}, {column}, tkey FROM traces{page_where} ORDER BY {column} {direction},"
            f" tkey {direction} LIMIT ? OFFSET ?", (*page_params, query.limit, query.offset)).fetchall()
        if query.after is None and (rows and len(rows) < query.limit or not rows and not query.offset):
            # A short page is the last one: the total is known without counting again (a text search scans
            # every trace to count; a rare word's page has already scanned them all).
            total = query.offset + len(rows)
        elif few is not None:
            total = connection.execute(f"SELECT count(*) FROM traces{shown}", params).fetchone()[0]
        else:
            total = self._count(connection, query, where, params)
            if not query.include_system:
                total -= self._system_count(connection, where, params)
        traces = [trace_dict(row) for row in rows]
        following = encode_cursor(query.sort, query.order, rows[-1][-2:]) if len(rows) == query.limit else None
        return {"traces": traces, "total": int(total), "limit": query.limit, "offset": query.offset,
                "next_cursor": following}

    def get_trace(self, trace_id: str) -> dict[str, Any] | None:
        connection = self._connection()
        row = connection.execute(f"SELECT {_TRACE_COLUMNS} FROM traces WHERE trace_id = ?", (trace_id,)).fetchone()
        if row is None:
            return None
        return trace_dict(row)

    def _span_rows(self, trace_id: str, limit: int, columns: str) -> list[tuple[Any, ...]]:
        """Rows of ``columns`` (the span's ``start_ns`` second to last, its ``id`` last) of one trace's first
        ``limit`` spans in start order.

        A trace that fits in ``limit`` is read in index order and sorted here: SQLite's sorter copied every whole
        row into a temporary b-tree, which took as long as reading the rows. Only a trace larger than ``limit`` is
        sorted by SQLite, so that memory stays bounded by ``limit``."""
        connection = self._connection()
        found = connection.execute("SELECT tkey, span_count FROM traces WHERE trace_id = ?", (trace_id,)).fetchone()
        if found is None:
            return []
        tkey, span_count = found
        if span_count > limit:
            return connection.execute(f"SELECT {columns} FROM spans WHERE tkey = ? ORDER BY start_ns, id LIMIT ?",
                                      (tkey, limit)).fetchall()
        rows = connection.execute(f"SELECT {columns} FROM spans WHERE tkey = ?", (tkey,)).fetchall()
        rows.sort(key=_START_ORDER)
        del rows[limit:]  # span_count is exact; this only guards a count that fell behind
        return rows

    def trace_spans(self, trace_id: str, limit: int) -> list[dict[str, Any]]:
        return [span_dict(row) for row in self._span_rows(trace_id, limit, f"{SPAN_COLUMNS}, start_ns, id")]

    def graph_spans(self, trace_id: str, limit: int) -> list[dict[str, Any]]:
        # No duration_ms: the graph works it out for the spans that are nodes (a few in a deep trace). Attributes
        # the graph does not read stay None.
        rows = self._span_rows(trace_id, limit, _GRAPH_COLUMNS)
        spans = list(map(dict, map(zip, repeat(_GRAPH_KEYS), rows)))  # zip stops before the sort columns
        loads = _json.loads
        for span in spans:
            if span["attributes"] is not None:
                span["attributes"] = loads(span["attributes"])
        return spans

    def iter_traces(self, start_ns: int, end_ns: int) -> Iterator[dict[str, Any]]:
        # Keyset pages: each page is a short query, so a slow CSV download never pins a read snapshot.
        after_start, after_key = start_ns - 1, -1
        while True:
            connection = self._connection()
            rows = connection.execute(
                f"SELECT {_TRACE_COLUMNS}, tkey FROM traces WHERE start_ns < ? AND (start_ns > ? OR"
                " (start_ns = ? AND tkey > ?)) AND system = 0 ORDER BY start_ns, tkey LIMIT 1000",
                (end_ns, after_start, after_start, after_key)).fetchall()
            if not rows:
                return
            yield from (trace_dict(row) for row in rows)
            after_start, after_key = rows[-1][3], rows[-1][-1]

    def top_traces(self, start_ns: int, end_ns: int, limit: int) -> list[dict[str, Any]]:
        connection = self._connection()
        rows = connection.execute(
            f"SELECT {_TRACE_COLUMNS} FROM traces WHERE start_ns >= ? AND start_ns < ? AND system = 0"
            " ORDER BY cost_usd DESC, tkey LIMIT ?", (start_ns, end_ns, limit)).fetchall()
        return [trace_dict(row) for row in rows]

    # -- aggregates --------------------------------------------------------------------------------------

    def metrics(self, start_ns: int | None, end_ns: int | None) -> dict[str, Any]:
        connection = self._connection()
        edges, hours = split_hours(start_ns, end_ns)
        totals = [0, 0, 0, 0, 0, 0, 0, 0.0]  # spans, calls, call errors, errors, blocked, in, out, cost
        bins: dict[int, int] = {}
        if hours is not None:
            where, params = _hours_where(hours)
            row = connection.execute(
                "SELECT sum(spans), sum(llm_calls), sum(llm_errors), sum(errors), sum(blocked), sum(input_tokens),"
                f" sum(output_tokens), sum(cost_usd) FROM rollup_hour{where}", params).fetchone()
            totals = [a + (b or 0) for a, b in zip(totals, row, strict=True)]
            for index, count in connection.execute(
                    f"SELECT bin, sum(n) FROM rollup_latency{where} GROUP BY bin", params):
                bins[index] = bins.get(index, 0) + count
        for low, high in edges:
            row = connection.execute(
                f"SELECT count(*), sum({_CALL}), sum({_CALL} AND status = 'error'), sum(status = 'error'),"
                f" sum({_BLOCKED}), sum(input_tokens), sum(output_tokens), sum(cost_usd)"
                " FROM spans WHERE start_ns >= ? AND start_ns < ?", (low, high)).fetchone()
            totals = [a + (b or 0) for a, b in zip(totals, row, strict=True)]
            for (duration,) in connection.execute(
                    f"SELECT end_ns - start_ns FROM spans WHERE start_ns >= ? AND start_ns < ? AND {_CALL}",
                    (low, high)):
                index = latency_bin(duration / 1e6)
                bins[index] = bins.get(index, 0) + 1
        where, trace_params = time_window(start_ns, end_ns, "start_ns")
        traces = connection.execute(f"SELECT count(*) FROM traces{where}", trace_params).fetchone()[0]
        traces -= self._system_count(connection, where, trace_params)
        return metrics_dict(start_ns, end_ns, traces, totals, bins)

    def _grouped(self, start_ns: int | None, end_ns: int | None, rollup_sql: str, raw_sql: str,
                 width: int) -> list[tuple[Any, ...]]:
        """Rows of (key..., values...) from rollups and raw edges; ``width`` is the number of key columns."""
        connection = self._connection()
        edges, hours = split_hours(start_ns, end_ns)
        merged: dict[tuple[Any, ...], list[Any]] = {}
        if hours is not None:
            where, params = _hours_where(hours)
            add_by_key(merged, connection.execute(rollup_sql.format(where=where), params).fetchall(), width)
        for low, high in edges:
            add_by_key(merged, connection.execute(raw_sql, (low, high)).fetchall(), width)
        return [(*key, *values) for key, values in merged.items()]

    def cost_daily(self, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
        rows = self._grouped(
            start_ns, end_ns,
            "SELECT hour / 24, sum(cost_usd), sum(llm_calls), sum(input_tokens), sum(output_tokens), sum(spans)"
            " FROM rollup_hour{where} GROUP BY hour / 24",
            f"SELECT start_ns / {DAY_NS}, sum(cost_usd), sum({_CALL}), sum(input_tokens), sum(output_tokens),"
            f" count(*) FROM spans WHERE start_ns >= ? AND start_ns < ? GROUP BY start_ns / {DAY_NS}", 1)
        by_day = {row[0]: row for row in rows}
        return daily_cost_rows(by_day, start_ns, end_ns)

    def cost_by_agent(self, start_ns: int | None, end_ns: int | None) -> list[dict[str, Any]]:
        connection = self._connection()
        rows = self._grouped(
            start_ns, end_ns,
            "SELECT agent_id, sum(cost_usd), sum(llm_calls), sum(input_tokens), sum(output_tokens), sum(spans),"
            " sum(errors), sum(blocked) FROM rollup_agent{where} GROUP BY agent_id",
            f"SELECT {CHARGED_AGENT_SQL} AS agent, sum(s.cost_usd), sum({_CALL}), sum(s.input_tokens),"
            f" sum(s.output_tokens), count(*), sum(s.status = 'error'), sum({_BLOCKED}) FROM spans s"
            f" {CHARGED_JOIN_SQL} WHERE s.start_ns >= ? AND s.start_ns < ? GROUP BY agent", 1)
        names = {agent: name for agent, name, _ in connection.execute(AGENT_NAMES_SQL)}
        return agent_cost_rows(rows, names)

    def cost_by_model(self, start_ns: int | None, end_ns: int | None) -> list[dict[str, Any]]:
        rows = self._grouped(
            start_ns, end_ns,
            "SELECT model, provider, sum(cost_usd), sum(llm_calls), sum(input_tokens), sum(output_tokens),"
            " sum(errors) FROM rollup_model{where} GROUP BY model, provider",
            f"SELECT model, coalesce(provider, ''), sum(cost_usd), sum({_CALL}), sum(input_tokens),"
            " sum(output_tokens), sum(status = 'error') FROM spans WHERE start_ns >= ? AND start_ns < ?"
            " AND model IS NOT NULL GROUP BY model, coalesce(provider, '')", 2)
        return model_cost_rows(rows)

    def window_stats(self, start_ns: int, end_ns: int) -> dict[str, Any]:
        connection = self._connection()
        row = connection.execute(
            f"SELECT count(*), sum({_CALL}), sum({_CALL} AND status = 'error'), sum({_BLOCKED}),"
            " sum(cost_usd) FROM spans WHERE start_ns >= ? AND start_ns < ?", (start_ns, end_ns)).fetchone()
        durations = [d / 1e6 for (d,) in connection.execute(
            f"SELECT end_ns - start_ns FROM spans WHERE start_ns >= ? AND start_ns < ? AND {_CALL}",
            (start_ns, end_ns))]
        return window_stats_dict(row, durations)
