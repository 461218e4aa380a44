"""The embedded default store: one SQLite file in WAL mode, no server to install.

Concurrency: one writer connection behind a lock (SQLite allows one writer anyway) and one reader
connection per thread, which WAL lets read while a batch is being written.

Durability: every batch is committed before ``ingest`` returns, so a 2xx means the spans are in the WAL.
With ``synchronous=NORMAL`` (default) a killed process loses nothing that was acknowledged; a power cut
may lose the last transactions. ``synchronous=FULL`` also survives power loss, at some ingest speed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import _json
from ._agent_charge import Charger, Owner
from ._datamodel import (
    BOOKKEEPING_KINDS,
    CRON_COLUMNS,
    CRON_SPAN_COLUMNS,
    OPERATOR_COLUMNS,
    PURGE_KINDS,
    cron_dict,
    cron_span_dict,
    event_payload,
    new_rule,
    operator_action,
    rule_changes,
    span_flags,
)
from ._file_lock import file_locked, lock_file, unlock_file
from ._llm_copies import copy_candidates
from ._model import SpanRecord
from ._sqlite_agents import AGENTS_SCHEMA, SqliteTree, purge_charges, write_charges
from ._sqlite_breakers import BreakerTables, derive_breaker_state_once
from ._sqlite_copies import COPIES_SCHEMA, purge_namings, settle_copies
from ._sqlite_queries import Queries, time_window
from ._sqlite_rollups import UPSERT_AGENT, UPSERT_HOUR, UPSERT_LATENCY, UPSERT_MODEL, RollupRemoval
from ._sqlite_schema import SCHEMA, SCHEMA_VERSION, upgrade
from ._sqlite_search import add_labels, fold, labels_text, register_functions, stored_labels
from ._sqlite_sessions import (
    SESSIONS_SCHEMA,
    SessionQueries,
    add_session_traces,
    purge_session_traces,
    upgrade_sessions,
)
from ._stats import HOUR_NS, hour_of, latency_bin
from ._store import IngestResult, Store, TraceQuery, first_of_each_span

__all__ = ["SQLiteStore"]

_ID_CHUNK = 900  # stays under SQLite's default limit of bound parameters on old builds

#: A stored trace the batch adds to: (tkey, agents JSON, models JSON, unowned, name, search).
_KnownTrace = tuple[int, str, str, int, str, str | None]

_INSERT_SPAN = """
INSERT OR IGNORE INTO spans (tkey, span_id, trace_id, parent_span_id, name, kind, status, start_ns, end_ns, agent_id,
    agent_name, agent_role, model, provider, input_tokens, output_tokens, cached_input_tokens, cost_usd,
    attributes, input, output)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

# The name is the earliest-starting root's (roots may arrive in any order), else the earliest span's. A database from
# before root_start_ns compares with the trace's start instead.
_TRACE_NAME = """CASE WHEN excluded.has_root AND (NOT traces.has_root
                     OR excluded.root_start_ns < coalesce(traces.root_start_ns, traces.start_ns)) THEN excluded.name
                WHEN traces.has_root THEN traces.name
                WHEN excluded.start_ns < traces.start_ns THEN excluded.name
                ELSE traces.name END"""

# search: the name, then the labels (the last parameter, merged already: ``_sqlite_search``).
_UPSERT_TRACE = f"""
INSERT INTO traces (tkey, trace_id, name, has_root, start_ns, end_ns, duration_ms, span_count, llm_calls, input_tokens,
    output_tokens, total_tokens, cost_usd, errors, blocked, status, agents, models, root_start_ns, unowned, search,
    system)
VALUES (?, ?, ?, ?, ?, ?, (? - ?) / 1e6, ?, ?, ?, ?, ?, ?, ?, ?,
    CASE WHEN ? > 0 THEN 'blocked' WHEN ? > 0 THEN 'error' ELSE 'ok' END, ?, ?, ?, ?, ? || char(31) || ?, ?)
ON CONFLICT (trace_id) DO UPDATE SET
    name = {_TRACE_NAME},
    search = aw_fold({_TRACE_NAME}) || char(31) || ?,
    root_start_ns = CASE WHEN excluded.has_root AND (NOT traces.has_root
                     OR excluded.root_start_ns < coalesce(traces.root_start_ns, traces.start_ns))
                         THEN excluded.root_start_ns
                         ELSE traces.root_start_ns END,
    has_root = max(traces.has_root, excluded.has_root),
    start_ns = min(traces.start_ns, excluded.start_ns),
    end_ns = max(traces.end_ns, excluded.end_ns),
    duration_ms = (max(traces.end_ns, excluded.end_ns) - min(traces.start_ns, excluded.start_ns)) / 1e6,
    span_count = traces.span_count + excluded.span_count,
    llm_calls = traces.llm_calls + excluded.llm_calls,
    input_tokens = traces.input_tokens + excluded.input_tokens,
    output_tokens = traces.output_tokens + excluded.output_tokens,
    total_tokens = traces.total_tokens + excluded.total_tokens,
    cost_usd = traces.cost_usd + excluded.cost_usd,
    errors = traces.errors + excluded.errors,
    blocked = traces.blocked + excluded.blocked,
    status = CASE WHEN traces.blocked + excluded.blocked > 0 THEN 'blocked'
                  WHEN traces.errors + excluded.errors > 0 THEN 'error' ELSE 'ok' END,
    agents = excluded.agents,
    models = excluded.models,
    unowned = traces.unowned + excluded.unowned,
    system = min(traces.system, excluded.system)
"""

def _span_rows(records: Sequence[SpanRecord]) -> list[list[Any]]:
    """The spans' rows, built before the write lock; slot 0 (the trace's key) is filled in under it."""
    dumps = _json.dumps
    return [[None, r.span_id, r.trace_id, r.parent_span_id, r.name, r.kind, r.status, r.start_ns, r.end_ns,
             r.agent_id, r.agent_name, r.agent_role, r.model, r.provider, r.input_tokens, r.output_tokens,
             r.cached_input_tokens, r.cost_usd, dumps(r.attributes),
             None if r.input is None else dumps(r.input), None if r.output is None else dumps(r.output)]
            for r in records]


def _batch_labels(trace: list[Any]) -> list[str | None]:
    """The labels a text search finds a trace by that a batch brings (its ``_Aggregates`` row): agent keys, every
    name of its agents, models."""
    return [*(label for agent in trace[12].items() for label in agent), *(trace[14] or ()), *(trace[13] or ())]


def _first_of_each(records: Sequence[SpanRecord]) -> list[SpanRecord]:
    """``first_of_each_span`` without building a key per span when no span id repeats (the usual batch)."""
    if len({r.span_id for r in records}) == len(records):
        return list(records)
    return list(first_of_each_span(records).values())


class _Aggregates:
    """What one batch adds to the summary tables, computed before taking the write lock.

    One pass over the spans with plain dicts and lists: per trace (slot 12 holds its agents in order of first
    appearance, slot 13 its models, 14 its agents' other names, 15 and 16 the JSON, 17 the search text of the labels),
    per hour (slot 8 its agents, slot 9 its models) and per
    latency bin. The keys are strings and ints already hashed, so the pass builds no tuple per span."""

    __slots__ = ("traces", "hours", "latency", "breakers", "alerts", "unowned", "work")

    def __init__(self, records: Sequence[SpanRecord], charged: Mapping[tuple[str, str], Owner]) -> None:
        """``charged``: spans without an agent of their own that the costs by agent count under an ancestor's
        (``_agent_charge``)."""
        traces: dict[str, list[Any]] = {}
        hours: dict[int, list[Any]] = {}
        latency: dict[tuple[int, int], int] = {}
        self.breakers: list[SpanRecord] = []
        self.alerts: list[SpanRecord] = []
        # Per trace: spans with a parent and no agent of their own (traces.unowned).
        unowned: dict[str, int] = {}
        # The traces with a span of the program's work (not traces.system).
        work: set[str] = set()
        for r in records:
            kind, status, trace_id, start = r.kind, r.status, r.trace_id, r.start_ns
            tokens_in, tokens_out, cost = r.input_tokens, r.output_tokens, r.cost_usd
            is_error = 1 if status == "error" else 0
            call, blocked = span_flags(kind, status, r.attributes)
            is_call, is_blocked = int(call), int(blocked)
            is_root = r.parent_span_id is None
            agent = r.agent_id or r.agent_name
            agent_name = r.agent_name
            model = r.model
            trace = traces.get(trace_id)
            if trace is None:
                trace = traces[trace_id] = [r.name, is_root, start, r.end_ns, 1, is_call, tokens_in, tokens_out, cost,
                                            is_error, is_blocked, start if is_root else None, {}, None, None]
            else:
                # The name: the earliest-starting root's (trace[11] is its start); without a root, the earliest
                # span's.
                if is_root and (not trace[1] or start < trace[11]):
                    trace[0] = r.name
                    trace[11] = start
                elif not trace[1] and start < trace[2]:
                    trace[0] = r.name
                trace[1] = trace[1] or is_root
                if start < trace[2]:
                    trace[2] = start
                if r.end_ns > trace[3]:
                    trace[3] = r.end_ns
                trace[4] += 1
                trace[5] += is_call
                trace[6] += tokens_in
                trace[7] += tokens_out
                trace[8] += cost
                trace[9] += is_error
                trace[10] += is_blocked
            if agent:
                first_name = trace[12].get(agent)
                if first_name is None:
                    trace[12][agent] = agent_name
                elif agent_name and agent_name != first_name:
                    # Another name of the agent (slot 14): the trace lists the first, a search finds it by either.
                    if trace[14] is None:
                        trace[14] = [agent_name]
                    elif agent_name not in trace[14]:
                        trace[14].append(agent_name)
            elif not is_root:
                unowned[trace_id] = unowned.get(trace_id, 0) + 1
            hour = start // HOUR_NS
            bucket = hours.get(hour)
            if bucket is None:
                bucket = hours[hour] = [1, is_call, is_call & is_error, is_error, is_blocked, tokens_in, tokens_out,
                                        cost, {}, {}]
            else:
                bucket[0] += 1
                bucket[1] += is_call
                bucket[2] += is_call & is_error
                bucket[3] += is_error
                bucket[4] += is_blocked
                bucket[5] += tokens_in
                bucket[6] += tokens_out
                bucket[7] += cost
            if is_call:
                key = (hour, latency_bin((r.end_ns - start) / 1e6))
                latency[key] = latency.get(key, 0) + 1
            if not agent and charged:
                # Counted under the agent it is charged to; the agent's name comes from the agent's own spans.
                owner = charged.get((trace_id, r.span_id))
                if owner is not None:
                    agent = owner[0]
            # The hour's row of the agent: its name is the latest-starting named span's (slot 1: that start).
            row = bucket[8].get(agent or "")
            if row is None:
                bucket[8][agent or ""] = [agent_name, start if agent_name else None, 1, is_call, is_error, is_blocked,
                                          tokens_in, tokens_out, cost]
            else:
                if agent_name and (row[1] is None or start >= row[1]):
                    row[0] = agent_name
                    row[1] = start
                row[2] += 1
                row[3] += is_call
                row[4] += is_error
                row[5] += is_blocked
                row[6] += tokens_in
                row[7] += tokens_out
                row[8] += cost
            if model:
                trace_models = trace[13]
                if trace_models is None:
                    trace[13] = [model]
                elif model not in trace_models:
                    trace_models.append(model)
                by_provider = bucket[9].get(model)
                if by_provider is None:
                    by_provider = bucket[9][model] = {}
                provider = r.provider or ""
                mrow = by_provider.get(provider)
                if mrow is None:
                    by_provider[provider] = [is_call, is_error, tokens_in, tokens_out, cost]
                else:
                    mrow[0] += is_call
                    mrow[1] += is_error
                    mrow[2] += tokens_in
                    mrow[3] += tokens_out
                    mrow[4] += cost
            if kind not in BOOKKEEPING_KINDS:
                work.add(trace_id)
            if kind == "breaker":
                self.breakers.append(r)
            elif kind == "alert":
                self.alerts.append(r)
        dumps = _json.dumps
        for trace_id, trace in traces.items():
            # Slots 15, 16: the labels' JSON as a new trace (the common case) stores them, and 17 their search text,
            # made outside the lock.
            trace.append(dumps([[agent, name] for agent, name in trace[12].items()]))
            trace.append(dumps(trace[13] or []))
            trace.append(labels_text(trace_id, _batch_labels(trace)))
        self.traces = traces
        self.hours = hours
        self.latency = latency
        self.unowned = unowned
        self.work = work

    def _labels(self, known: dict[str, _KnownTrace],
                tkeys: dict[str, int]) -> tuple[dict[str, tuple[str, str, str]], list[tuple[Any, ...]]]:
        """Merged agents/models JSON and search text of labels per trace, and the label rows that are new (runs under
        the write lock)."""
        merged: dict[str, tuple[str, str, str]] = {}
        new_rows: list[tuple[Any, ...]] = []
        dumps = _json.dumps
        for trace_id, trace in self.traces.items():
            old = known.get(trace_id)
            batch_agents: dict[str, str | None] = trace[12]
            batch_models: list[str] | None = trace[13]
            tkey, start = tkeys[trace_id], trace[2]
            if old is None:
                # A new trace (the common case): every label is new.
                new_rows.extend(("agent", agent, tkey, start) for agent in batch_agents)
                new_rows.extend(("model", model, tkey, start) for model in batch_models or ())
                merged[trace_id] = (trace[15], trace[16], trace[17])
                continue
            agents = _json.loads(old[1])
            seen = {entry[0]: entry for entry in agents}
            for agent, name in batch_agents.items():
                entry = seen.get(agent)
                if entry is None:
                    agents.append([agent, name])
                    new_rows.append(("agent", agent, tkey, start))
                elif entry[1] is None and name:
                    entry[1] = name
            models = _json.loads(old[2])
            for model in batch_models or ():
                if model not in models:
                    models.append(model)
                    new_rows.append(("model", model, tkey, start))
            searched = stored_labels(old[5], old[4])
            if searched is None:  # a row from before the search column
                searched = labels_text(trace_id, [label for agent in agents for label in agent] + models)
            merged[trace_id] = (dumps(agents), dumps(models), add_labels(searched, _batch_labels(trace)))
        return merged, new_rows

    def write(self, cursor: sqlite3.Cursor, known: dict[str, _KnownTrace], tkeys: dict[str, int]) -> None:
        labels, label_rows = self._labels(known, tkeys)
        cursor.executemany(_UPSERT_TRACE, [
            (tkeys[tid], tid, t[0], int(t[1]), t[2], t[3], t[3], t[2], t[4], t[5], t[6], t[7], t[6] + t[7], t[8], t[9],
             t[10], t[10], t[9], *labels[tid][:2], t[11], self.unowned.get(tid, 0), fold(t[0]), labels[tid][2],
             int(tid not in self.work), labels[tid][2])
            for tid, t in self.traces.items()
        ])
        if label_rows:
            # Only labels new to their trace come here; OR REPLACE: a row left behind by a purged trace whose key is
            # reused takes this trace's start (the ``from`` filter reads it, see trace_labels_start).
            cursor.executemany("INSERT OR REPLACE INTO trace_labels (kind, label, tkey, start_ns) VALUES (?, ?, ?, ?)",
                               label_rows)
        cursor.executemany(UPSERT_HOUR, [(hour, *values[:8]) for hour, values in self.hours.items()])
        if self.latency:
            cursor.executemany(UPSERT_LATENCY, [(h, b, n) for (h, b), n in self.latency.items()])
        cursor.executemany(UPSERT_AGENT, [(hour, agent, *row) for hour, values in self.hours.items()
                                           for agent, row in values[8].items()])
        model_rows = [(hour, model, provider, *row) for hour, values in self.hours.items()
                      for model, by_provider in values[9].items() for provider, row in by_provider.items()]
        if model_rows:
            cursor.executemany(UPSERT_MODEL, model_rows)


class SQLiteStore(Store):
    """``Store`` on one SQLite file. Safe to share between threads."""

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._synchronous = synchronous
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        # Several server processes may share one database (``serve --workers``). SQLite serialises their
        # writes anyway, but its busy handler sleeps and polls; a blocking file lock hands over at once.
        self._lock_file = open(f"{self.path}.lock", "a+b")  # noqa: SIM115 - held for the store's lifetime
        # Under the file lock: worker processes that open a new file together would race to switch it to WAL,
        # and SQLite refuses that at once ("database is locked", no busy wait) to all but one of them.
        with file_locked(self._lock_file.fileno()):
            self._writer = self._connect()
            self._writer.executescript(SCHEMA)
            self._writer.executescript(SESSIONS_SCHEMA)
            self._writer.executescript(AGENTS_SCHEMA)
            self._writer.executescript(COPIES_SCHEMA)
            upgrade(self._writer)
            upgrade_sessions(self._writer)
            derive_breaker_state_once(self._writer)
            self._writer.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                                 (str(SCHEMA_VERSION),))
        # Checkpoints copy the WAL into the database file and fsync; doing them on a thread of their own
        # keeps that work off the ingest path. The writer's own autocheckpoint is only a safety net.
        self._writer.execute("PRAGMA wal_autocheckpoint=20000")
        self._breakers = BreakerTables()
        self._queries = Queries(self._reader)
        self._sessions = SessionQueries()
        self._version_lock = threading.Lock()
        self._version_connection: sqlite3.Connection | None = None
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="agentwatch-sqlite-checkpoint",
                                              daemon=True)
        self._checkpointer.start()

    # -- connections ------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={self._synchronous}")
        connection.execute("PRAGMA busy_timeout=30000")
        connection.execute("PRAGMA cache_size=-65536")
        connection.execute("PRAGMA temp_store=MEMORY")
        connection.execute("PRAGMA mmap_size=268435456")
        # Deleted rows (a retention purge) are overwritten with zeros, not left readable in the file. SQLite's own
        # default is off; some builds (Debian's) turn it on. bench_ingest measured no cost (31-33 µs of CPU a span on,
        # 27-36 off, a loaded machine): ingest inserts, and zeroing is for what is deleted.
        connection.execute("PRAGMA secure_delete=ON")
        register_functions(connection)
        return connection

    def _checkpoint_loop(self) -> None:
        connection = self._connect()
        try:
            while not self._stop.wait(0.5):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    continue  # busy or locked: the next round catches up
        finally:
            connection.close()

    def _reader(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            if self._closed:
                raise RuntimeError("store is closed")
            connection = self._connect()
            connection.execute("PRAGMA query_only=1")
            self._local.connection = connection
            with self._readers_lock:
                self._readers.append(connection)
        return connection

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer.is_alive() and self._checkpointer is not threading.current_thread():
            self._checkpointer.join(timeout=5)
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            with self._readers_lock:
                for connection in self._readers:
                    try:
                        connection.close()
                    except sqlite3.ProgrammingError:
                        pass  # still in use by a thread that is finishing; SQLite closes it with the process
                self._readers.clear()
            with self._version_lock:
                if self._version_connection is not None:
                    self._version_connection.close()
                    self._version_connection = None
            try:
                self._writer.execute("PRAGMA optimize")
            except sqlite3.OperationalError:
                # Another server process sharing the file is writing as both shut down: the statistics are only a
                # hint for the planner, and a failed close must not turn a clean shutdown into an error.
                pass
            finally:
                self._writer.close()
                self._lock_file.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._writer, self._write_lock, self._lock_file.fileno())

    # -- spans ---------------------------------------------------------------------------------------

    def _known_traces(self, cursor: sqlite3.Cursor, trace_ids: list[str]) -> dict[str, _KnownTrace]:
        """Stored traces among ``trace_ids``: {trace_id: (tkey, agents, models, unowned, name, search)}."""
        traces: dict[str, _KnownTrace] = {}
        for start in range(0, len(trace_ids), _ID_CHUNK):
            chunk = trace_ids[start:start + _ID_CHUNK]
            marks = ",".join("?" * len(chunk))
            for tkey, trace_id, *rest in cursor.execute(
                    f"SELECT tkey, trace_id, agents, models, unowned, name, search FROM traces"
                    f" WHERE trace_id IN ({marks})", chunk):
                traces[trace_id] = (tkey, *rest)
        return traces

    def _stored_spans(self, cursor: sqlite3.Cursor, records: Sequence[SpanRecord],
                      traces: dict[str, _KnownTrace]) -> set[tuple[str, str]]:
        """The (trace_id, span_id) pairs of ``records`` already stored: exact index lookups of those ids only
        (only traces already stored can hold them), never a scan of a trace's spans."""
        by_trace: dict[str, list[str]] = {}
        for record in records:
            if record.trace_id in traces:
                by_trace.setdefault(record.trace_id, []).append(record.span_id)
        stored: set[tuple[str, str]] = set()
        for trace_id, span_ids in by_trace.items():
            tkey = traces[trace_id][0]
            for start in range(0, len(span_ids), _ID_CHUNK):
                chunk = span_ids[start:start + _ID_CHUNK]
                marks = ",".join("?" * len(chunk))
                stored.update((trace_id, span_id) for (span_id,) in cursor.execute(
                    f"SELECT span_id FROM spans WHERE tkey = ? AND span_id IN ({marks})", (tkey, *chunk)))
        return stored

    def ingest(self, records: Sequence[SpanRecord]) -> IngestResult:
        if not records:
            return IngestResult(0, 0)
        fresh = _first_of_each(records)
        # The Python work happens before taking the write lock, so two requests overlap and the lock (shared
        # by every collector process on this file) is held only for the SQL.
        rows = _span_rows(fresh)
        charger = Charger(fresh)
        aggregates = _Aggregates(fresh, charger.in_batch)
        copies = copy_candidates(fresh)
        with self._transaction() as cursor:
            known_traces = self._known_traces(cursor, list(aggregates.traces))
            # New traces get the next sequential keys: the write lock makes max() + n safe.
            tkeys = {trace_id: value[0] for trace_id, value in known_traces.items()}
            next_key = (cursor.execute("SELECT max(tkey) FROM traces").fetchone()[0] or 0) + 1
            for trace_id in aggregates.traces:
                if trace_id not in tkeys:
                    tkeys[trace_id] = next_key
                    next_key += 1
            for row in rows:
                row[0] = tkeys[row[2]]
            # INSERT OR IGNORE skips spans stored already (a retried batch), and the number of rows it wrote tells
            # whether it skipped any: only then are the batch's ids looked up, and the batch is redone without
            # them so that the summaries count each span once. The common case reads no stored span at all.
            cursor.execute("SAVEPOINT spans")
            written = self._writer.total_changes
            cursor.executemany(_INSERT_SPAN, rows)
            if self._writer.total_changes - written != len(rows):
                cursor.execute("ROLLBACK TO spans")
                stored = self._stored_spans(cursor, fresh, known_traces)
                kept = [(r, row) for r, row in zip(fresh, rows, strict=True) if (r.trace_id, r.span_id) not in stored]
                fresh = [r for r, _ in kept]
                rows = [row for _, row in kept]
                charger = Charger(fresh)
                aggregates = _Aggregates(fresh, charger.in_batch)
                copies = copy_candidates(fresh)
                written = self._writer.total_changes
                cursor.executemany(_INSERT_SPAN, rows)
                if self._writer.total_changes - written != len(rows):
                    # Not a duplicate, yet not written: never answer 2xx for it (the transaction rolls back).
                    raise sqlite3.IntegrityError("spans were skipped that are not stored already")
            cursor.execute("RELEASE spans")
            if fresh:
                aggregates.write(cursor, known_traces, tkeys)
                self._charge(cursor, fresh, charger, known_traces, tkeys)
                settle_copies(cursor, copies, tkeys)
                add_session_traces(cursor, fresh, tkeys)
                for record in aggregates.breakers:
                    self._breakers.add_event(cursor, event_payload(record), "span", record.trace_id, record.span_id)
                for record in aggregates.alerts:
                    self._breakers.add_sdk_alert(cursor, event_payload(record))
        return IngestResult(len(fresh), len(records) - len(fresh))

    @staticmethod
    def _charge(cursor: sqlite3.Cursor, fresh: Sequence[SpanRecord], charger: Charger,
                known_traces: Mapping[str, Any], tkeys: Mapping[str, int]) -> None:
        """Keep the batch's charges (counted by its rollups already), and where it adds to stored traces, those
        only the stored spans decide: batch spans under a stored agent, stored spans under the batch's."""
        charged = charger.in_batch
        moved: dict[tuple[str, str], Owner] = {}
        stored: dict[tuple[str, str], Owner] = {}
        if known_traces:
            waiting = {trace_id for trace_id, known in known_traces.items() if known[3]}
            found = charger.with_store(SqliteTree(cursor, tkeys, waiting), known_traces)
            moved = {key: owner for key, owner in found.batch.items() if key not in charged}
            stored = found.stored
        if charged or moved or stored:
            write_charges(cursor, tkeys, fresh, charged, moved, stored)

    def list_traces(self, query: TraceQuery) -> dict[str, Any]:
        return self._queries.list_traces(query)

    def get_trace(self, trace_id: str) -> dict[str, Any] | None:
        return self._queries.get_trace(trace_id)

    def trace_spans(self, trace_id: str, limit: int = 10_000) -> list[dict[str, Any]]:
        return self._queries.trace_spans(trace_id, limit)

    def graph_spans(self, trace_id: str, limit: int = 100_000) -> list[dict[str, Any]]:
        return self._queries.graph_spans(trace_id, limit)

    def iter_traces(self, start_ns: int, end_ns: int) -> Iterator[dict[str, Any]]:
        return self._queries.iter_traces(start_ns, end_ns)

    # -- aggregates ------------------------------------------------------------------------------------

    def metrics(self, start_ns: int | None, end_ns: int | None) -> dict[str, Any]:
        return self._queries.metrics(start_ns, end_ns)

    def cost_daily(self, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
        return self._queries.cost_daily(start_ns, end_ns)

    def cost_by_agent(self, start_ns: int | None, end_ns: int | None) -> list[dict[str, Any]]:
        return self._queries.cost_by_agent(start_ns, end_ns)

    def cost_by_model(self, start_ns: int | None, end_ns: int | None) -> list[dict[str, Any]]:
        return self._queries.cost_by_model(start_ns, end_ns)

    def window_stats(self, start_ns: int, end_ns: int) -> dict[str, Any]:
        return self._queries.window_stats(start_ns, end_ns)

    def top_traces(self, start_ns: int, end_ns: int, limit: int) -> list[dict[str, Any]]:
        return self._queries.top_traces(start_ns, end_ns, limit)

    # -- breakers and alerts -----------------------------------------------------------------------------

    def record_breaker_event(self, event: dict[str, Any], source: str) -> bool:
        with self._transaction() as cursor:
            return self._breakers.add_event(cursor, event, source, None, None)

    def breaker_status(self) -> list[dict[str, Any]]:
        return self._breakers.status(self._reader())

    def breaker_history(self, limit: int, offset: int = 0, start_ns: int | None = None,
                        end_ns: int | None = None) -> list[dict[str, Any]]:
        return self._breakers.history(self._reader(), limit, offset, start_ns, end_ns)

    def record_sdk_alert(self, alert: dict[str, Any]) -> bool:
        with self._transaction() as cursor:
            return self._breakers.add_sdk_alert(cursor, alert)

    def add_alert_event(self, event: dict[str, Any]) -> int:
        with self._transaction() as cursor:
            return self._breakers.add_alert_event(cursor, event)

    def update_alert_delivery(self, event_id: int, status: str, error: str | None) -> None:
        with self._transaction() as cursor:
            cursor.execute("UPDATE alert_history SET delivery_status = ?, delivery_error = ? WHERE id = ?",
                           (status, error, event_id))

    def alert_history(self, limit: int, offset: int = 0, start_ns: int | None = None,
                      end_ns: int | None = None) -> list[dict[str, Any]]:
        return self._breakers.alert_history(self._reader(), limit, offset, start_ns, end_ns)

    def create_rule(self, rule: dict[str, Any]) -> dict[str, Any]:
        row = new_rule(rule, time.time_ns())
        with self._transaction() as cursor:
            cursor.execute(f"INSERT INTO alert_rules ({', '.join(row)}) VALUES ({', '.join(':' + c for c in row)})",
                           row)
            rule_id = cursor.lastrowid
        created = self.get_rule(int(rule_id or 0))
        assert created is not None
        return created

    def list_rules(self) -> list[dict[str, Any]]:
        return self._breakers.rules(self._reader(), None)

    def get_rule(self, rule_id: int) -> dict[str, Any] | None:
        found = self._breakers.rules(self._reader(), rule_id)
        return found[0] if found else None

    def update_rule(self, rule_id: int, changes: dict[str, Any]) -> dict[str, Any] | None:
        # Column names come from RULE_FIELDS, never from the request.
        values = rule_changes(changes)
        with self._transaction() as cursor:
            if values:
                assignments = ", ".join(f"{column} = :{column}" for column in values)
                cursor.execute(f"UPDATE alert_rules SET {assignments}, updated_ns = :updated_ns WHERE id = :rule_id",
                               {**values, "updated_ns": time.time_ns(), "rule_id": rule_id})
        return self.get_rule(rule_id)

    def delete_rule(self, rule_id: int) -> bool:
        with self._transaction() as cursor:
            cursor.execute("DELETE FROM alert_rules WHERE id = ?", (rule_id,))
            deleted = cursor.rowcount > 0
            cursor.execute("DELETE FROM cron_alerts WHERE rule_id = ?", (rule_id,))  # the runs it reported
            return deleted

    def claim_rule(self, rule_id: int, ts_ns: int, cooldown_ns: int) -> bool:
        with self._transaction() as cursor:
            cursor.execute("UPDATE alert_rules SET last_triggered_ns = ? WHERE id = ? AND enabled = 1 AND"
                           " (last_triggered_ns IS NULL OR last_triggered_ns <= ?)",
                           (ts_ns, rule_id, ts_ns - cooldown_ns))
            return cursor.rowcount == 1

    # -- operator control ------------------------------------------------------------------------------------

    def add_operator_action(self, action: dict[str, Any]) -> dict[str, Any]:
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT INTO operator_actions (ts_ns, actor, role, action, scope, scope_id, reason, params)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (action["ts_ns"], action["actor"], action["role"], action["action"], action["scope"],
                 action["scope_id"], action["reason"], _json.dumps(action["params"])))
            return {**action, "id": int(cursor.lastrowid or 0)}

    def operator_actions(self, limit: int | None = None, offset: int = 0, start_ns: int | None = None,
                         end_ns: int | None = None, *, newest_first: bool = True) -> list[dict[str, Any]]:
        where, params = time_window(start_ns, end_ns, "ts_ns")
        rows = self._reader().execute(
            f"SELECT {OPERATOR_COLUMNS} FROM operator_actions{where} ORDER BY id {'DESC' if newest_first else 'ASC'}"
            " LIMIT ? OFFSET ?", (*params, -1 if limit is None else limit, offset)).fetchall()
        return [operator_action(row) for row in rows]

    def control_version(self) -> int:
        return int(self._reader().execute("SELECT coalesce(max(id), 0) FROM operator_actions").fetchone()[0])

    # -- crons -----------------------------------------------------------------------------------------------

    def put_cron(self, name: str, schedule: str | None, grace_seconds: int, *, seen_ns: int, since_ns: int) -> None:
        # '' is "no schedule": it registers an unknown cron, never changes a scheduled one (the WHERE), and gives
        # way to the first schedule whatever the times (runs are then expected from that schedule's since_ns).
        with self._transaction() as cursor:
            cursor.execute(
                "INSERT INTO crons (name, schedule, grace_seconds, since_ns, updated_ns) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET"
                " schedule = CASE WHEN crons.schedule = '' OR excluded.updated_ns >= crons.updated_ns"
                " THEN excluded.schedule ELSE crons.schedule END,"
                " grace_seconds = CASE WHEN crons.schedule = '' OR excluded.updated_ns >= crons.updated_ns"
                " THEN excluded.grace_seconds ELSE crons.grace_seconds END,"
                " since_ns = CASE WHEN crons.schedule = '' AND excluded.schedule <> '' THEN excluded.since_ns"
                " ELSE min(crons.since_ns, excluded.since_ns) END,"
                " updated_ns = CASE WHEN crons.schedule = '' AND excluded.schedule <> '' THEN excluded.updated_ns"
                " ELSE max(crons.updated_ns, excluded.updated_ns) END"
                " WHERE excluded.schedule <> '' OR crons.schedule = ''",
                (name, schedule or "", int(grace_seconds), int(since_ns), int(seen_ns)))

    def list_crons(self) -> list[dict[str, Any]]:
        rows = self._reader().execute(f"SELECT {CRON_COLUMNS} FROM crons ORDER BY name")
        return [cron_dict(row) for row in rows]

    def get_cron(self, name: str) -> dict[str, Any] | None:
        row = self._reader().execute(f"SELECT {CRON_COLUMNS} FROM crons WHERE name = ?", (name,)).fetchone()
        return None if row is None else cron_dict(row)

    def delete_cron(self, name: str) -> bool:
        with self._transaction() as cursor:
            cursor.execute("DELETE FROM crons WHERE name = ?", (name,))
            deleted = cursor.rowcount > 0
            cursor.execute("DELETE FROM cron_alerts WHERE name = ?", (name,))
            return deleted

    def cron_spans(self, name: str, start_ns: int, end_ns: int, limit: int = 10_000, *,
                   newest: bool = False) -> list[dict[str, Any]]:
        rows = self._reader().execute(
            f"SELECT {CRON_SPAN_COLUMNS} FROM spans"
            " WHERE start_ns >= ? AND start_ns < ? AND kind IN ('cron', 'cron_start') AND name = ?"
            f" ORDER BY start_ns{' DESC' if newest else ''} LIMIT ?", (int(start_ns), int(end_ns), name, int(limit)))
        return [cron_span_dict(r) for r in rows]

    def claim_cron_alert(self, rule_id: int, name: str, expected_ns: int) -> bool:
        with self._transaction() as cursor:
            cursor.execute("INSERT OR IGNORE INTO cron_alerts (rule_id, name, expected_ns) VALUES (?, ?, ?)",
                           (int(rule_id), name, int(expected_ns)))
            return cursor.rowcount == 1

    # -- sessions --------------------------------------------------------------------------------------------

    def list_sessions(self, limit: int = 50, offset: int = 0, search: str | None = None) -> dict[str, Any]:
        return self._sessions.summaries(self._reader(), limit, offset, search)

    def session_traces(self, session_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        return self._sessions.traces(self._reader(), session_id, limit)

    def blocked_spans(self, trace_ids: Sequence[str]) -> list[dict[str, Any]]:
        return self._sessions.blocked_spans(self._reader(), trace_ids)

    def change_token(self) -> str:
        # PRAGMA data_version changes when any other connection, of any process, commits: one connection of its
        # own answers it, whichever thread asks.
        with self._version_lock:
            if self._version_connection is None:
                if self._closed:
                    raise RuntimeError("store is closed")
                self._version_connection = self._connect()
            return str(self._version_connection.execute("PRAGMA data_version").fetchone()[0])

    # -- upkeep ------------------------------------------------------------------------------------------

    def purge(self, before_ns: int) -> dict[str, int]:
        removed = dict.fromkeys(PURGE_KINDS, 0)
        # The rollups of the hours that stay lose what the purge deletes there: the spans of the cutoff's own hour,
        # and the later spans of traces that started before the cutoff (a trace goes whole).
        before_hour = hour_of(before_ns)
        rollups = RollupRemoval(before_hour)
        # Small transactions: ingest must not wait behind one huge delete.
        while True:
            with self._transaction() as cursor:
                rows = cursor.execute("SELECT tkey, agents, models FROM traces WHERE start_ns < ? LIMIT 500",
                                      (before_ns,)).fetchall()
                if not rows:
                    break
                ids = [row[0] for row in rows]
                marks = ",".join("?" * len(ids))
                # A trace's labels are listed on its row, so each is deleted by an exact index lookup.
                labels = [("agent", agent, tkey) for tkey, agents, _ in rows for agent, _name in _json.loads(agents)]
                labels += [("model", model, tkey) for tkey, _, models in rows for model in _json.loads(models)]
                cursor.executemany("DELETE FROM trace_labels WHERE kind = ? AND label = ? AND tkey = ?", labels)
                rollups.take(cursor, f"s.tkey IN ({marks})", ids)
                cursor.execute(f"DELETE FROM spans WHERE tkey IN ({marks})", ids)
                removed["spans"] += cursor.rowcount
                cursor.execute(f"DELETE FROM span_agents WHERE tkey IN ({marks})", ids)
                cursor.execute(f"DELETE FROM traces WHERE tkey IN ({marks})", ids)
                removed["traces"] += cursor.rowcount
                rollups.finish(cursor)
        while True:
            with self._transaction() as cursor:
                span_ids = _json.dumps([span_id for (span_id,) in cursor.execute(
                    "SELECT id FROM spans WHERE start_ns < ? LIMIT 5000", (before_ns,))])
                rollups.take(cursor, "s.id IN (SELECT value FROM json_each(?))", (span_ids,))
                cursor.execute("DELETE FROM spans WHERE id IN (SELECT value FROM json_each(?))", (span_ids,))
                deleted = cursor.rowcount
                removed["spans"] += deleted
                rollups.finish(cursor)
            if deleted == 0:
                break
        with self._transaction() as cursor:
            for table in ("rollup_hour", "rollup_latency", "rollup_agent", "rollup_model"):
                cursor.execute(f"DELETE FROM {table} WHERE hour < ?", (before_hour,))
            removed["breaker_events"], removed["alert_history"] = self._breakers.purge(cursor, before_ns)
            cursor.execute("DELETE FROM cron_alerts WHERE expected_ns < ?", (before_ns,))
            purge_session_traces(cursor)
            purge_charges(cursor, before_ns)
            purge_namings(cursor, before_ns)
            # Runs whose spans are gone are no longer judged (they would read as missed).
            cursor.execute("UPDATE crons SET since_ns = ? WHERE since_ns < ?", (before_ns, before_ns))
        return removed

    def counts(self) -> dict[str, int]:
        connection = self._reader()
        spans = connection.execute("SELECT count(*) FROM spans").fetchone()[0]
        traces = connection.execute("SELECT count(*) FROM traces").fetchone()[0]
        return {"spans": int(spans), "traces": int(traces)}


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the thread lock and the file lock; rolls back on error."""

    __slots__ = ("_connection", "_lock", "_descriptor", "_cursor")

    def __init__(self, connection: sqlite3.Connection, lock: threading.Lock, descriptor: int) -> None:
        self._connection = connection
        self._lock = lock
        self._descriptor = descriptor
        self._cursor: sqlite3.Cursor | None = None

    def __enter__(self) -> sqlite3.Cursor:
        self._lock.acquire()
        try:
            lock_file(self._descriptor)
            try:
                self._cursor = self._connection.cursor()
                self._cursor.execute("BEGIN IMMEDIATE")
            except BaseException:
                unlock_file(self._descriptor)
                raise
        except BaseException:
            self._lock.release()
            raise
        return self._cursor

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        try:
            assert self._cursor is not None
            if kind is None:
                self._cursor.execute("COMMIT")
            else:
                self._cursor.execute("ROLLBACK")
        finally:
            unlock_file(self._descriptor)
            self._lock.release()
